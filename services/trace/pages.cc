#include "pages.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fmt/format.h>

#include "tree.h"

namespace trace {

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr const char* kStyle = R"(<style>
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px}h2{font-size:15px;margin-top:20px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee;white-space:nowrap}
th{background:#f4f4f4}
a{color:#0b5cad;text-decoration:none}
.err{color:#c62828;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.timeline{width:45%;position:relative}
.track{position:relative;height:14px;background:#f7f7f7}
.bar{position:absolute;top:0;height:14px;background:#4a90d9;min-width:2px}
.bar.CLIENT{background:#7cb342}.bar.HTTP{background:#8e6cc4}
.bar.PUBLISH,.bar.CONSUME{background:#f0a030}
tr.failed .bar{background:#c62828}
.kind{color:#666;font-size:11px}
.muted{color:#888}
</style>)";

std::string page(std::string_view title, std::string_view body) {
  return fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>{}</head>"
      "<body>{}</body></html>\n",
      html_escape(title), kStyle, body);
}

std::string utc_time(int64_t unix_us) {
  std::time_t t = static_cast<std::time_t>(unix_us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:03d}", buf, static_cast<int>((unix_us / 1000) % 1000));
}

std::string trace_table(std::string_view heading, const RecentResponse& traces) {
  std::string out = fmt::format("<h2>{}</h2>", html_escape(heading));
  if (traces.traces_size() == 0) return out + "<p class=\"muted\">none</p>";
  out += "<table><tr><th>started (UTC)</th><th>root</th><th>service</th>"
         "<th class=\"num\">ms</th><th class=\"num\">spans</th><th></th><th>trace</th></tr>";
  for (const auto& t : traces.traces()) {
    out += fmt::format(
        "<tr class=\"trace{}\"><td>{}</td><td><a href=\"/trace/{}\">{}</a></td><td>{}</td>"
        "<td class=\"num\">{:.3f}</td><td class=\"num\">{}</td><td>{}</td>"
        "<td><a href=\"/trace/{}\">{}</a></td></tr>",
        t.error() ? " failed" : "", utc_time(t.start_unix_us()), html_escape(t.trace_id()),
        html_escape(t.root_name().empty() ? "(root not received)" : t.root_name()),
        html_escape(t.root_service()), t.duration_us() / 1000.0, t.span_count(),
        t.error() ? "<span class=\"err\">error</span>" : "", html_escape(t.trace_id()),
        html_escape(t.trace_id()));
  }
  return out + "</table>";
}

}  // namespace

std::string render_index(const RecentResponse& slowest, const RecentResponse& failed,
                         const RecentResponse& newest) {
  std::string body = "<h1>tern traces</h1>";
  if (newest.dropped() > 0)
    body += fmt::format("<p class=\"err\">senders dropped {} spans</p>", newest.dropped());
  body += trace_table("Slowest", slowest);
  body += trace_table("Failed", failed);
  body += trace_table("Newest", newest);
  return page("tern traces", body);
}

std::string render_waterfall(std::string_view trace_id, const std::vector<tern::v1::Span>& spans) {
  const Tree tree = build_tree(spans);
  const double total = static_cast<double>(std::max<int64_t>(tree.duration_us, 1));
  std::string body = fmt::format(
      "<p><a href=\"/\">&larr; traces</a></p><h1>trace {}</h1>"
      "<p>{} spans, {:.3f} ms, started {} UTC &middot; "
      "<a href=\"/api/v2/trace/{}\">Zipkin JSON</a></p>",
      html_escape(trace_id), tree.rows.size(), tree.duration_us / 1000.0,
      utc_time(tree.start_unix_us), html_escape(trace_id));
  body += "<table class=\"waterfall\"><tr><th>span</th><th>service</th><th class=\"num\">start ms</th>"
          "<th class=\"timeline\">timeline</th><th class=\"num\">ms</th><th>code</th></tr>";
  for (const auto& row : tree.rows) {
    const auto& s = *row.span;
    const bool failed = s.code() != tern::v1::OK;
    const double left = 100.0 * static_cast<double>(row.offset_us) / total;
    const double width = 100.0 * static_cast<double>(std::max<int64_t>(s.duration_us(), 0)) / total;
    std::string title = fmt::format("{} {} attempt {} peer {} instance {}", kind_name(s.kind()),
                                    s.name(), s.attempt(), s.peer(), s.instance());
    if (!s.error().empty()) title += " error: " + s.error();
    body += fmt::format(
        "<tr class=\"span{}\" id=\"span-{}\" title=\"{}\">"
        "<td style=\"padding-left:{}px\"><span class=\"kind\">{}</span> {}</td><td>{}</td>"
        "<td class=\"num\">{:.3f}</td>"
        "<td class=\"timeline\"><div class=\"track\"><div class=\"bar {}\" "
        "style=\"left:{:.3f}%;width:{:.3f}%\"></div></div></td>"
        "<td class=\"num\">{:.3f}</td><td{}>{}</td></tr>",
        failed ? " failed" : "", html_escape(s.span_id()), html_escape(title), 6 + 16 * row.depth,
        html_escape(kind_name(s.kind())), html_escape(s.name()), html_escape(s.service()),
        row.offset_us / 1000.0, html_escape(kind_name(s.kind())), std::min(left, 100.0),
        std::min(width, 100.0 - std::min(left, 100.0)), s.duration_us() / 1000.0,
        failed ? " class=\"err\"" : "",
        html_escape(code_name(s.code()) + (s.error().empty() ? "" : ": " + s.error())));
  }
  body += "</table>";
  return page(fmt::format("trace {}", trace_id), body);
}

std::string render_message(std::string_view title, std::string_view message) {
  return page(title, fmt::format("<p><a href=\"/\">&larr; traces</a></p><h1>{}</h1><p>{}</p>",
                                 html_escape(title), html_escape(message)));
}

}  // namespace trace
