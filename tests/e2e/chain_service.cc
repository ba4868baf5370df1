// A probe in a chain, for the trace test: POST /probe (through the gateway)
// or endpoint "probe" calls the first service of req.route with the rest of
// the route, then answers with the hops seen. Named by $CHAIN_SERVICE.
#include <boost/fiber/operations.hpp>
#include <cstdlib>

#include "probe.pb.h"
#include "tern/tern.h"

int main(int argc, char** argv) {
  const char* name = std::getenv("CHAIN_SERVICE");
  tern::Service svc{name != nullptr ? name : "test.chain"};
  const std::string self = svc.name();
  svc.post("/probe", "probe",
           [self](tern::Context& ctx, const probe::ProbeRequest& req) -> tern::Result<probe::ProbeResponse> {
             boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
             probe::ProbeResponse out;
             if (req.route_size() > 0) {
               probe::ProbeRequest next = req;
               next.mutable_route()->erase(next.mutable_route()->begin());
               auto r = tern::call<probe::ProbeResponse>(ctx, req.route(0), "probe", next);
               if (!r.ok()) return r.error();
               out = std::move(*r);
             }
             if (req.fail()) return tern::Error{tern::Code::kFailedPrecondition, "asked to fail"};
             auto* hop = out.add_hops();
             hop->set_service(self);
             hop->set_trace_id(ctx.trace_id());
             hop->set_span_id(ctx.span_id());
             return out;
           });
  return svc.run(argc, argv);
}
