// One scenario of the fault suite: its lines of figures, the checks it
// failed, and the checks every load must pass against the ledger.
#pragma once

#include <fmt/format.h>
#include <sys/types.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ledger.h"
#include "load.h"

// How many of a load's keys are of keyed calls, and how many of unkeyed ones.
struct Kinds {
  int keyed = 0, unkeyed = 0;
  bool both() const { return keyed > 0 && unkeyed > 0; }
  std::string to_string() const { return fmt::format("{} keyed, {} unkeyed", keyed, unkeyed); }
};
inline Kinds kinds(const std::set<std::string>& keys) {
  Kinds k;
  for (const auto& key : keys) {
    const size_t dash = key.find('-');  // TAG-k-... or TAG-u-...
    if (key.compare(dash + 1, 2, kind_prefix(true)) == 0) ++k.keyed;
    if (key.compare(dash + 1, 2, kind_prefix(false)) == 0) ++k.unkeyed;
  }
  return k;
}

// One scenario's lines and the checks it failed.
class Scenario {
 public:
  explicit Scenario(std::string name) : name_(std::move(name)) {}
  void expect(bool ok, const std::string& what) {
    if (!ok) failed_.push_back(what);
  }
  void line(std::string text) { lines_.push_back(std::move(text)); }
  bool ok() const { return failed_.empty(); }
  std::string text() const {
    std::string failed;
    for (const auto& f : failed_) failed += (failed.empty() ? "" : ", ") + f;
    std::string out = fmt::format("{} {}{}\n", ok() ? "ok:" : "FAILED:", name_,
                                  ok() ? "" : " (failed: " + failed + ")");
    for (const auto& l : lines_) out += "    " + l + "\n";
    return out;
  }

  struct Expect {
    bool all_ok = false;  // every call must have succeeded
    std::string label;    // before "keyed"/"unkeyed" in the lines
    // Keys a keyed call may have applied on two instances, each once: the
    // known gap of a per-process idempotency store, in the scenario's words.
    std::set<std::string> gap_keys;
    std::string gap;
  };
  // The ledger's figures for both kinds of call of one load, and the checks
  // every load must pass: nothing lost, no effect of a refused call, none
  // late, no torn ledger line, no instance but `pids` writing; with keys,
  // no duplicate but the known gap's; without, duplicates are reported.
  std::pair<ledger::Verdict, ledger::Verdict> check(const Calls& calls, const ledger::Ledger& l,
                                                    const std::set<pid_t>& pids, const Expect& e) {
    const ledger::Ledger mine = l.only(calls.tag);
    std::pair<ledger::Verdict, ledger::Verdict> both;
    for (bool keyed : {true, false}) {
      ledger::Verdict v = ledger::check(calls.outcomes, mine, keyed, calls.tag + kind_prefix(keyed));
      const std::string kind = e.label + (keyed ? "keyed" : "unkeyed");
      line(fmt::format("{}:{} {}", kind, keyed ? "  " : "", v.to_string()));
      expect(v.sent > 0, kind + " sent>0");
      expect(v.lost == 0, kind + " lost=0");
      expect(v.unexpected == 0, kind + " unexpected=0");
      expect(v.late == 0, kind + " late=0");
      if (keyed) {
        int gap = 0;
        for (const auto& k : v.duplicated_keys) gap += static_cast<int>(e.gap_keys.count(k));
        expect(v.duplicated_same_instance == 0 && gap == static_cast<int>(v.duplicated_keys.size()),
               kind + " duplicated=0");
        if (gap > 0)
          line(fmt::format("known gap: the {} keyed duplicates were {}; the idempotency store is per process", gap,
                           e.gap));
      }
      if (e.all_ok) expect(v.ok == v.sent, kind + " ok=sent");
      (keyed ? both.first : both.second) = v;
    }
    expect(l.malformed == 0, "no torn ledger line");
    for (pid_t p : mine.pids()) expect(pids.count(p) > 0, fmt::format("pid {} is one of this scenario's", p));
    return both;
  }

 private:
  std::string name_;
  std::vector<std::string> lines_;
  std::vector<std::string> failed_;
};
