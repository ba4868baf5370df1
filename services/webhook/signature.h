// The Tern-Signature header of a webhook delivery, and the receiver's check.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace webhook {

inline constexpr std::string_view kSignatureHeader = "Tern-Signature";
// How far a delivery's timestamp may be from the receiver's clock, either
// way, before the receiver refuses it as a replay (or a badly set clock).
inline constexpr int64_t kReplayWindowS = 300;

// "t=<unix seconds>,v1=<lowercase hex HMAC-SHA256 of "<t>.<body>">", keyed
// by the webhook's secret (Stripe's scheme). Signed at each attempt, so a
// retry carries a fresh t.
std::string sign(std::string_view secret, int64_t unix_s, std::string_view body);

enum class Verdict {
  kValid,
  kMalformed,   // no t= or no v1=, or t not a number
  kBadMac,      // no v1= matches: another secret, or the body or t was changed
  kStale,       // a valid MAC, but t is more than window_s from now: a replay
};
const char* to_string(Verdict v);

// The receiver's check, as services/webhook/README.md documents it: parse
// t and every v1 (a header may carry several, while secrets rotate), compute
// HMAC-SHA256(secret, "<t>.<body>") over the bytes received, compare in
// constant time, then refuse a t outside now ± window_s. A receiver should
// also drop a Tern-Event-Id it has already handled: inside the window, the
// same delivery can arrive twice (retries do).
Verdict verify(std::string_view secret, std::string_view header, std::string_view body, int64_t now_unix_s,
               int64_t window_s = kReplayWindowS);

}  // namespace webhook
