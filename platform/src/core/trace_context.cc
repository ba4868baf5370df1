#include "core/trace_context.h"

#include <algorithm>

namespace tern::detail {
namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}
int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

}  // namespace

std::optional<TraceParent> parse_traceparent(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
                         flags = v.substr(53, 2);
  if (!lower_hex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later version may add fields after a '-'.
  if (version == "00" ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
  if (!lower_hex(trace) || all_zero(trace) || !lower_hex(parent) || all_zero(parent) || !lower_hex(flags))
    return std::nullopt;
  return TraceParent{std::string(trace), std::string(parent), (hex_value(flags[1]) & 1) != 0};
}

std::string format_traceparent(std::string_view trace_id, std::string_view span_id, bool sampled) {
  if (trace_id.size() != 32 || span_id.size() != 16 || !lower_hex(trace_id) || !lower_hex(span_id) ||
      all_zero(trace_id) || all_zero(span_id))
    return {};
  std::string s;
  s.reserve(55);
  s.append("00-").append(trace_id).append(1, '-').append(span_id).append(sampled ? "-01" : "-00");
  return s;
}

std::string_view valid_tracestate(std::string_view value) {
  if (value.empty() || value.size() > 512) return {};
  if (!std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; })) return {};
  return value;
}

}  // namespace tern::detail
