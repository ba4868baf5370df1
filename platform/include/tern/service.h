// A service: endpoints registered by name, served from the request queue
// named after the service.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <google/protobuf/descriptor.h>

#include "tern/context.h"
#include "tern/error.h"
#include "tern/filter.h"
#include "tern/handler.h"
#include "tern/http.h"
#include "tern/idempotency.h"
#include "tern/options.h"

namespace tern {

namespace detail {
class ServiceCore;
}  // namespace detail

class Service {
 public:
  // name: the service's name and request queue, e.g. "service.greeter".
  explicit Service(std::string name);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  const std::string& name() const;

  // Registers a handler `Result<Resp>(Context&, const Req&)` for `endpoint`.
  // Handlers run in their own fiber, many at once on each worker thread: they
  // must not block the thread (use tern::call, boost::this_fiber::sleep_for,
  // fiber mutexes). A handler that throws answers INTERNAL. Register all
  // endpoints before start() or run().
  template <class F>
  Service& handle(std::string endpoint, F handler) {
    using Traits = detail::handler_traits<std::decay_t<F>>;
    using Req = typename Traits::Request;
    using Resp = typename Traits::Response;
    detail::Endpoint ep;
    ep.request_type = Req::descriptor();
    ep.response_type = Resp::descriptor();
    ep.invoke = [h = std::move(handler)](Context& ctx, std::string_view body,
                                         std::string* out) -> Error {
      Req req;
      if (!req.ParseFromArray(body.data(), static_cast<int>(body.size())))
        return detail::unparsable_request(Req::descriptor());
      Result<Resp> result = h(ctx, req);
      if (!result.ok()) return std::move(result.error());
      result->SerializeToString(out);
      return ok();
    };
    add_endpoint(std::move(endpoint), std::move(ep));
    return *this;
  }

  // HTTP routes for the gateway. Registers `handler` as `endpoint` (as
  // handle() does) and tells the gateway that `method path` reaches it;
  // `path` is relative to where the gateway mounts this service ("/" and
  // "/:id" under /webhooks for api.webhook) and may hold ":name" segments,
  // which the gateway copies into the request's field `name`. The gateway
  // learns routes from `_describe`. Like router.GET("/", List):
  //   svc.get("/", "list", List).post("/", "register", Register)
  //      .del("/:id", "deregister", Deregister);
  template <class F>
  Service& route(std::string method, std::string path, std::string endpoint, F handler) {
    add_route(std::move(method), std::move(path), endpoint);
    return handle(std::move(endpoint), std::move(handler));
  }
  template <class F>
  Service& get(std::string path, std::string endpoint, F handler) {
    return route("GET", std::move(path), std::move(endpoint), std::move(handler));
  }
  template <class F>
  Service& post(std::string path, std::string endpoint, F handler) {
    return route("POST", std::move(path), std::move(endpoint), std::move(handler));
  }
  template <class F>
  Service& put(std::string path, std::string endpoint, F handler) {
    return route("PUT", std::move(path), std::move(endpoint), std::move(handler));
  }
  template <class F>
  Service& patch(std::string path, std::string endpoint, F handler) {
    return route("PATCH", std::move(path), std::move(endpoint), std::move(handler));
  }
  template <class F>
  Service& del(std::string path, std::string endpoint, F handler) {
    return route("DELETE", std::move(path), std::move(endpoint), std::move(handler));
  }

  // Also serves HTTP/1.1 on options.port: every loop thread accepts on its
  // own SO_REUSEPORT socket and runs each connection in a fiber. Set before
  // start(). http_port() is the bound port once started (for port 0).
  Service& serve_http(http::ServerOptions options, http::Handler handler);
  int http_port() const;
  // With Options::metrics_port set: the port /metrics is served on.
  int metrics_port() const;

  // Runs fn in a fiber on one of the service's threads every `period`, from
  // start() until stop() (the first run one period after start). For
  // housekeeping such as relaying an Outbox. A throw is logged, and the
  // next run still happens. Set before start().
  Service& every(std::chrono::milliseconds period, std::function<void(Context&)> fn);

  // Limits `endpoint` to `per_second` requests on average across this
  // instance's threads, with bursts of up to `burst`; requests over the limit
  // are answered RESOURCE_EXHAUSTED without running the handler.
  Service& rate_limit(std::string endpoint, double per_second, double burst);

  // Only `callers` (broker users, as the broker verified them: ctx.caller())
  // may call `endpoint`; anyone else gets PERMISSION_DENIED without the
  // handler running. Set before start().
  Service& allow_callers(std::string endpoint, std::vector<std::string> callers);

  // Adds a server filter around every request to this service, after the
  // platform's deadline, unknown-endpoint and rate-limit checks and before
  // idempotent replay and the handler; filters run in the order added (see
  // tern/filter.h). Set before start().
  Service& use(ServerFilter filter);
  // Adds a client filter around every attempt of every call the service's
  // handlers (and periodic tasks, HTTP handlers) make. Set before start().
  Service& use_on_calls(ClientFilter filter);

  // Subscribes to events of type Event whose routing key matches `pattern`
  // (AMQP topic syntax: "transaction.*", "#"); see tern::event_routing_key.
  // The handler is `tern::Error(Context&, const Event&)`: return an Error
  // with code kOk when done. Each subscription has one durable queue,
  // "<service>.on.<pattern>", shared by the service's instances, so each
  // event reaches each subscribing service once and its instances split
  // the load. Delivery is at least once: the event is acked after the
  // handler returns ok. A failure (error or throw) is retried after
  // TERN_EVENT_RETRY_MS, doubling, up to TERN_EVENT_ATTEMPTS tries in all,
  // then the event goes to "<queue>.dead-letter" with the error.
  template <class Event, class F>
  Service& subscribe(std::string pattern, F handler) {
    return subscribe_on<Event>("tern.events", std::move(pattern), std::move(handler));
  }
  // As subscribe(), to another topic exchange carrying tern.v1.Event
  // envelopes (tern.traces, where processes send their spans). The queue is
  // "<service>.on.<exchange>.<pattern>".
  template <class Event, class F>
  Service& subscribe_on(std::string exchange, std::string pattern, F handler) {
    detail::EventSubscription sub;
    sub.exchange = std::move(exchange);
    sub.pattern = pattern;
    sub.invoke = [h = std::move(handler)](Context& ctx, std::string_view body) -> Error {
      Event event;
      if (!event.ParseFromArray(body.data(), static_cast<int>(body.size())))
        return detail::unparsable_request(Event::descriptor());
      return h(ctx, event);
    };
    add_subscription(std::move(sub));
    return *this;
  }

  // Only events published by `publishers` (broker users, as the broker
  // verified them: ctx.caller() in the handler) reach the handlers of the
  // subscriptions to `pattern` made so far; any other goes to the
  // subscription's dead-letter queue unhandled. Set before start().
  Service& require_publishers(const std::string& pattern, std::vector<std::string> publishers);

  // Options from the environment and argv, start(), then serve until SIGTERM
  // or SIGINT, then stop(). Returns the process exit code.
  int run(int argc, char** argv);

  // Connects, declares the request queue and starts consuming; returns once
  // the service is serving. Throws std::runtime_error if the broker cannot be
  // reached or the queue cannot be declared.
  void start(const Options& options);
  // Stops consuming, lets in-flight handlers finish (up to
  // options.drain_timeout_ms), replies and acks them, then disconnects.
  // Deliveries not yet handled are left unacked and the broker requeues them.
  // Past the drain timeout the handlers still running have their contexts
  // cancelled and 2 s to end; any still running then are left running on
  // their threads (logged; the service's memory is then never freed) and
  // stop() returns: it is bounded by the drain timeout + 2 s.
  void stop();

  // Requests currently being handled by this instance.
  int in_flight() const;

  // Where answers to requests with an idempotency key are kept; by default a
  // MemoryIdempotencyStore per process. Null turns replaying off. Set it
  // before start().
  void set_idempotency_store(std::shared_ptr<IdempotencyStore> store);

 private:
  void add_endpoint(std::string name, detail::Endpoint endpoint);
  void add_subscription(detail::EventSubscription subscription);
  void add_route(std::string method, std::string path, const std::string& endpoint);
  std::unique_ptr<detail::ServiceCore> core_;
};

}  // namespace tern
