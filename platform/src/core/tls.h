// TLS over a non-blocking socket, with OpenSSL: a context (certificates,
// verification) made once per process or listener, and a session per
// connection that never blocks. Whoever owns the socket waits for it (poll
// in the AMQP set-up, Reactor::wait_fd in a fiber) when a call says
// kWantRead or kWantWrite, then calls again. Used by the AMQP connection
// (amqps://) and by tern::http (the gateway's HTTPS, http::fetch).
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace tern::detail::tls {

// A context that cannot be made (an unreadable file, a key that does not
// match its certificate). The message names the file, never its contents.
struct TlsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ClientConfig {
  // PEM file of the CAs that may sign the server's certificate; empty: the
  // system's (Debian's ca-certificates).
  std::string ca_file;
  // A client certificate and its key (PEM), both or neither: for brokers
  // that want one (and the EXTERNAL mechanism).
  std::string cert_file;
  std::string key_file;
  // Off only when asked for by name (TERN_..._VERIFY=none): then any
  // certificate is accepted and the connection is encrypted, not authenticated.
  bool verify = true;
};

struct ServerConfig {
  std::string cert_file;   // PEM: the certificate, then any intermediates
  std::string key_file;
  // If set, clients must present a certificate signed by one of these CAs.
  std::string client_ca_file;
};

// An SSL_CTX: TLS 1.2 or later, verification as configured.
class Context {
 public:
  static std::shared_ptr<Context> client(const ClientConfig& config);   // throws TlsError
  static std::shared_ptr<Context> server(const ServerConfig& config);   // throws TlsError
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  SSL_CTX* get() const { return ctx_; }
  bool is_server() const { return server_; }
  // The common name of our own certificate (empty without one): the broker
  // user a connection logs in as with the EXTERNAL mechanism.
  const std::string& own_common_name() const { return own_cn_; }

 private:
  Context(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {}
  SSL_CTX* ctx_;
  bool server_;
  std::string own_cn_;
};

enum class Io { kOk, kWantRead, kWantWrite, kClosed, kError };

// One TLS connection over a non-blocking socket it does not own.
class Session {
 public:
  // A client session checks that the server's certificate names
  // `server_name` (a host name or an IP address) and sends it as SNI; a
  // server session (ctx.is_server()) ignores it.
  Session(std::shared_ptr<Context> ctx, int fd, std::string_view server_name);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // A step of the handshake: kOk once it is done; kWantRead / kWantWrite:
  // wait for the socket, then call again; kError: error() says why
  // ("certificate verify failed: ...").
  Io handshake();

  struct Result {
    size_t n = 0;       // bytes moved, when io is kOk
    Io io = Io::kOk;    // kOk (n > 0), kWantRead, kWantWrite, kClosed (EOF or close_notify), kError
  };
  Result read(char* buf, size_t len);
  // Writes some of buf (partial writes on). After kWantRead / kWantWrite,
  // call again with at least the same bytes (buf may have moved, its
  // content not).
  Result write(const char* buf, size_t len);
  // After a failed handshake: whether the peer's certificate was refused,
  // and for what (error() has the details).
  enum class Refusal { kNone, kUntrusted, kNameMismatch };
  Refusal certificate_refused() const;
  // Decrypted bytes are waiting inside the session: read() again before
  // waiting for the socket, which will not wake for them.
  bool pending() const;
  // Sends close_notify, best effort (no waiting).
  void shutdown();

  const std::string& error() const { return error_; }
  SSL* get() const { return ssl_; }

 private:
  Io classify(int rc, const char* what);
  std::shared_ptr<Context> ctx_;
  SSL* ssl_ = nullptr;
  std::string error_;
};

}  // namespace tern::detail::tls
