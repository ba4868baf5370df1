// tern::Service: what a service is made of (a ServiceDefinition), and its
// lifecycle: start the thread runtimes and their HTTP and metrics servers,
// drain and stop. Everything a request meets lives in rpc/server/.
#include "tern/service.h"
#include "tern/env.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "core/ids.h"
#include "http/http_server.h"
#include "observability/process_metrics.h"
#include "rpc/server/definition.h"
#include "rpc/server/replay.h"
#include "service/periodic.h"
#include "service/thread_runtime.h"
#include "service/watchdog.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"
#include "tern/metrics.h"

namespace tern {
namespace detail {

// Past the drain timeout, how long handlers get to end once their contexts
// are cancelled, before stop() leaves them running.
constexpr std::chrono::milliseconds kStopGrace{2000};

// What runs between start() and stop(). Members are destroyed in reverse
// order: the runtimes (closing their connections, joining their threads)
// before the servers whose fibers ran on them, before the replay state.
struct Running {
  std::unique_ptr<Replay> replay;
  std::vector<std::unique_ptr<HttpServer>> http_servers;
  std::unique_ptr<HttpServer> metrics_server;
  PeriodicTasks periodic;
  std::vector<std::unique_ptr<ThreadRuntime>> threads;
  std::unique_ptr<Watchdog> watchdog;   // destroyed first: it reads the threads' reactors

  // Stops every thread, waiting at most `grace` for handlers still running;
  // false if some are stuck: their threads are left running them, and
  // everything they may touch is leaked, never freed under them.
  bool stop_within(std::chrono::milliseconds grace) {
    watchdog.reset();
    bool all = true;
    for (auto& t : threads) all = t->shutdown_within(grace) && all;
    if (all) return true;
    for (auto& t : threads) (void)t.release();
    for (auto& h : http_servers) (void)h.release();
    (void)metrics_server.release();
    (void)replay.release();
    return false;
  }
};

class ServiceCore {
 public:
  explicit ServiceCore(std::string name) { def.name = std::move(name); }

  int in_flight() const {
    int n = http_active.load(std::memory_order_acquire);
    if (running)
      for (const auto& t : running->threads) n += t->in_flight();
    return n;
  }

  void start_http(Running& r) {
    // Each open HTTP connection is a socket: lift the soft limit on open
    // files (often 1024) to the hard one, as Go's runtime does.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }
    // One TLS context (certificate and key loaded once) for every thread.
    HttpServer::Tls tls;
    tls.context = HttpServer::tls_context(http_options);
    if (tls.context != nullptr)
      tls.handshake_failures = &metrics::registry().counter(
          "tern_http_tls_handshake_failures_total", "TLS handshakes that failed on the HTTPS port",
          {{"service", def.name}});
    http_connections.refused = &metrics::registry().counter(
        "tern_http_connections_refused_total", "HTTP connections answered 503 at max_connections",
        {{"service", def.name}});
    metrics::registry().gauge_fn("tern_http_connections", "HTTP connections open now", {{"service", def.name}},
                                 [this] { return double(http_connections.open.load(std::memory_order_acquire)); });
    int port = http_options.port;
    for (auto& t : r.threads) {
      const int fd = http_listen(http_options.address, port);
      port = bound_port(fd);   // the port 0 resolved to, for the other threads
      r.http_servers.push_back(std::make_unique<HttpServer>(t->reactor(), *t, t->spans(), fd, http_options,
                                                            http_handler, &http_active, &http_connections, tls));
    }
    http_port = port;
    for (auto& server : r.http_servers) server->start();
    if (tls.context != nullptr)
      log::info("{}: HTTPS on {}:{} (certificate {}, for {})", def.name, http_options.address, http_port,
                http_options.tls_cert_file, tls.context->own_common_name());
    else
      log::info("{}: HTTP on {}:{}", def.name, http_options.address, http_port);
  }

  void start_metrics(Running& r) {
    register_process_metrics(def.name);
    metrics::registry().gauge_fn("tern_server_in_flight", "Requests being handled now", {{"service", def.name}},
                                 [this] { return double(in_flight()); });
    http::ServerOptions mo;
    mo.port = options.metrics_port;
    mo.address = options.http_addr;
    mo.trace = false;
    mo.max_connections = 256;
    const int fd = http_listen(mo.address, mo.port);
    metrics_port = bound_port(fd);
    ThreadRuntime& t = *r.threads.front();
    r.metrics_server =
        std::make_unique<HttpServer>(t.reactor(), t, t.spans(), fd, mo, metrics_handler, &metrics_active,
                                     &metrics_connections);
    r.metrics_server->start();
    log::info("{}: Prometheus metrics at http://{}:{}/metrics", def.name, mo.address, metrics_port);
  }

  ServiceDefinition def;
  std::vector<EventSubscription> subscriptions;
  std::vector<Periodic> periodic;
  Options options;
  http::ServerOptions http_options;
  http::Handler http_handler;
  int http_port = 0;
  int metrics_port = 0;
  std::atomic<int> http_active{0};
  std::atomic<int> metrics_active{0};
  HttpConnections http_connections;
  HttpConnections metrics_connections;   // no cap counted: a scraper or two
  const http::Handler metrics_handler = [](Context&, http::Request& req) {
    if (req.path != "/metrics") return http::Response::json(404, R"({"error":"try /metrics"})");
    http::Response r;
    r.headers.push_back({"Content-Type", "text/plain; version=0.0.4"});
    r.body = metrics::registry().render();
    return r;
  };
  std::unique_ptr<Running> running;
  bool leaked = false;   // stop() left stuck handlers running: never free this
};

}  // namespace detail

Service::Service(std::string name) : core_(std::make_unique<detail::ServiceCore>(std::move(name))) {
  detail::ServiceCore* core = core_.get();
  handle("_health", [core](Context&, const v1::HealthRequest&) -> Result<v1::HealthResponse> {
    v1::HealthResponse r;
    r.set_service(core->def.name);
    r.set_status("SERVING");
    r.set_instance(detail::instance_id());
    return r;
  });
  handle("_describe", [core](Context&, const v1::DescribeRequest&) -> Result<v1::DescribeResponse> {
    return detail::describe(core->def);
  });
}

Service::~Service() {
  stop();
  if (core_->leaked) (void)core_.release();   // stuck handlers still use it
}

const std::string& Service::name() const { return core_->def.name; }

void Service::add_endpoint(std::string name, detail::Endpoint endpoint) {
  core_->def.endpoints[std::move(name)] = std::move(endpoint);
}

int Service::in_flight() const { return core_->in_flight(); }

Service& Service::rate_limit(std::string endpoint, double per_second, double burst) {
  core_->def.limits[std::move(endpoint)] = std::make_unique<detail::TokenBucket>(per_second, std::max(1.0, burst));
  return *this;
}

Service& Service::allow_callers(std::string endpoint, std::vector<std::string> callers) {
  core_->def.allowed_callers[std::move(endpoint)] = std::set<std::string, std::less<>>(callers.begin(), callers.end());
  return *this;
}

Service& Service::use(ServerFilter filter) {
  core_->def.filters.push_back(std::move(filter));
  return *this;
}

Service& Service::use_on_calls(ClientFilter filter) {
  core_->def.call_filters.push_back(std::move(filter));
  return *this;
}

void Service::add_route(std::string method, std::string path, const std::string& endpoint) {
  if (method.empty() || path.empty() || path.front() != '/')
    throw std::invalid_argument(fmt::format("route '{} {}': the path must start with '/'", method, path));
  for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  v1::DescribeResponse::Route r;
  r.set_method(std::move(method));
  r.set_path(std::move(path));
  r.set_endpoint(endpoint);
  core_->def.routes.push_back(std::move(r));
}

Service& Service::serve_http(http::ServerOptions options, http::Handler handler) {
  core_->http_options = std::move(options);
  core_->http_handler = std::move(handler);
  return *this;
}

int Service::http_port() const { return core_->http_port; }
int Service::metrics_port() const { return core_->metrics_port; }

Service& Service::every(std::chrono::milliseconds period, std::function<void(Context&)> fn) {
  core_->periodic.push_back({std::max(period, std::chrono::milliseconds(1)), std::move(fn)});
  return *this;
}

Service& Service::require_publishers(const std::string& pattern, std::vector<std::string> publishers) {
  bool found = false;
  for (auto& s : core_->subscriptions)
    if (s.pattern == pattern) {
      s.publishers = publishers;
      found = true;
    }
  if (!found) throw std::logic_error("require_publishers: no subscription to '" + pattern + "' yet");
  return *this;
}

void Service::add_subscription(detail::EventSubscription subscription) {
  core_->subscriptions.push_back(std::move(subscription));
}

void Service::set_idempotency_store(std::shared_ptr<IdempotencyStore> store) {
  core_->def.idempotency = std::move(store);
}

void Service::start(const Options& options) {
  detail::ServiceCore& core = *core_;
  if (core.running) throw std::logic_error(fmt::format("{} is already started", core.def.name));
  core.options = options;
  const int threads = options.resolved_threads();
  const int per_thread = std::max(1, (options.concurrency + threads - 1) / threads);
  // One clean-up path: if any step throws, `r` takes down what started.
  auto r = std::make_unique<detail::Running>();
  if (core.def.idempotency) r->replay = std::make_unique<detail::Replay>(core.def.idempotency);
  for (int i = 0; i < threads; ++i) {
    detail::Serving serving{&core.def, r->replay.get(), &core.subscriptions, per_thread};
    auto t = std::make_unique<detail::ThreadRuntime>(options, core.def.name, core.def.call_filters, serving);
    t->start();
    r->threads.push_back(std::move(t));
  }
  if (core.http_handler) core.start_http(*r);
  if (options.metrics_port > 0) core.start_metrics(*r);
  std::vector<detail::ThreadRuntime*> all;
  for (auto& t : r->threads) all.push_back(t.get());
  r->periodic.start(core.periodic, all, std::chrono::milliseconds(options.event_timeout_ms));
  if (options.watchdog_ms > 0) {
    std::vector<const detail::Reactor*> reactors;
    for (auto* t : all) reactors.push_back(&t->reactor());
    r->watchdog = std::make_unique<detail::Watchdog>(core.def.name, std::move(reactors),
                                                     std::chrono::milliseconds(options.watchdog_ms));
  }
  core.running = std::move(r);
  log::info("{} serving: {} threads, {} requests at once", core.def.name, threads, per_thread * threads);
}

void Service::stop() {
  detail::ServiceCore& core = *core_;
  if (!core.running) return;
  detail::Running& r = *core.running;
  for (auto& t : r.threads) t->stop_consuming();
  for (auto& h : r.http_servers) h->stop();
  if (r.metrics_server) {
    r.metrics_server->stop();
    // The gauge must not read this service once it is gone.
    metrics::registry().gauge_fn("tern_server_in_flight", "Requests being handled now", {{"service", core.def.name}},
                                 [] { return 0.0; });
  }
  r.periodic.stop();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(core.options.drain_timeout_ms);
  while (core.in_flight() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (int left = core.in_flight(); left > 0) {
    log::warn("{}: {} requests still running after the drain timeout: cancelling them; unanswered, they go "
              "back to the queue", core.def.name, left);
    for (auto& t : r.threads) t->cancel_running();
  }
  // Periodic tasks finish their run (an outbox relay mid-publish).
  while (r.periodic.running() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (!r.stop_within(detail::kStopGrace)) {
    log::error("{}: handlers still running {} ms after their contexts were cancelled: left running, "
               "stopped without them", core.def.name, detail::kStopGrace.count());
    core.leaked = true;
    (void)core.running.release();
  }
  core.running.reset();
  log::info("{} stopped", core.def.name);
}

int Service::run(int argc, char** argv) {
  log::set_process_name(core_->def.name);
  Options options;
  try {
    options = Options::from_env();
    options.parse_args(argc, argv);
  } catch (const ConfigError& e) {
    std::string_view what = e.what();
    if (what.starts_with("usage:")) {
      fmt::print("{}", what);
      // What this service's own code read before run(): listed by name and
      // default, so --help shows every variable that applies to it.
      std::string own;
      for (const env::Variable& v : env::read_so_far())
        if (what.find(v.name) == std::string_view::npos)
          own += fmt::format("  {:<32} default: {}\n", v.name, v.fallback.empty() ? "(none)" : v.fallback);
      if (!own.empty())
        fmt::print("  read by {} too (environment only; docs/configuration.md says what each does):\n{}",
                   core_->def.name, own);
      return 0;
    }
    log::error("{}", what);
    return 2;
  }
  // Block the stop signals in every thread; this one waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  try {
    start(options);
  } catch (const ConfigError& e) {   // an HTTPS certificate that cannot be loaded, and the like
    log::error("cannot start: {}", e.what());
    return 2;
  } catch (const std::exception& e) {
    log::error("cannot start: {}", e.what());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  log::info("{}: {} received, draining", core_->def.name, sig == SIGINT ? "SIGINT" : "SIGTERM");
  stop();
  return 0;
}

}  // namespace tern
