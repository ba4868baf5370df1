#include "export.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include <tern/http.h>
#include <tern/json.h>
#include <tern/log.h>
#include <tern/options.h>

#include "tree.h"
#include "zipkin.h"

namespace trace {
namespace {

using tern::json::quote;

// OTLP's SpanKind numbers.
int otlp_kind(tern::v1::Span::Kind kind) {
  switch (kind) {
    case tern::v1::Span::SERVER:
    case tern::v1::Span::HTTP: return 2;
    case tern::v1::Span::CLIENT: return 3;
    case tern::v1::Span::PUBLISH: return 4;
    case tern::v1::Span::CONSUME: return 5;
    default: return 1;   // INTERNAL
  }
}

void append_attribute(std::string& out, bool& first, std::string_view key, std::string_view value) {
  out += fmt::format(R"({}{{"key":{},"value":{{"stringValue":{}}}}})", first ? "" : ",", quote(key), quote(value));
  first = false;
}

void append_otlp_span(std::string& out, const tern::v1::Span& s) {
  const int64_t start_ns = s.start_unix_us() * 1000;
  const int64_t end_ns = start_ns + std::max<int64_t>(s.duration_us(), 0) * 1000;
  out += fmt::format(R"({{"traceId":{},"spanId":{})", quote(s.trace_id()), quote(s.span_id()));
  if (!s.parent_span_id().empty()) out += fmt::format(R"(,"parentSpanId":{})", quote(s.parent_span_id()));
  out += fmt::format(R"(,"name":{},"kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[)",
                     quote(s.name()), otlp_kind(s.kind()), start_ns, end_ns);
  bool first = true;
  for (const auto& [k, v] : conventional_tags(s))
    if (k != "error") append_attribute(out, first, k, v);   // OTLP says it in status
  out += "]";
  if (s.code() != tern::v1::OK)
    out += fmt::format(R"(,"status":{{"code":2,"message":{}}})",
                       quote(s.error().empty() ? code_name(s.code()) : s.error()));
  else
    out += R"(,"status":{"code":1})";
  out += "}";
}

}  // namespace

ExportFormat export_format(std::string_view url, std::string_view format) {
  if (format == "zipkin") return ExportFormat::kZipkin;
  if (format == "otlp") return ExportFormat::kOtlp;
  if (!format.empty())
    throw tern::ConfigError(fmt::format("TERN_TRACE_EXPORT_FORMAT '{}' is neither zipkin nor otlp", format));
  std::string_view path = url.substr(0, url.find_first_of("?#"));
  return path.ends_with("/v1/traces") ? ExportFormat::kOtlp : ExportFormat::kZipkin;
}

std::string to_otlp_json(const std::vector<tern::v1::Span>& spans) {
  std::map<std::string, std::vector<const tern::v1::Span*>> by_service;
  for (const auto& s : spans) by_service[s.service()].push_back(&s);
  std::string out = R"({"resourceSpans":[)";
  bool first_resource = true;
  for (const auto& [service, list] : by_service) {
    out += first_resource ? "" : ",";
    first_resource = false;
    out += fmt::format(R"({{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":{}}}}}]}},)"
                       R"("scopeSpans":[{{"scope":{{"name":"tern"}},"spans":[)",
                       quote(service));
    for (size_t i = 0; i < list.size(); ++i) {
      if (i > 0) out += ',';
      append_otlp_span(out, *list[i]);
    }
    out += "]}]}";
  }
  return out + "]}";
}

Exporter::Exporter(Options options)
    : options_(std::move(options)),
      sent_(tern::metrics::registry().counter("tern_trace_export_spans_total",
                                              "Spans pushed to TERN_TRACE_EXPORT_URL, by outcome",
                                              {{"outcome", "sent"}})),
      dropped_(tern::metrics::registry().counter("tern_trace_export_spans_total",
                                                 "Spans pushed to TERN_TRACE_EXPORT_URL, by outcome",
                                                 {{"outcome", "dropped"}})),
      failed_(tern::metrics::registry().counter("tern_trace_export_spans_total",
                                                "Spans pushed to TERN_TRACE_EXPORT_URL, by outcome",
                                                {{"outcome", "failed"}})) {}

void Exporter::add(const tern::v1::SpanBatch& batch) {
  size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : batch.spans()) {
      if (queue_.size() >= options_.max_queued) {
        ++dropped;
        continue;
      }
      queue_.push_back(s);
    }
  }
  if (dropped > 0) dropped_.inc(dropped);
}

void Exporter::flush(const tern::Context& ctx) {
  if (flushing_.exchange(true)) return;
  for (;;) {
    std::vector<tern::v1::Span> spans;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t n = std::min(queue_.size(), options_.batch);
      spans.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        spans.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (spans.empty()) break;
    tern::http::Request req;
    req.method = "POST";
    req.headers.push_back({"Content-Type", "application/json"});
    req.body = options_.format == ExportFormat::kOtlp ? to_otlp_json(spans) : to_zipkin_json(spans);
    tern::http::FetchOptions fo;
    fo.timeout = options_.timeout;
    fo.connect_timeout = options_.timeout;
    auto resp = tern::http::fetch(ctx, options_.url, std::move(req), fo);
    if (resp.ok() && resp->status >= 200 && resp->status < 300) {
      sent_.inc(spans.size());
      continue;
    }
    failed_.inc(spans.size());
    tern::log::warn("trace export: {} spans not accepted: {}", spans.size(),
                    resp.ok() ? fmt::format("HTTP {}", resp->status) : resp.error().to_string());
    break;
  }
  flushing_.store(false);
}

}  // namespace trace
