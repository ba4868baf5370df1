#include "tern/service.h"

#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <cstdlib>
#include <thread>

#include <boost/fiber/operations.hpp>
#include <fmt/format.h>

#include "http/http_server.h"
#include "service/loop.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"
#include "tern/events.h"
#include "tern/idempotency.h"
#include "tern/log.h"
#include "tern/metrics.h"
#include "core/wire.h"

namespace tern {
namespace detail {

Error unparsable_request(const google::protobuf::Descriptor* type) {
  return Error{Code::kInvalidArgument,
               fmt::format("request body is not a valid {}", type->full_name())}
      .with_param("body", "invalid");
}

// A token bucket, shared by the service's threads.
class TokenBucket {
 public:
  TokenBucket(double per_second, double burst) : rate_(per_second), burst_(burst), tokens_(burst) {}
  bool take() {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  std::mutex mu_;
  const double rate_, burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

constexpr const char* kUnknownEndpoint = "(unknown)";

class ServiceCore {
 public:
  explicit ServiceCore(std::string service_name) : name(std::move(service_name)) {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    instance = fmt::format("{}:{}", host, getpid());
  }

  // Runs in the delivery's own fiber. Always ends with a reply and an ack,
  // except for messages that cannot be answered (no reply_to), which are
  // acked and logged. Never throws.
  void handle(Loop& loop, Message&& m) {
    if (loop.count_redelivery(m)) return;
    if (m.reply_to.empty()) {
      log::warn("{}: a message with no reply_to (correlation_id '{}') went to {}", name,
                m.correlation_id, loop.dead_letter_queue());
      loop.dead_letter(m, "no reply_to: nobody to answer");
      loop.ack(m);
      return;
    }
    tern::v1::Response resp;
    resp.set_request_id(m.correlation_id);
    std::string out;
    Error err = m.body.size() > loop.max_message_bytes()
                    ? Error{Code::kInvalidArgument,
                            fmt::format("request is {} bytes, over {}'s {} byte limit", m.body.size(),
                                        name, loop.max_message_bytes())}
                    : run(loop, m, &out);
    if (err.code == Code::kInvalidArgument &&
        (err.params.count("envelope") != 0 || err.params.count("body") != 0)) {
      // Not a tern request, or a body of the wrong type: keep it for
      // inspection, answer, never requeue.
      log::warn("{}: {}; the message went to {}", name, err.message, loop.dead_letter_queue());
      loop.dead_letter(m, err.message);
    }
    if (err.code == Code::kOk && out.size() > loop.max_message_bytes()) {
      log::error("{}: a reply of {} bytes is over the {} byte limit", name, out.size(),
                 loop.max_message_bytes());
      err = Error{Code::kInternal, fmt::format("the reply is {} bytes, over the {} byte limit",
                                               out.size(), loop.max_message_bytes())};
    }
    if (err.code == Code::kOk) {
      resp.set_body(std::move(out));
    } else {
      to_wire(err, resp.mutable_error());
    }
    loop.reply_and_ack(m, resp.SerializeAsString());
  }

  Error run(Loop& loop, const Message& m, std::string* out) {
    tern::v1::Request req;
    if (!req.ParseFromString(m.body))
      return Error{Code::kInvalidArgument, "message body is not a tern.v1.Request envelope"}
          .with_param("envelope", "invalid");
    if (req.deadline_unix_ms() <= 0)
      return Error{Code::kInvalidArgument, "Request.deadline_unix_ms is required"};
    // The handler's span is its own, a child of the caller's attempt span.
    const SpanClock clock;
    Context ctx = Context::from_wire(
        req.deadline_unix_ms(), std::move(*req.mutable_trace_id()), new_span_id(),
        std::move(*req.mutable_span_id()), req.id().empty() ? m.correlation_id : req.id(),
        std::move(*req.mutable_from()), Context::Metadata(req.metadata().begin(), req.metadata().end()),
        req.attempt());
    ctx.set_transport(&loop);
    ScopedCurrent current(&ctx);
    Error err = serve(loop, ctx, req, out);
    // Requests to endpoints that do not exist are counted under one label.
    const std::string& endpoint = endpoints.count(req.endpoint()) != 0 ? req.endpoint() : kUnknownEndpoint;
    metric::server_requests(name, endpoint, err.code).inc();
    metric::server_latency(name, endpoint).observe_us(static_cast<uint64_t>(clock.elapsed_us()));
    if (loop.tracing()) {
      v1::Span span = make_span(v1::Span::SERVER, ctx.trace_id(), ctx.span_id(), ctx.parent_span_id(),
                                endpoint, clock, err.code, err.message);
      span.set_attempt(ctx.attempt());
      span.set_peer(ctx.caller());
      auto request_id = ctx.metadata().find("request_id");
      if (request_id != ctx.metadata().end()) (*span.mutable_tags())["request_id"] = request_id->second;
      loop.record_span(std::move(span));
    }
    return err;
  }

  Error serve(Loop& loop, Context& ctx, tern::v1::Request& req, std::string* out) {
    // The caller's cancel notice, if it gives up, cancels ctx meanwhile.
    const std::string request_id = ctx.request_id();
    loop.track(request_id, &ctx);
    struct Untrack {
      Loop& loop;
      const std::string& id;
      ~Untrack() { loop.untrack(id); }
    } untrack{loop, request_id};
    if (ctx.expired())
      return Error{Code::kDeadlineExceeded,
                   fmt::format("the deadline passed before {}/{} was handled", name,
                               req.endpoint())};
    auto it = endpoints.find(req.endpoint());
    if (it == endpoints.end())
      return Error{Code::kUnimplemented,
                   fmt::format("{} has no endpoint '{}'", name, req.endpoint())}
          .with_param("endpoint", req.endpoint());
    if (auto limit = limits.find(req.endpoint()); limit != limits.end() && !limit->second->take())
      return Error{Code::kResourceExhausted,
                   fmt::format("{}/{} is rate limited", name, req.endpoint())}
          .with_param("endpoint", req.endpoint());
    if (!req.idempotency_key().empty() && idempotency != nullptr)
      return run_once(it->second, ctx, req, out);
    return invoke(it->second, ctx, req, out);
  }

  // Runs the handler at most once per (endpoint, idempotency key) within the
  // store's window; repeats get the stored answer. A repeat that arrives
  // while the first is still running waits for it (or for its own deadline).
  Error run_once(const Endpoint& ep, Context& ctx, const tern::v1::Request& req, std::string* out) {
    const std::string key = req.endpoint() + '\n' + req.idempotency_key();
    for (;;) {
      IdempotencyStore::Entry e = idempotency->begin(key);
      if (e.state == IdempotencyStore::State::kNew) break;
      if (e.state == IdempotencyStore::State::kDone) {
        tern::v1::Response stored;
        stored.ParseFromString(e.reply);
        if (stored.has_error() && stored.error().code() != tern::v1::OK) return from_wire(stored.error());
        *out = std::move(*stored.mutable_body());
        return Error{Code::kOk, {}};
      }
      if (ctx.expired())
        return Error{Code::kDeadlineExceeded, "the deadline passed while the first request with "
                                              "this idempotency key was still running"};
      boost::this_fiber::sleep_for(std::chrono::milliseconds(5));
    }
    Error err = invoke(ep, ctx, req, out);
    if (err.retryable) {
      idempotency->abandon(key);
    } else {
      tern::v1::Response stored;
      if (err.code == Code::kOk) stored.set_body(*out);
      else to_wire(err, stored.mutable_error());
      idempotency->finish(key, stored.SerializeAsString());
    }
    return err;
  }

  Error invoke(const Endpoint& ep, Context& ctx, const tern::v1::Request& req, std::string* out) {
    try {
      return ep.invoke(ctx, req.body(), out);
    } catch (const std::exception& e) {
      log::error("{}/{} threw: {}", name, req.endpoint(), e.what());
      return Error{Code::kInternal, fmt::format("{}/{} failed: {}", name, req.endpoint(), e.what())};
    } catch (...) {
      log::error("{}/{} threw a non-exception", name, req.endpoint());
      return Error{Code::kInternal, fmt::format("{}/{} failed", name, req.endpoint())};
    }
  }

  tern::v1::DescribeResponse describe() const {
    tern::v1::DescribeResponse d;
    d.set_service(name);
    std::set<std::string> seen;
    for (const auto& [ep_name, ep] : endpoints) {
      auto* e = d.add_endpoints();
      e->set_name(ep_name);
      e->set_request_type(ep.request_type->full_name());
      e->set_response_type(ep.response_type->full_name());
      add_file(ep.request_type->file(), &seen, d.mutable_files());
      add_file(ep.response_type->file(), &seen, d.mutable_files());
    }
    for (const auto& r : routes) *d.add_routes() = r;
    return d;
  }

  static void add_file(const google::protobuf::FileDescriptor* f, std::set<std::string>* seen,
                       google::protobuf::FileDescriptorSet* set) {
    if (!seen->insert(f->name()).second) return;
    for (int i = 0; i < f->dependency_count(); ++i) add_file(f->dependency(i), seen, set);
    f->CopyTo(set->add_file());
  }

  // Runs in the event's own fiber; ends with an ack or a retry.
  void handle_event(Loop& loop, Message&& m, size_t index) {
    tern::v1::Event event;
    if (!event.ParseFromString(m.body)) {
      loop.retry_event(m, index, "message body is not a tern.v1.Event envelope");
      return;
    }
    Context ctx = Context::from_wire(
        detail::to_unix_ms(Context::Clock::now() + std::chrono::milliseconds(loop.options().event_timeout_ms)),
        event.trace_id(), new_span_id(), event.span_id(), event.id(), event.source(),
        Context::Metadata(event.metadata().begin(), event.metadata().end()),
        static_cast<uint32_t>(std::max(1, std::atoi(m.header("x-tern-attempt").c_str()))));
    ctx.set_transport(&loop);
    ScopedCurrent current(&ctx);
    const SpanClock clock;
    Error err;
    try {
      err = subscriptions.at(index).invoke(ctx, event.body());
    } catch (const std::exception& e) {
      err = Error{Code::kInternal, fmt::format("the handler threw: {}", e.what())};
    } catch (...) {
      err = Error{Code::kInternal, "the handler threw"};
    }
    metric::events_consumed(name, event.type(), err.code).inc();
    // Spans about spans would feed themselves.
    if (loop.tracing() && event.type() != v1::SpanBatch::descriptor()->full_name()) {
      v1::Span span = make_span(v1::Span::CONSUME, ctx.trace_id(), ctx.span_id(), ctx.parent_span_id(),
                                event.type(), clock, err.code, err.message);
      span.set_attempt(ctx.attempt());
      span.set_peer(event.source());
      (*span.mutable_tags())["event_id"] = event.id();
      loop.record_span(std::move(span));
    }
    if (err.ok()) {
      loop.ack(m);
    } else {
      log::warn("{}: handling {} event {} failed (attempt {}): {}", name, event.type(), event.id(),
                ctx.attempt(), err.to_string());
      loop.retry_event(m, index, err.to_string());
    }
  }

  int in_flight() const {
    int n = http_active.load(std::memory_order_acquire);
    for (const auto& l : loops) n += l->in_flight();
    return n;
  }

  struct Periodic {
    std::chrono::milliseconds period;
    std::function<void(Context&)> fn;
  };

  // A fiber on `loop` running task.fn every task.period until stopping.
  void run_periodic(Loop& loop, const Periodic& task) {
    auto next = Context::Clock::now() + task.period;
    for (;;) {
      // Short naps, so that stop() never waits a whole period.
      while (Context::Clock::now() < next) {
        if (periodic_stop.load(std::memory_order_acquire) || loop.stopping()) return;
        boost::this_fiber::sleep_for(std::min<Context::Clock::duration>(
            next - Context::Clock::now(), std::chrono::milliseconds(50)));
      }
      if (periodic_stop.load(std::memory_order_acquire) || loop.stopping()) return;
      try {
        Context ctx = Context::with_timeout(std::max(task.period, std::chrono::milliseconds(options.event_timeout_ms)));
        ctx.set_transport(&loop);
        task.fn(ctx);
      } catch (const std::exception& e) {
        log::error("{}: a periodic task threw: {}", name, e.what());
      }
      next = std::max(next + task.period, Context::Clock::now());
    }
  }

  const std::string name;
  std::string instance;
  Options options;
  std::map<std::string, Endpoint, std::less<>> endpoints;
  std::map<std::string, std::unique_ptr<TokenBucket>, std::less<>> limits;
  std::vector<EventSubscription> subscriptions;
  std::shared_ptr<IdempotencyStore> idempotency = std::make_shared<MemoryIdempotencyStore>();
  std::vector<v1::DescribeResponse::Route> routes;
  std::vector<Periodic> periodic;
  std::atomic<bool> periodic_stop{false};
  std::atomic<int> periodic_running{0};
  http::ServerOptions http_options;
  http::Handler http_handler;
  int http_port = 0;
  std::atomic<int> http_active{0};
  std::vector<std::unique_ptr<HttpServer>> http_servers;   // outlive the loops' fibers
  std::unique_ptr<HttpServer> metrics_server;
  int metrics_port = 0;
  std::atomic<int> metrics_active{0};
  const http::Handler metrics_handler = [](Context&, http::Request& req) {
    if (req.path != "/metrics") return http::Response::json(404, R"({"error":"try /metrics"})");
    http::Response r;
    r.headers.push_back({"Content-Type", "text/plain; version=0.0.4"});
    r.body = metrics::registry().render();
    return r;
  };
  std::vector<std::unique_ptr<Loop>> loops;
};

}  // namespace detail

Service::Service(std::string name) : core_(std::make_unique<detail::ServiceCore>(std::move(name))) {
  detail::ServiceCore* core = core_.get();
  handle("_health", [core](Context&, const v1::HealthRequest&) -> Result<v1::HealthResponse> {
    v1::HealthResponse r;
    r.set_service(core->name);
    r.set_status("SERVING");
    r.set_instance(core->instance);
    return r;
  });
  handle("_describe", [core](Context&, const v1::DescribeRequest&) -> Result<v1::DescribeResponse> {
    return core->describe();
  });
}

Service::~Service() { stop(); }

const std::string& Service::name() const { return core_->name; }

void Service::add_endpoint(std::string name, detail::Endpoint endpoint) {
  core_->endpoints[std::move(name)] = std::move(endpoint);
}

int Service::in_flight() const { return core_->in_flight(); }

Service& Service::rate_limit(std::string endpoint, double per_second, double burst) {
  core_->limits[std::move(endpoint)] = std::make_unique<detail::TokenBucket>(per_second, std::max(1.0, burst));
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
  core_->routes.push_back(std::move(r));
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

void Service::add_subscription(detail::EventSubscription subscription) {
  core_->subscriptions.push_back(std::move(subscription));
}

void Service::set_idempotency_store(std::shared_ptr<IdempotencyStore> store) {
  core_->idempotency = std::move(store);
}

void Service::start(const Options& options) {
  core_->options = options;
  const int threads = options.resolved_threads();
  const int per_thread = std::max(1, (options.concurrency + threads - 1) / threads);
  detail::ServiceCore* core = core_.get();
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<detail::Loop>(options, core->name);
    loop->serve(core->name, per_thread, [core](detail::Loop& l, detail::Message&& m) {
      core->handle(l, std::move(m));
    });
    if (!core->subscriptions.empty()) {
      std::vector<detail::Loop::Subscription> subs;
      for (const auto& s : core->subscriptions) {
        std::string queue = s.exchange == kEventExchange
                                ? fmt::format("{}.on.{}", core->name, s.pattern)
                                : fmt::format("{}.on.{}.{}", core->name, s.exchange, s.pattern);
        subs.push_back({std::move(queue), s.pattern, s.exchange});
      }
      loop->subscribe(std::move(subs), [core](detail::Loop& l, detail::Message&& m, size_t index) {
        core->handle_event(l, std::move(m), index);
      });
    }
    try {
      loop->start();
    } catch (...) {
      core->loops.clear();
      throw;
    }
    core->loops.push_back(std::move(loop));
  }
  if (core->http_handler) {
    // Each open HTTP connection is a socket: lift the soft limit on open
    // files (often 1024) to the hard one, as Go's runtime does.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }
    try {
      int port = core->http_options.port;
      for (auto& loop : core->loops) {
        int fd = detail::http_listen(core->http_options.address, port);
        port = detail::bound_port(fd);   // the port 0 resolved to, for the other threads
        core->http_servers.push_back(std::make_unique<detail::HttpServer>(
            *loop, fd, core->http_options, core->http_handler, &core->http_active));
      }
      core->http_port = port;
    } catch (...) {
      core->http_servers.clear();
      core->loops.clear();
      throw;
    }
    for (auto& server : core->http_servers) server->start();
    log::info("{}: HTTP on {}:{}", core->name, core->http_options.address, core->http_port);
  }
  if (options.metrics_port > 0) {
    metrics::registry().gauge_fn("tern_server_in_flight", "Requests being handled now",
                                 {{"service", core->name}}, [core] { return double(core->in_flight()); });
    http::ServerOptions mo;
    mo.port = options.metrics_port;
    mo.trace = false;
    try {
      int fd = detail::http_listen(mo.address, mo.port);
      core->metrics_port = detail::bound_port(fd);
      core->metrics_server = std::make_unique<detail::HttpServer>(*core->loops.front(), fd, mo,
                                                                  core->metrics_handler, &core->metrics_active);
    } catch (...) {
      core->http_servers.clear();
      core->loops.clear();
      throw;
    }
    core->metrics_server->start();
    log::info("{}: Prometheus metrics at http://{}:{}/metrics", core->name, mo.address, core->metrics_port);
  }
  core->periodic_stop.store(false);
  for (size_t i = 0; i < core->periodic.size(); ++i) {
    detail::Loop& loop = *core->loops[i % core->loops.size()];
    core->periodic_running.fetch_add(1);
    loop.post([core, &loop, i] {
      core->run_periodic(loop, core->periodic[i]);
      core->periodic_running.fetch_sub(1);
    });
  }
  log::info("{} serving: {} threads, {} requests at once", core->name, threads,
            per_thread * threads);
}

void Service::stop() {
  auto& loops = core_->loops;
  if (loops.empty()) return;
  for (auto& l : loops) l->stop_consuming();
  for (auto& h : core_->http_servers) h->stop();
  if (core_->metrics_server) {
    core_->metrics_server->stop();
    // The gauge must not read this service once it is gone.
    metrics::registry().gauge_fn("tern_server_in_flight", "Requests being handled now",
                                 {{"service", core_->name}}, [] { return 0.0; });
  }
  core_->periodic_stop.store(true);
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(core_->options.drain_timeout_ms);
  while (core_->in_flight() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (int left = core_->in_flight(); left > 0)
    log::warn("{}: {} requests still running after the drain timeout; they go back to the queue",
              core_->name, left);
  // Periodic tasks finish their run (an outbox relay mid-publish).
  while (core_->periodic_running.load() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  loops.clear();  // closes each connection and joins its thread
  core_->http_servers.clear();
  core_->metrics_server.reset();
  log::info("{} stopped", core_->name);
}

int Service::run(int argc, char** argv) {
  log::set_process_name(core_->name);
  Options options;
  try {
    options = Options::from_env();
    options.parse_args(argc, argv);
  } catch (const ConfigError& e) {
    std::string_view what = e.what();
    if (what.starts_with("usage:")) {
      fmt::print("{}", what);
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
  } catch (const std::exception& e) {
    log::error("cannot start: {}", e.what());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  log::info("{}: {} received, draining", core_->name, sig == SIGINT ? "SIGINT" : "SIGTERM");
  stop();
  return 0;
}

}  // namespace tern
