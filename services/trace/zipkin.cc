#include "zipkin.h"

#include <algorithm>
#include <fmt/format.h>
#include <map>

#include "tern/json.h"
#include "tree.h"

namespace trace {

namespace {

using tern::json::quote;

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
  out += fmt::format(R"({{"traceId":{},"id":{})", quote(s.trace_id()), quote(s.span_id()));
  if (!s.parent_span_id().empty())
    out += fmt::format(R"(,"parentId":{})", quote(s.parent_span_id()));
  out += fmt::format(R"(,"name":{})", quote(s.name()));
  if (const char* kind = zipkin_kind(s.kind())) out += fmt::format(R"(,"kind":"{}")", kind);
  out += fmt::format(R"(,"timestamp":{},"duration":{})", s.start_unix_us(),
                     std::max<int64_t>(s.duration_us(), 1));
  out += fmt::format(R"(,"localEndpoint":{{"serviceName":{}}})", quote(s.service()));
  if (!s.peer().empty() && s.kind() != tern::v1::Span::HTTP)
    out += fmt::format(R"(,"remoteEndpoint":{{"serviceName":{}}})", quote(s.peer()));
  const std::map<std::string, std::string> tags = conventional_tags(s);
  out += R"(,"tags":{)";
  bool first = true;
  for (const auto& [k, v] : tags) {
    out += fmt::format(R"({}{}:{})", first ? "" : ",", quote(k), quote(v));
    first = false;
  }
  out += "}}";
}

}  // namespace

std::map<std::string, std::string> conventional_tags(const tern::v1::Span& s) {
  std::map<std::string, std::string> tags(s.tags().begin(), s.tags().end());
  if (s.kind() == tern::v1::Span::HTTP) {
    if (!s.peer().empty()) tags["tern.peer"] = s.peer();
  } else if (s.kind() == tern::v1::Span::CLIENT || s.kind() == tern::v1::Span::SERVER) {
    // OpenTelemetry's RPC conventions: CLIENT "service.x/endpoint", SERVER "endpoint".
    tags["rpc.system"] = "tern";
    const std::string& name = s.name();
    if (s.kind() == tern::v1::Span::CLIENT) {
      const size_t slash = name.find('/');
      tags["rpc.service"] = name.substr(0, slash);
      if (slash != std::string::npos) tags["rpc.method"] = name.substr(slash + 1);
    } else {
      tags["rpc.service"] = s.service();
      tags["rpc.method"] = name;
    }
  } else if (s.kind() == tern::v1::Span::PUBLISH || s.kind() == tern::v1::Span::CONSUME) {
    tags["messaging.system"] = "rabbitmq";
  }
  tags["tern.code"] = code_name(s.code());
  tags["tern.kind"] = kind_name(s.kind());
  if (s.attempt() > 0) tags["tern.attempt"] = std::to_string(s.attempt());
  if (!s.instance().empty()) tags["tern.instance"] = s.instance();
  if (s.code() != tern::v1::OK) tags["error"] = s.error().empty() ? code_name(s.code()) : s.error();
  return tags;
}

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
