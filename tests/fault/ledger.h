// The fault suite's evidence: the ledger the fault service's handlers write
// (tests/fault/fault_service.cc), what the client was told about each call,
// and the checker that compares the two.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace ledger {

// One line of the ledger: "begin|effect KEY PID ATTEMPT".
struct Line {
  bool effect = false;  // false: begin
  std::string key;
  pid_t pid = 0;
  uint32_t attempt = 0;
};

struct Ledger {
  std::vector<Line> lines;
  int malformed = 0;  // lines that are not of that form (a torn write)

  // Keys that start with `prefix` only: one load's calls.
  Ledger only(const std::string& prefix) const;
  std::set<pid_t> pids() const;
  // Keys `pid` began but did not finish (no effect line of its own).
  std::set<std::string> held_by(pid_t pid) const;
  // Of held_by(pid): those begun again by another instance with the same
  // attempt number, i.e. the broker redelivered that very delivery (a
  // client's retry carries the next attempt number).
  std::set<std::string> redelivered_from(pid_t pid) const;
  // Keys `pid` applied (wrote their effect) that another instance then
  // began again with the same attempt number: the broker redelivered a
  // delivery `pid` had finished but not acked.
  std::set<std::string> redelivered_after_effect(pid_t pid) const;
  // Begin lines with attempt > 1: calls the client had to retry.
  int retried() const;
};

Ledger read(const std::string& path);

// Waits (bounded) until every request the live instances began has its
// effect: the ledger is complete before it is checked.
Ledger settle(const std::string& path, const std::set<pid_t>& live,
              std::chrono::milliseconds limit = std::chrono::seconds(10));

// What the client was told about one call.
struct Outcome {
  enum Kind { kOk, kRefused, kIndeterminate };
  std::string key;
  bool keyed = false;  // sent with an idempotency key
  Kind kind = kIndeterminate;
  std::string code;    // "OK" or the error's code name
  std::string message; // the error's
  bool late = false;   // ended after its deadline + 100 ms
  std::chrono::milliseconds took{0};
};

// The checker's figures for one kind of call (keyed or not) of one load.
struct Verdict {
  int sent = 0, ok = 0, refused = 0, indeterminate = 0;
  std::map<std::string, int> errors;  // by code
  // ok, but no effect in the ledger.
  int lost = 0;
  // Effects beyond the first, summed over keys; of those, the ones applied
  // again by an instance that had already applied that key.
  int duplicated = 0, duplicated_same_instance = 0;
  std::set<std::string> duplicated_keys;
  // Effects of calls the client was told were refused (not processed), or
  // of keys the client never sent.
  int unexpected = 0;
  int late = 0;
  std::string to_string() const;
};

// Checks the calls of one kind (keyed or not) against the ledger lines of
// their load (keys starting with `prefix`).
Verdict check(const std::vector<Outcome>& outcomes, const Ledger& ledger, bool keyed,
              const std::string& prefix);

}  // namespace ledger
