#include "handlers.h"

#include <charconv>

#include "pages.h"
#include "zipkin.h"

namespace trace {

tern::Result<GetTraceResponse> Collector::get_trace(tern::Context&, const GetTraceRequest& req) {
  if (req.trace_id().empty()) return tern::Error{tern::Code::kInvalidArgument, "trace_id is required"};
  GetTraceResponse out;
  for (auto& span : store_.get(req.trace_id())) *out.add_spans() = std::move(span);
  if (out.spans_size() == 0)
    return tern::Error{tern::Code::kNotFound, "no spans of trace " + req.trace_id()};
  return out;
}

tern::Result<RecentResponse> Collector::recent(tern::Context&, const RecentRequest& req) {
  return store_.recent(req);
}

tern::Error Collector::on_batch(tern::Context&, const tern::v1::SpanBatch& batch) {
  try {
    store_.add(batch);
  } catch (const std::exception& e) {
    return tern::Error{tern::Code::kUnavailable, e.what()};
  }
  // Only once kept: a batch redelivered after a failed add is exported once.
  if (exporter_ != nullptr) exporter_->add(batch);
  return tern::ok();
}

namespace {

tern::http::Response html(int status, std::string body) {
  tern::http::Response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "text/html; charset=utf-8"});
  r.body = std::move(body);
  return r;
}

uint32_t query_limit(std::string_view query, uint32_t fallback) {
  for (const auto& [k, v] : tern::http::parse_query(query)) {
    uint32_t n = 0;
    if (k == "limit" && std::from_chars(v.data(), v.data() + v.size(), n).ec == std::errc() && n > 0)
      return n;
  }
  return fallback;
}

}  // namespace

tern::http::Response Collector::http(tern::Context&, tern::http::Request& req) {
  const std::string_view path = req.path;
  if (req.method != "GET") {
    auto r = html(405, render_message("405", "only GET"));
    r.headers.push_back({"Allow", "GET"});
    return r;
  }
  if (path == "/healthz") return tern::http::Response::json(200, R"({"status":"SERVING"})");
  if (path == "/" || path.empty()) {
    RecentRequest slow;
    slow.set_limit(20);
    slow.set_slowest_first(true);
    RecentRequest failed;
    failed.set_limit(20);
    failed.set_errors_only(true);
    RecentRequest newest;
    newest.set_limit(20);
    return html(200, render_index(store_.recent(slow), store_.recent(failed), store_.recent(newest)));
  }
  if (path.starts_with("/trace/")) {
    const std::string id(path.substr(7));
    auto spans = store_.get(id);
    if (spans.empty()) return html(404, render_message("not found", "no spans of trace " + id));
    return html(200, render_waterfall(id, spans));
  }
  if (path.starts_with("/api/v2/trace/")) {
    auto spans = store_.get(path.substr(14));
    if (spans.empty()) return tern::http::Response::json(404, "[]");
    return tern::http::Response::json(200, to_zipkin_json(spans));
  }
  if (path == "/api/v2/traces") {
    RecentRequest newest;
    newest.set_limit(query_limit(req.query, 10));
    std::string out = "[";
    const RecentResponse recent = store_.recent(newest);
    for (const auto& t : recent.traces()) {
      if (out.size() > 1) out += ',';
      out += to_zipkin_json(store_.get(t.trace_id()));
    }
    return tern::http::Response::json(200, out + "]");
  }
  return html(404, render_message("not found", "no page " + std::string(path)));
}

}  // namespace trace
