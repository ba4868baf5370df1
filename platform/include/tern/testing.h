// Test doubles for handler unit tests: no broker, no threads.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tern/call.h"
#include "tern/trace.pb.h"

namespace tern::testing {

// A Transport that answers downstream calls from stubs registered per
// service and endpoint, records what was called, and records the events
// published (tern::publish, an outbox's relay) instead of sending them.
// Not thread-safe: one test, one fiber or thread.
//
//   tern::testing::FakeTransport fake;
//   fake.stub<GetUserRequest, GetUserResponse>("service.user", "get",
//       [](const GetUserRequest& r) -> tern::Result<GetUserResponse> { ... });
//   auto ctx = fake.context(std::chrono::seconds(1));
//   auto result = MyHandler(ctx, request);
//   std::vector<UserCreated> events = fake.published<UserCreated>();
class FakeTransport final : public Transport {
 public:
  struct Recorded {
    std::string service;
    std::string endpoint;
    std::string trace_id;
    Context::Clock::time_point deadline;
    std::string idempotency_key;   // CallOptions::idempotency_key
  };
  // One publish that succeeded, as it reached the transport.
  struct Published {
    std::string type;         // the event's full name: "transaction.Created"
    std::string routing_key;  // "transaction.created" (tern::event_routing_key)
    std::string body;         // the serialized event
    std::string trace_id;     // of the publishing context
    Context::Metadata metadata;  // likewise
  };

  template <class Req, class Resp, class F>
  void stub(std::string service, std::string endpoint, F fn) {
    stubs_[{std::move(service), std::move(endpoint)}] =
        [fn = std::move(fn)](const std::string& body) -> Result<std::string> {
      Req req;
      if (!req.ParseFromString(body)) return Error{Code::kInvalidArgument, "stub: bad request"};
      Result<Resp> r = fn(req);
      if (!r.ok()) return r.error();
      return r->SerializeAsString();
    };
  }

  // A root context whose calls go to this transport.
  Context context(std::chrono::milliseconds timeout) {
    Context ctx = Context::with_timeout(timeout);
    ctx.set_transport(this);
    return ctx;
  }

  const std::vector<Recorded>& calls() const { return calls_; }

  // Every publish that succeeded, in order.
  const std::vector<Published>& publishes() const { return publishes_; }

  // The events of type Event published so far, parsed, in order; publishes
  // of other types are left out.
  template <class Event>
  std::vector<Event> published() const {
    std::vector<Event> out;
    const std::string type = Event().GetTypeName();
    for (const Published& p : publishes_) {
      if (p.type != type) continue;
      Event e;
      if (e.ParseFromString(p.body)) out.push_back(std::move(e));
    }
    return out;
  }

  // Every later publish returns `error` and records nothing, as a broker
  // that is away or refuses (say UNAVAILABLE with outcome=unknown);
  // fail_publishes(tern::ok()) makes them succeed again.
  void fail_publishes(Error error) { publish_error_ = std::move(error); }

  Result<std::string> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                           std::string body, const CallOptions& opts) override {
    auto deadline = std::min(ctx.deadline(), Context::Clock::now() + opts.timeout);
    calls_.push_back({std::string(service), std::string(endpoint), ctx.trace_id(), deadline, opts.idempotency_key});
    if (ctx.cancelled()) return Error{Code::kCancelled, "cancelled"};
    if (Context::Clock::now() >= deadline) return Error{Code::kDeadlineExceeded, "deadline passed"};
    auto it = stubs_.find({std::string(service), std::string(endpoint)});
    if (it == stubs_.end())
      return Error{Code::kUnavailable, "no stub for " + std::string(service) + "/" + std::string(endpoint)};
    return it->second(body);
  }

  // Records the event and returns tern::ok(), unless fail_publishes set an
  // error.
  Error publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                std::string body) override {
    if (!publish_error_.ok()) return publish_error_;
    publishes_.push_back(
        {std::string(type), std::string(routing_key), std::move(body), ctx.trace_id(), ctx.metadata()});
    return ok();
  }

 private:
  std::map<std::pair<std::string, std::string>, std::function<Result<std::string>(const std::string&)>> stubs_;
  std::vector<Recorded> calls_;
  std::vector<Published> publishes_;
  Error publish_error_ = ok();
};

// Every span any tern runtime of this process records also goes to `sink`
// while tracing is on (TERN_TRACING); null stops it. For tests of tracing.
void set_span_sink(std::function<void(const v1::Span&)> sink);

}  // namespace tern::testing
