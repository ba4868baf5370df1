// libFuzzer: the gateway's routing (services/gateway/router.h): a route
// table parsed from fuzzed text, or the shipped one, resolving a fuzzed
// path to a service, and a service's described routes matching a method and
// the path past the prefix, as gateway.cc chains them.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <stdexcept>

#include "router.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  static const gateway::RouteTable shipped = gateway::RouteTable::load(TERN_GATEWAY_ROUTES);
  std::optional<gateway::RouteTable> fuzzed;
  if (in.ConsumeBool()) {
    try {
      fuzzed = gateway::RouteTable::parse(in.ConsumeRandomLengthString(512));
    } catch (const std::invalid_argument&) {
    }
  }
  tern::v1::DescribeResponse described;
  for (int n = in.ConsumeIntegralInRange(0, 6); n > 0; --n) {
    auto* r = described.add_routes();
    r->set_method(in.ConsumeBool() ? "GET" : in.ConsumeRandomLengthString(8));
    r->set_path(in.ConsumeRandomLengthString(64));
    r->set_endpoint(in.ConsumeRandomLengthString(16));
  }
  const std::string method = in.ConsumeBool() ? "GET" : in.ConsumeRandomLengthString(8);
  // The path as read_request gives it: it starts with '/'.
  const std::string path = "/" + in.ConsumeRemainingBytesAsString();

  const gateway::RouteTable& table = fuzzed ? *fuzzed : shipped;
  std::optional<gateway::Target> target = table.resolve(path);
  if (!target) return 0;
  // What the gateway relies on: a service to call, and a rest that is a path.
  // What the gateway relies on: a service to call, and a rest that is the
  // end of the path (or "/"), so the service sees the path it was sent.
  if (target->service.empty() || !target->rest.starts_with('/')) abort();
  if (target->rest != "/" && !path.ends_with(target->rest)) abort();
  // The {name} rule makes plain names only: "api.x.y" could reach another queue.
  if (!fuzzed && !target->listed &&
      target->service.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-", 4) != std::string::npos)
    abort();
  const gateway::EndpointRoutes routes(described.routes());
  tern::Result<gateway::EndpointRoutes::Match> m = routes.match(method, target->rest);
  if (m.ok()) {
    for (const auto& [name, value] : m->params)
      if (value.empty() || value.find('/') != std::string::npos) abort();
  } else if (m.code() != tern::Code::kNotFound && m.code() != tern::Code::kUnimplemented) {
    abort();
  }
  return 0;
}
