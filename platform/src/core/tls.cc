#include "core/tls.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace tern::detail::tls {
namespace {

// The first error OpenSSL queued (and the queue cleared), or `fallback`.
std::string openssl_error(std::string_view fallback) {
  unsigned long e = ERR_get_error();
  if (e == 0) return std::string(fallback);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::string common_name(X509* cert) {
  if (cert == nullptr) return {};
  char cn[256] = {};
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return n > 0 ? std::string(cn, static_cast<size_t>(n)) : std::string();
}

SSL_CTX* new_ctx(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) throw TlsError("cannot create a TLS context: " + openssl_error("out of memory"));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Partial writes, and a retried write whose buffer moved (the output
  // buffer grows and compacts between tries): see Session::write.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

void load_pair(SSL_CTX* ctx, const std::string& cert, const std::string& key, const char* who) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
    throw TlsError(fmt::format("cannot load the {} certificate {}: {}", who, cert, openssl_error("?")));
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw TlsError(fmt::format("cannot load the {} key {}: {}", who, key, openssl_error("?")));
  if (SSL_CTX_check_private_key(ctx) != 1)
    throw TlsError(fmt::format("the {} key {} does not match the certificate {}", who, key, cert));
}

// A socket BIO whose writes use send(MSG_NOSIGNAL): OpenSSL's own uses
// write(), and a peer gone away would kill the process with SIGPIPE.
int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(static_cast<int>(BIO_get_fd(b, nullptr)), data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

const BIO_METHOD* nosignal_socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOCKET, "tern socket");
    const BIO_METHOD* base = BIO_s_socket();
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, BIO_meth_get_read(base));
    BIO_meth_set_puts(m, BIO_meth_get_puts(base));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(base));
    BIO_meth_set_create(m, BIO_meth_get_create(base));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(base));
    return m;
  }();
  return method;
}

}  // namespace

std::shared_ptr<Context> Context::client(const ClientConfig& c) {
  SSL_CTX* raw = new_ctx(TLS_client_method());
  std::shared_ptr<Context> ctx(new Context(raw, false));
  if (c.verify) {
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
    const int ok = c.ca_file.empty() ? SSL_CTX_set_default_verify_paths(raw)
                                     : SSL_CTX_load_verify_locations(raw, c.ca_file.c_str(), nullptr);
    if (ok != 1)
      throw TlsError(fmt::format("cannot load the CA file {}: {}", c.ca_file.empty() ? "(system)" : c.ca_file,
                                 openssl_error("?")));
  } else {
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nullptr);
  }
  if (c.cert_file.empty() != c.key_file.empty())
    throw TlsError("a client certificate needs its key, and a key its certificate");
  if (!c.cert_file.empty()) {
    load_pair(raw, c.cert_file, c.key_file, "client");
    ctx->own_cn_ = common_name(SSL_CTX_get0_certificate(raw));
  }
  return ctx;
}

std::shared_ptr<Context> Context::server(const ServerConfig& c) {
  SSL_CTX* raw = new_ctx(TLS_server_method());
  std::shared_ptr<Context> ctx(new Context(raw, true));
  load_pair(raw, c.cert_file, c.key_file, "server");
  ctx->own_cn_ = common_name(SSL_CTX_get0_certificate(raw));
  if (!c.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(raw, c.client_ca_file.c_str(), nullptr) != 1)
      throw TlsError(fmt::format("cannot load the client CA file {}: {}", c.client_ca_file, openssl_error("?")));
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // With client certificates verified, OpenSSL refuses to resume a
    // session whose context it cannot tell: name ours.
    static const unsigned char kSessionContext[] = "tern";
    SSL_CTX_set_session_id_context(raw, kSessionContext, sizeof kSessionContext - 1);
  }
  return ctx;
}

Context::~Context() { SSL_CTX_free(ctx_); }

Session::Session(std::shared_ptr<Context> ctx, int fd, std::string_view server_name) : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->get());
  if (ssl_ == nullptr) throw TlsError("cannot create a TLS session: " + openssl_error("out of memory"));
  BIO* bio = BIO_new(nosignal_socket_method());
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw TlsError("cannot create a TLS session: " + openssl_error("out of memory"));
  }
  BIO_set_fd(bio, fd, BIO_NOCLOSE);
  SSL_set_bio(ssl_, bio, bio);
  if (ctx_->is_server()) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  const std::string name(server_name);
  if (name.empty()) return;
  unsigned char addr[16];
  const bool is_ip = inet_pton(AF_INET, name.c_str(), addr) == 1 || inet_pton(AF_INET6, name.c_str(), addr) == 1;
  // The certificate must name the host we dialled: its DNS name, or its IP
  // address (in subjectAltName). SNI only for names (RFC 6066).
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, name.c_str());
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);   // "*.example.com", not "f*.example.com"
    SSL_set1_host(ssl_, name.c_str());
  }
}

Session::~Session() { SSL_free(ssl_); }

Io Session::classify(int rc, const char* what) {
  const int e = SSL_get_error(ssl_, rc);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Io::kClosed;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE) {
          error_ = fmt::format("{}: the peer closed the connection", what);
          return errno == 0 ? Io::kClosed : Io::kError;
        }
        error_ = fmt::format("{}: {}", what, std::strerror(errno));
        return Io::kError;
      }
      [[fallthrough]];
    default: {
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        error_ = fmt::format("{}: certificate verify failed: {}", what, X509_verify_cert_error_string(verify));
        ERR_clear_error();
      } else {
        error_ = fmt::format("{}: {}", what, openssl_error("TLS error"));
      }
      return Io::kError;
    }
  }
}

Io Session::handshake() {
  ERR_clear_error();
  errno = 0;
  const int rc = SSL_do_handshake(ssl_);
  return rc == 1 ? Io::kOk : classify(rc, "TLS handshake");
}

Session::Result Session::read(char* buf, size_t len) {
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  if (SSL_read_ex(ssl_, buf, len, &n) == 1) return {n, Io::kOk};
  return {0, classify(0, "TLS read")};
}

Session::Result Session::write(const char* buf, size_t len) {
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  if (SSL_write_ex(ssl_, buf, len, &n) == 1) return {n, Io::kOk};
  return {0, classify(0, "TLS write")};
}

Session::Refusal Session::certificate_refused() const {
  const long verify = SSL_get_verify_result(ssl_);
  if (verify == X509_V_OK) return Refusal::kNone;
  if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
    return Refusal::kNameMismatch;
  return Refusal::kUntrusted;
}

bool Session::pending() const { return SSL_pending(ssl_) > 0; }

void Session::shutdown() {
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace tern::detail::tls
