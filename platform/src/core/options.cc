#include "tern/options.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "tern/env.h"

namespace tern {
namespace {

struct Field {
  const char* flag;  // without the leading --
  const char* env;
  const char* help;
  std::string Options::*text = nullptr;
  int Options::*number = nullptr;
  int min = 0;
  int max = INT_MAX;
};

const Field kFields[] = {
    {"amqp-url", "TERN_AMQP_URL", "broker URL(s), comma-separated", &Options::amqp_url, nullptr},
    {"threads", "TERN_THREADS", "worker threads (0: cores)", nullptr, &Options::threads, 0},
    {"concurrency", "TERN_CONCURRENCY", "requests handled at once", nullptr, &Options::concurrency, 1},
    {"heartbeat-s", "TERN_HEARTBEAT_S", "AMQP heartbeat seconds (0: off)", nullptr, &Options::heartbeat_s, 0},
    {"drain-timeout-ms", "TERN_DRAIN_TIMEOUT_MS", "drain time on SIGTERM", nullptr, &Options::drain_timeout_ms, 0},
    {"watchdog-ms", "TERN_WATCHDOG_MS", "report a thread blocked this long (0: off)", nullptr, &Options::watchdog_ms, 0},
    {"stack-kb", "TERN_STACK_KB", "handler fiber stack KiB", nullptr, &Options::stack_kb, 16},
    {"circuit-open-ms", "TERN_CIRCUIT_OPEN_MS", "circuit breaker open time", nullptr, &Options::circuit_open_ms, 1},
    {"max-queue-length", "TERN_MAX_QUEUE_LENGTH", "requests queued at most", nullptr, &Options::max_queue_length, 1},
    {"max-in-flight", "TERN_MAX_IN_FLIGHT", "calls awaiting replies at most", nullptr, &Options::max_in_flight, 1},
    {"max-deliveries", "TERN_MAX_DELIVERIES", "deliveries of one request at most", nullptr, &Options::max_deliveries, 1},
    {"event-attempts", "TERN_EVENT_ATTEMPTS", "tries of an event handler", nullptr, &Options::event_attempts, 1},
    {"event-retry-ms", "TERN_EVENT_RETRY_MS", "first event retry delay", nullptr, &Options::event_retry_ms, 1},
    {"event-timeout-ms", "TERN_EVENT_TIMEOUT_MS", "event handler deadline", nullptr, &Options::event_timeout_ms, 1},
    {"event-queue-type", "TERN_EVENT_QUEUE_TYPE", "classic or quorum", &Options::event_queue_type, nullptr},
    {"tracing", "TERN_TRACING", "on or off: spans to tern.traces", &Options::tracing, nullptr},
    {"trace-sample", "TERN_TRACE_SAMPLE", "fraction of traces kept, 0 to 1", &Options::trace_sample, nullptr},
    {"trace-slow-ms", "TERN_TRACE_SLOW_MS", "spans this long are always kept", nullptr, &Options::trace_slow_ms, 0},
    {"metrics-port", "TERN_METRICS_PORT", "Prometheus /metrics port (0: none)", nullptr, &Options::metrics_port, 0, 65535},
    {"http-addr", "TERN_HTTP_ADDR", "IPv4 address /metrics binds to", &Options::http_addr, nullptr},
    {"request-queue-type", "TERN_REQUEST_QUEUE_TYPE", "classic or quorum", &Options::request_queue_type,
     nullptr},
    {"max-message-kb", "TERN_MAX_MESSAGE_KB", "largest message KiB", nullptr, &Options::max_message_kb, 1},
};

void assign(Options& o, const Field& f, std::string_view value, std::string_view source) {
  if (f.text != nullptr) {
    o.*f.text = std::string(value);
    return;
  }
  o.*f.number = static_cast<int>(env::parse_integer(source, value, f.min, f.max));
}

std::string usage(const char* program) {
  std::string s = fmt::format("usage: {} [flags]\n", program);
  for (const Field& f : kFields) s += fmt::format("  --{:<18} {} (env {})\n", f.flag, f.help, f.env);
  s += "  the broker login, from the environment only (never a flag): TERN_AMQP_USER, and\n"
       "  TERN_AMQP_PASSWORD or TERN_AMQP_PASSWORD_FILE (a file holding it), for every URL\n";
  return s;
}

// The contents of the password file at `path`, trailing newlines stripped.
std::string read_password_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ConfigError(fmt::format("TERN_AMQP_PASSWORD_FILE='{}' cannot be read: {}", path, std::strerror(errno)));
  std::ostringstream contents;
  contents << in.rdbuf();
  std::string password = contents.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  if (password.empty()) throw ConfigError(fmt::format("TERN_AMQP_PASSWORD_FILE='{}' is empty", path));
  return password;
}

// RFC 3986 percent-encoding of all but the unreserved characters, which is
// what rabbitmq-c's amqp_parse_url decodes in a user and password.
std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// `url` (amqp:// or amqps://) with `user` and `password`, where not empty,
// in place of its own; `position` names it in errors, which never show it.
std::string with_login(std::string_view url, const std::string& user, const std::string& password,
                       size_t position) {
  const size_t authority = url.find("://") + 3;
  const size_t authority_end = std::min(url.find_first_of("/?#", authority), url.size());
  std::string_view host = url.substr(authority, authority_end - authority);
  std::string_view url_user, url_password;
  bool has_password = false;
  if (const size_t at = host.rfind('@'); at != std::string_view::npos) {
    std::string_view login = host.substr(0, at);
    host.remove_prefix(at + 1);
    const size_t colon = login.find(':');
    url_user = login.substr(0, colon);
    if (colon != std::string_view::npos) {
      url_password = login.substr(colon + 1);
      has_password = true;
    }
  }
  const std::string new_user = user.empty() ? std::string(url_user) : percent_encode(user);
  if (!password.empty() && new_user.empty())
    throw ConfigError(fmt::format("broker URL {} has no user for the password: set TERN_AMQP_USER", position));
  std::string login = new_user;
  if (!password.empty()) login += ":" + percent_encode(password);
  else if (has_password) login += fmt::format(":{}", url_password);
  if (!login.empty()) login += "@";
  return fmt::format("{}{}{}{}", url.substr(0, authority), login, host, url.substr(authority_end));
}

}  // namespace

namespace {
void validate(const Options& o) {
  if (o.event_queue_type != "classic" && o.event_queue_type != "quorum")
    throw ConfigError(fmt::format("event queue type '{}' is neither classic nor quorum", o.event_queue_type));
  if (o.tracing != "on" && o.tracing != "off")
    throw ConfigError(fmt::format("tracing '{}' is neither on nor off", o.tracing));
  if (o.request_queue_type != "classic" && o.request_queue_type != "quorum")
    throw ConfigError(
        fmt::format("request queue type '{}' is neither classic nor quorum", o.request_queue_type));
  (void)o.trace_sample_rate();
  in_addr ignored{};
  if (inet_pton(AF_INET, o.http_addr.c_str(), &ignored) != 1)
    throw ConfigError(fmt::format("http address '{}' is not an IPv4 address (127.0.0.1, 0.0.0.0...)", o.http_addr));
  (void)o.amqp_urls();
}

constexpr std::string_view kSpace = " \t\r\n\v\f";

std::string_view trim(std::string_view s) {
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}
}  // namespace

Options Options::from_env() {
  Options o;
  for (const Field& f : kFields) {
    if (f.text != nullptr) o.*f.text = env::string(f.env, o.*f.text);
    else o.*f.number = static_cast<int>(env::integer(f.env, o.*f.number, f.min, f.max));
  }
  o.amqp_user = env::string("TERN_AMQP_USER", "");
  o.amqp_password = env::string("TERN_AMQP_PASSWORD", "");
  if (const std::string file = env::string("TERN_AMQP_PASSWORD_FILE", ""); !file.empty()) {
    if (!o.amqp_password.empty())
      throw ConfigError("TERN_AMQP_PASSWORD and TERN_AMQP_PASSWORD_FILE are both set: set one");
    o.amqp_password = read_password_file(file);
  }
  validate(o);
  return o;
}

void Options::parse_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") throw ConfigError(usage(argv[0]));
    if (!arg.starts_with("--")) throw ConfigError(fmt::format("unexpected argument '{}'", arg));
    arg.remove_prefix(2);
    std::string_view value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const Field* field = nullptr;
    for (const Field& f : kFields) {
      if (arg == f.flag) field = &f;
    }
    if (field == nullptr) throw ConfigError(fmt::format("unknown flag --{}\n{}", arg, usage(argv[0])));
    if (!has_value) {
      if (i + 1 >= argc) throw ConfigError(fmt::format("--{} needs a value", arg));
      value = argv[++i];
    }
    assign(*this, *field, value, fmt::format("--{}", arg));
  }
  validate(*this);
}

std::vector<std::string> Options::amqp_urls() const {
  // No message shows a URL: it may hold a password.
  std::vector<std::string> urls;
  std::string_view rest = amqp_url;
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string_view url = trim(rest.substr(0, comma));
    const size_t position = urls.size() + 1;
    if (url.empty()) throw ConfigError(fmt::format("the broker URL list has an empty entry (number {})", position));
    if ((!url.starts_with("amqp://") && !url.starts_with("amqps://")) ||
        url.find_first_of(kSpace) != std::string_view::npos)
      throw ConfigError(fmt::format("broker URL {} is not an amqp:// or amqps:// URL (not shown: it may hold a "
                                    "password)",
                                    position));
    urls.push_back(with_login(url, amqp_user, amqp_password, position));
    if (comma == std::string_view::npos) return urls;
    rest.remove_prefix(comma + 1);
  }
}

double Options::trace_sample_rate() const {
  const std::string_view text = trace_sample;
  double rate = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rate);
  if (ec != std::errc{} || end != text.data() + text.size() || !(rate >= 0.0 && rate <= 1.0))
    throw ConfigError(fmt::format("trace sample '{}' is not a fraction from 0 to 1 (e.g. 0.1)", trace_sample));
  return rate;
}

int Options::resolved_threads() const {
  if (threads > 0) return threads;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace tern
