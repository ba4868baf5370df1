#include "trace_cmd.h"

#include <ctime>
#include <fmt/format.h>

#include "tern/json.h"
#include "tern/tern.h"
#include "trace.pb.h"
#include "tree.h"

namespace tern::cli {

int print_trace(Client& client, const std::string& trace_id, bool json,
                std::chrono::milliseconds timeout, const Failure& how) {
  ::trace::GetTraceRequest req;
  req.set_trace_id(trace_id);
  auto ctx = Context::with_timeout(timeout);
  auto resp = client.call<::trace::GetTraceResponse>(ctx, "service.trace", "get_trace", req,
                                                     CallOptions{.timeout = timeout});
  if (!resp.ok()) return fail_call(resp.error(), how);
  if (json) {
    fmt::print("{}\n", json::to_json(*resp));
    return 0;
  }
  std::vector<v1::Span> spans(resp->spans().begin(), resp->spans().end());
  fmt::print("{}", ::trace::render_text(trace_id, ::trace::build_tree(spans)));
  return 0;
}

int print_traces(Client& client, const TracesOptions& options, std::chrono::milliseconds timeout,
                 const Failure& how) {
  ::trace::RecentRequest req;
  req.set_limit(options.limit);
  req.set_errors_only(options.errors_only);
  req.set_min_duration_ms(options.min_duration_ms);
  req.set_slowest_first(options.min_duration_ms > 0);
  auto ctx = Context::with_timeout(timeout);
  auto resp = client.call<::trace::RecentResponse>(ctx, "service.trace", "recent", req,
                                                   CallOptions{.timeout = timeout});
  if (!resp.ok()) return fail_call(resp.error(), how);
  fmt::print("{:<23} {:>10} {:>5} {:<5} {:<32} {}\n", "started (UTC)", "ms", "spans", "", "trace",
             "root");
  for (const auto& t : resp->traces()) {
    std::time_t secs = static_cast<std::time_t>(t.start_unix_us() / 1000000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char when[24];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    fmt::print("{}.{:03d} {:>10.3f} {:>5} {:<5} {:<32} {} [{}]\n", when,
               static_cast<int>((t.start_unix_us() / 1000) % 1000), t.duration_us() / 1000.0,
               t.span_count(), t.error() ? "ERROR" : "", t.trace_id(), t.root_name(),
               t.root_service());
  }
  if (resp->dropped() > 0) fmt::print("(senders dropped {} spans)\n", resp->dropped());
  return 0;
}

}  // namespace tern::cli
