// The fault suite's client side: a load of concurrent calls to the fault
// service, about half of them with an idempotency key, and what each call was told
// (ok, refused, or an unknown outcome) for the ledger's checker.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>
#include <set>
#include <string>
#include <vector>

#include "ledger.h"
#include "tern/tern.h"

// What the attempts of each call said, seen by a client filter around every
// attempt: whether any of them may have reached a handler. A call whose
// every attempt was refused without being processed (no route, overflow,
// invalid, never sent) failed definitively; any other failure is an unknown
// outcome (a timeout after the publish, a connection lost after it...).
class Attempts {
 public:
  // Install on the client (tern::Client's filters).
  tern::ClientFilter filter();
  bool maybe_processed(const std::string& key) const;
  // Attempts that failed because the client's own broker link failed.
  int link_failures() const;
  // When the first of those after `since` failed with a message containing
  // `text` (the link's reason); nullopt if none did.
  std::optional<std::chrono::steady_clock::time_point> link_failed(const std::string& text,
                                                                   std::chrono::steady_clock::time_point since) const;
  // A deliberate break, for the suite's --break run: every 5th call's first
  // attempt returns only after the call's deadline + 200 ms.
  void set_late_break(bool on);

 private:
  mutable std::mutex mu_;
  std::set<std::string> maybe_processed_;
  int link_failures_ = 0;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> link_failed_;
  bool late_break_ = false;
  uint64_t first_attempts_ = 0;
};

struct Load {
  std::string service = "test.fault";
  int calls = 0;  // each keyed or not at random
  int concurrency = 1;
  uint32_t sleep_ms = 0;
  size_t pad_bytes = 0;  // each request this much larger
  std::chrono::milliseconds timeout{4000};
  // Runs on a thread of its own once a third of the calls have been sent;
  // the load goes on (past `calls` if need be) until it has returned.
  std::function<void()> fault;
};

struct Calls {
  std::string tag;  // prefix of every key of this load
  std::vector<ledger::Outcome> outcomes;
};

// Runs the load on `client`; returns once every call has ended and the
// fault has returned (calls go on being made until then).
Calls run_load(tern::Client& client, const Attempts& attempts, const Load& load);

// Keys of a load's calls start with tag + one of these.
inline const char* kind_prefix(bool keyed) { return keyed ? "k-" : "u-"; }
