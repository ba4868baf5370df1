#include "http/client_tls.h"

#include <sys/stat.h>

#include <map>
#include <mutex>

#include "tern/env.h"
#include "tern/http.h"

namespace tern::detail {
namespace {

struct Cached {
  std::shared_ptr<tls::Context> ctx;
  timespec mtime{};
  off_t size = -1;
};

}  // namespace

Result<std::shared_ptr<tls::Context>> client_tls_context(const std::string& ca_file) {
  // Contexts are immutable once made (OpenSSL lets many threads share one),
  // so only the map needs the lock. Making one reads a local file on the
  // calling thread: no network, and only on first use or after a change.
  static std::mutex mu;
  static std::map<std::string, Cached> cache;
  struct stat st{};
  if (!ca_file.empty() && ::stat(ca_file.c_str(), &st) != 0)
    return Error{Code::kFailedPrecondition, "cannot load the CA file " + ca_file + ": it cannot be read"};
  std::lock_guard<std::mutex> lock(mu);
  Cached& c = cache[ca_file];
  if (c.ctx != nullptr && (ca_file.empty() || (c.mtime.tv_sec == st.st_mtim.tv_sec &&
                                               c.mtime.tv_nsec == st.st_mtim.tv_nsec && c.size == st.st_size)))
    return c.ctx;
  try {
    tls::ClientConfig config;
    config.ca_file = ca_file;
    c.ctx = tls::Context::client(config);
  } catch (const tls::TlsError& e) {
    cache.erase(ca_file);
    return Error{Code::kFailedPrecondition, e.what()};
  }
  c.mtime = st.st_mtim;
  c.size = st.st_size;
  return c.ctx;
}

}  // namespace tern::detail

namespace tern::http {

void check_ca_file(std::string_view source, const std::string& path) {
  auto ctx = detail::client_tls_context(path);
  if (!ctx.ok()) throw ConfigError(std::string(source) + "='" + path + "': " + ctx.error().message);
}

}  // namespace tern::http
