#include "ledger.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

namespace ledger {

Ledger read(const std::string& path) {
  Ledger l;
  std::ifstream in(path);
  for (std::string text; std::getline(in, text);) {
    std::istringstream fields(text);
    std::string phase, rest;
    Line line;
    if (!(fields >> phase >> line.key >> line.pid >> line.attempt) || (fields >> rest) ||
        (phase != "begin" && phase != "effect")) {
      ++l.malformed;
      continue;
    }
    line.effect = phase == "effect";
    l.lines.push_back(std::move(line));
  }
  return l;
}

Ledger Ledger::only(const std::string& prefix) const {
  Ledger l;
  l.malformed = malformed;
  for (const Line& line : lines)
    if (line.key.starts_with(prefix)) l.lines.push_back(line);
  return l;
}

std::set<pid_t> Ledger::pids() const {
  std::set<pid_t> all;
  for (const Line& line : lines) all.insert(line.pid);
  return all;
}

std::set<std::string> Ledger::held_by(pid_t pid) const {
  std::set<std::string> began, finished;
  for (const Line& line : lines)
    if (line.pid == pid) (line.effect ? finished : began).insert(line.key);
  std::set<std::string> held;
  for (const std::string& k : began)
    if (!finished.count(k)) held.insert(k);
  return held;
}

std::set<std::string> Ledger::redelivered_from(pid_t pid) const {
  const std::set<std::string> held = held_by(pid);
  std::map<std::string, uint32_t> attempt;  // of pid's delivery of each held key
  for (const Line& line : lines)
    if (!line.effect && line.pid == pid && held.count(line.key)) attempt[line.key] = line.attempt;
  std::set<std::string> again;
  for (const Line& line : lines)
    if (!line.effect && line.pid != pid && attempt.count(line.key) && attempt[line.key] == line.attempt)
      again.insert(line.key);
  return again;
}

std::set<std::string> Ledger::redelivered_after_effect(pid_t pid) const {
  std::map<std::string, uint32_t> applied;  // key -> attempt of pid's effect
  for (const Line& line : lines)
    if (line.effect && line.pid == pid) applied[line.key] = line.attempt;
  std::set<std::string> again;
  for (const Line& line : lines)
    if (!line.effect && line.pid != pid && applied.count(line.key) && applied[line.key] == line.attempt)
      again.insert(line.key);
  return again;
}

int Ledger::retried() const {
  int n = 0;
  for (const Line& line : lines) n += !line.effect && line.attempt > 1;
  return n;
}

Ledger settle(const std::string& path, const std::set<pid_t>& live, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    Ledger l = read(path);
    std::map<std::tuple<std::string, pid_t, uint32_t>, int> open;  // begun minus finished
    for (const Line& line : l.lines)
      if (live.count(line.pid)) open[{line.key, line.pid, line.attempt}] += line.effect ? -1 : 1;
    bool complete = true;
    for (const auto& [k, n] : open) complete = complete && n <= 0;
    if (complete || std::chrono::steady_clock::now() >= until) return l;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Verdict::to_string() const {
  std::string e;
  for (const auto& [code, n] : errors) e += fmt::format("{}{}={}", e.empty() ? "" : " ", code, n);
  return fmt::format(
      "sent={} ok={} refused={} indeterminate={} ({}) lost={} duplicated={}{} unexpected={} late={}", sent,
      ok, refused, indeterminate, e.empty() ? "no errors" : e, lost, duplicated,
      duplicated_same_instance > 0 ? fmt::format(" ({} by the same instance)", duplicated_same_instance) : "",
      unexpected, late);
}

Verdict check(const std::vector<Outcome>& outcomes, const Ledger& ledger, bool keyed,
              const std::string& prefix) {
  std::map<std::string, std::vector<pid_t>> effects;  // by key: who applied it
  for (const Line& line : ledger.only(prefix).lines)
    if (line.effect) effects[line.key].push_back(line.pid);
  Verdict v;
  std::set<std::string> sent;
  for (const Outcome& o : outcomes) {
    if (o.keyed != keyed || !o.key.starts_with(prefix)) continue;
    sent.insert(o.key);
    ++v.sent;
    v.late += o.late;
    const size_t applied = effects.count(o.key) ? effects[o.key].size() : 0;
    if (o.kind == Outcome::kOk) {
      ++v.ok;
      v.lost += applied == 0;
      continue;
    }
    ++v.errors[o.code];
    if (o.kind == Outcome::kRefused) {
      ++v.refused;
      v.unexpected += applied > 0;
    } else {
      ++v.indeterminate;
    }
  }
  for (const auto& [key, pids] : effects) {
    if (!sent.count(key)) {
      ++v.unexpected;  // a call the client never made
      continue;
    }
    v.duplicated += static_cast<int>(pids.size()) - 1;
    if (pids.size() > 1) v.duplicated_keys.insert(key);
    std::set<pid_t> distinct(pids.begin(), pids.end());
    v.duplicated_same_instance += static_cast<int>(pids.size() - distinct.size());
  }
  return v;
}

}  // namespace ledger
