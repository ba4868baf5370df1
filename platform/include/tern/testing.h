// Test doubles for handler unit tests: no broker, no threads.
#pragma once

#include <functional>

#include "tern/trace.pb.h"

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tern/call.h"

namespace tern::testing {

// A Transport that answers downstream calls from stubs registered per
// service and endpoint, and records what was called. Not thread-safe.
//
//   tern::testing::FakeTransport fake;
//   fake.stub<GetUserRequest, GetUserResponse>("service.user", "get",
//       [](const GetUserRequest& r) -> tern::Result<GetUserResponse> { ... });
//   auto ctx = fake.context(std::chrono::seconds(1));
//   auto result = MyHandler(ctx, request);
class FakeTransport final : public Transport {
 public:
  struct Recorded {
    std::string service;
    std::string endpoint;
    std::string trace_id;
    Context::Clock::time_point deadline;
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

  Result<std::string> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                           std::string body, const CallOptions& opts) override {
    auto deadline = std::min(ctx.deadline(), Context::Clock::now() + opts.timeout);
    calls_.push_back({std::string(service), std::string(endpoint), ctx.trace_id(), deadline});
    if (ctx.cancelled()) return Error{Code::kCancelled, "cancelled"};
    if (Context::Clock::now() >= deadline) return Error{Code::kDeadlineExceeded, "deadline passed"};
    auto it = stubs_.find({std::string(service), std::string(endpoint)});
    if (it == stubs_.end())
      return Error{Code::kUnavailable, "no stub for " + std::string(service) + "/" + std::string(endpoint)};
    return it->second(body);
  }

 private:
  std::map<std::pair<std::string, std::string>, std::function<Result<std::string>(const std::string&)>> stubs_;
  std::vector<Recorded> calls_;
};

// Every span any tern runtime of this process records also goes to `sink`
// while tracing is on (TERN_TRACING); null stops it. For tests of tracing.
void set_span_sink(std::function<void(const v1::Span&)> sink);

}  // namespace tern::testing
