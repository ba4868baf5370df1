#include "signature.h"

#include <charconv>
#include <fmt/format.h>

#include "common/crypto.h"

namespace webhook {
namespace {

std::string mac(std::string_view secret, std::string_view t, std::string_view body) {
  std::string signed_payload;
  signed_payload.reserve(t.size() + 1 + body.size());
  signed_payload.append(t).append(".").append(body);
  return common::to_hex(common::hmac_sha256(secret, signed_payload));
}

}  // namespace

std::string sign(std::string_view secret, int64_t unix_s, std::string_view body) {
  const std::string t = std::to_string(unix_s);
  return fmt::format("t={},v1={}", t, mac(secret, t, body));
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::kValid: return "valid";
    case Verdict::kMalformed: return "malformed";
    case Verdict::kBadMac: return "bad signature";
    case Verdict::kStale: return "outside the replay window";
  }
  return "?";
}

Verdict verify(std::string_view secret, std::string_view header, std::string_view body, int64_t now_unix_s,
               int64_t window_s) {
  std::string_view t;
  bool t_seen = false, v1_seen = false, matched = false;
  std::string want;
  for (std::string_view rest = header;;) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    if (item.starts_with("t=")) {
      if (t_seen) return Verdict::kMalformed;   // one timestamp only
      t = item.substr(2);
      t_seen = true;
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  int64_t ts = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), ts);
  if (!t_seen || t.empty() || t.front() == '-' || ec != std::errc{} || p != t.data() + t.size()) return Verdict::kMalformed;
  want = mac(secret, t, body);
  for (std::string_view rest = header;;) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    if (item.starts_with("v1=")) {
      v1_seen = true;
      matched = common::equal_constant_time(item.substr(3), want) || matched;
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (!v1_seen) return Verdict::kMalformed;
  if (!matched) return Verdict::kBadMac;
  if (ts < now_unix_s - window_s || ts > now_unix_s + window_s) return Verdict::kStale;
  return Verdict::kValid;
}

}  // namespace webhook
