// service.greeter: tern's hello world.
#include <boost/fiber/operations.hpp>
#include <tern/tern.h>

#include "greeter.pb.h"

using greeter::HelloRequest;
using greeter::HelloResponse;
using greeter::SlowHelloRequest;

tern::Result<HelloResponse> Hello(tern::Context&, const HelloRequest& req) {
  if (req.name().empty()) return tern::Error{tern::Code::kInvalidArgument, "name is required"};
  HelloResponse rsp;
  rsp.set_greeting(fmt::format("Hello, {}!", req.name()));
  return rsp;
}

// Answers after delay_ms. Sleeping parks only this request's fiber; and it
// gives up at the caller's deadline, since nobody waits for the answer then.
tern::Result<HelloResponse> SlowHello(tern::Context& ctx, const SlowHelloRequest& req) {
  auto delay = std::chrono::milliseconds(req.delay_ms());
  bool in_time = delay < ctx.remaining();
  boost::this_fiber::sleep_for(std::min(delay, ctx.remaining()));
  if (!in_time) return tern::Error{tern::Code::kDeadlineExceeded, "gave up at the deadline"};
  HelloRequest hello;
  hello.set_name(req.name());
  return Hello(ctx, hello);
}

// Greets through a downstream call to `hello`: the call inherits this
// request's trace and what is left of its deadline.
tern::Result<HelloResponse> RelayHello(tern::Context& ctx, const HelloRequest& req) {
  return tern::call<HelloResponse>(ctx, "service.greeter", "hello", req);
}

int main(int argc, char** argv) {
  tern::Service svc{"service.greeter"};
  svc.post("/hello", "hello", Hello);              // also POST /greeter/hello via the gateway
  svc.post("/slow_hello", "slow_hello", SlowHello);
  svc.handle("relay_hello", RelayHello);           // reachable over the bus only
  return svc.run(argc, argv);
}
