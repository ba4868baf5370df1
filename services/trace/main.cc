// service.trace: keeps the spans every tern process sends to tern.traces and
// shows them: endpoints get_trace and recent (`tern trace`), and HTTP pages
// with a waterfall per trace and Zipkin v2 JSON. See docs/observability.md.
#include <tern/env.h>
#include <tern/tern.h>

#include <chrono>
#include <limits>
#include <optional>

#include "handlers.h"

namespace {

// How often spans waiting for TERN_TRACE_EXPORT_URL are pushed.
constexpr std::chrono::milliseconds kExportPeriod{500};
// How often retention is enforced.
constexpr std::chrono::seconds kPrunePeriod{10};
// The longest TERN_TRACE_RETENTION_S: ten years (in microseconds it still
// fits an int64 many times over).
constexpr int64_t kMaxRetentionS = int64_t{10} * 365 * 24 * 3600;

int64_t now_unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  tern::log::set_process_name("service.trace");
  std::optional<trace::Store> store;
  trace::Retention retention;
  tern::http::ServerOptions http;
  std::optional<trace::Exporter> exporter;
  try {
    // TERN_DATA_DIR: where service.trace.db lives.
    store.emplace(common::data_file(tern::env::string("TERN_DATA_DIR", "./data"), "service.trace"));
    retention.max_age_s =
        tern::env::integer("TERN_TRACE_RETENTION_S", retention.max_age_s, 1, kMaxRetentionS);
    retention.max_spans = tern::env::integer("TERN_TRACE_MAX_SPANS", retention.max_spans, 1,
                                             std::numeric_limits<int64_t>::max());
    // TERN_TRACE_HTTP_PORT: the pages and Zipkin JSON; 0 is any free port.
    http.port = static_cast<int>(tern::env::integer("TERN_TRACE_HTTP_PORT", 9412, 0, 65535));
    // TERN_TRACE_HTTP_ADDRESS, else TERN_HTTP_ADDR (the platform's
    // observability address), else loopback: traces are not public by default.
    http.address = tern::env::string("TERN_TRACE_HTTP_ADDRESS", tern::env::string("TERN_HTTP_ADDR", "127.0.0.1"));
    // TERN_TRACE_EXPORT_URL: push every span on to a Zipkin v2 collector
    // (http://zipkin:9411/api/v2/spans) or an OTLP/HTTP JSON one
    // (http://otel-collector:4318/v1/traces); TERN_TRACE_EXPORT_FORMAT says
    // which if the path does not.
    trace::Exporter::Options eo;
    eo.url = tern::env::string("TERN_TRACE_EXPORT_URL", "");
    eo.format = trace::export_format(eo.url, tern::env::string("TERN_TRACE_EXPORT_FORMAT", ""));
    eo.max_queued = static_cast<size_t>(tern::env::integer("TERN_TRACE_EXPORT_MAX_QUEUED",
                                                           static_cast<int64_t>(eo.max_queued), 1, 10'000'000));
    if (!eo.url.empty()) exporter.emplace(std::move(eo));
  } catch (const std::exception& e) {
    tern::log::error("cannot start: {}", e.what());
    return 2;
  }
  trace::Collector collector{*store, exporter ? &*exporter : nullptr};
  tern::Service svc{"service.trace"};
  svc.handle("get_trace", [&](tern::Context& ctx, const trace::GetTraceRequest& req) {
    return collector.get_trace(ctx, req);
  });
  svc.handle("recent", [&](tern::Context& ctx, const trace::RecentRequest& req) {
    return collector.recent(ctx, req);
  });
  svc.subscribe_on<tern::v1::SpanBatch>(
      tern::kTraceExchange, "#",
      [&](tern::Context& ctx, const tern::v1::SpanBatch& batch) { return collector.on_batch(ctx, batch); });
  svc.serve_http(http, [&](tern::Context& ctx, tern::http::Request& req) { return collector.http(ctx, req); });
  if (exporter) svc.every(kExportPeriod, [&](tern::Context& ctx) { exporter->flush(ctx); });
  svc.every(kPrunePeriod, [&](tern::Context&) {
    if (int64_t n = store->prune(retention, now_unix_us()); n > 0)
      tern::log::info("retention: deleted {} spans", n);
  });
  return svc.run(argc, argv);
}
