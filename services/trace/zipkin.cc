#include "zipkin.h"

#include <algorithm>
#include <fmt/format.h>
#include <map>

#include "tree.h"

namespace trace {

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        else
          out += c;
    }
  }
  return out;
}

namespace {

const char* zipkin_kind(tern::v1::Span::Kind kind) {
  switch (kind) {
    case tern::v1::Span::CLIENT: return "CLIENT";
    case tern::v1::Span::SERVER:
    case tern::v1::Span::HTTP: return "SERVER";
    case tern::v1::Span::PUBLISH: return "PRODUCER";
    case tern::v1::Span::CONSUME: return "CONSUMER";
    default: return nullptr;
  }
}

void append_span(std::string& out, const tern::v1::Span& s) {
  out += fmt::format(R"({{"traceId":"{}","id":"{}")", json_escape(s.trace_id()),
                     json_escape(s.span_id()));
  if (!s.parent_span_id().empty())
    out += fmt::format(R"(,"parentId":"{}")", json_escape(s.parent_span_id()));
  out += fmt::format(R"(,"name":"{}")", json_escape(s.name()));
  if (const char* kind = zipkin_kind(s.kind())) out += fmt::format(R"(,"kind":"{}")", kind);
  out += fmt::format(R"(,"timestamp":{},"duration":{})", s.start_unix_us(),
                     std::max<int64_t>(s.duration_us(), 1));
  out += fmt::format(R"(,"localEndpoint":{{"serviceName":"{}"}})", json_escape(s.service()));
  std::map<std::string, std::string> tags(s.tags().begin(), s.tags().end());
  if (!s.peer().empty()) {
    if (s.kind() == tern::v1::Span::HTTP)
      tags["tern.peer"] = s.peer();
    else
      out += fmt::format(R"(,"remoteEndpoint":{{"serviceName":"{}"}})", json_escape(s.peer()));
  }
  tags["tern.code"] = code_name(s.code());
  tags["tern.kind"] = kind_name(s.kind());
  if (s.attempt() > 0) tags["tern.attempt"] = std::to_string(s.attempt());
  if (!s.instance().empty()) tags["tern.instance"] = s.instance();
  if (s.code() != tern::v1::OK) tags["error"] = s.error().empty() ? code_name(s.code()) : s.error();
  out += R"(,"tags":{)";
  bool first = true;
  for (const auto& [k, v] : tags) {
    out += fmt::format(R"({}"{}":"{}")", first ? "" : ",", json_escape(k), json_escape(v));
    first = false;
  }
  out += "}}";
}

}  // namespace

std::string to_zipkin_json(const std::vector<tern::v1::Span>& spans) {
  std::string out = "[";
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i > 0) out += ',';
    append_span(out, spans[i]);
  }
  out += ']';
  return out;
}

}  // namespace trace
