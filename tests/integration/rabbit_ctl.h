// rabbitmqctl against the private node scripts/test started, for tests that
// break the broker's side on purpose and check what it says.
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace rabbit {

inline std::string command(const std::string& args) {
  if (std::getenv("TERN_RABBIT_NODE") == nullptr || std::getenv("TERN_RABBIT_DIR") == nullptr)
    FAIL("TERN_RABBIT_NODE/TERN_RABBIT_DIR are not set: run through scripts/test");
  return "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl " + args + "'";
}

// rabbitmqctl ARGS: its exit status.
inline int ctl(const std::string& args) { return std::system((command(args) + " >/dev/null 2>&1").c_str()); }

// rabbitmqctl -q ARGS: what it printed.
inline std::string output(const std::string& args) {
  std::string out;
  FILE* p = popen((command("-q " + args) + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// The field after "NAME\t" on the line list_queues prints for `queue`
// (list_queues name FIELD), or empty.
inline std::string queue_field(const std::string& queue, const std::string& field) {
  const std::string all = output("list_queues name " + field);
  const std::string key = "\n" + queue + "\t";
  size_t at = ("\n" + all).find(key);
  if (at == std::string::npos) return {};
  at += key.size() - 1;
  return all.substr(at, all.find('\n', at) - at);
}

// The broker's own log: what it says about channel errors.
inline std::string broker_log() {
  const std::string cmd = std::string("cat ") + std::getenv("TERN_RABBIT_DIR") + "/log/" +
                          std::getenv("TERN_RABBIT_NODE") + ".log 2>/dev/null";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// The lines `command` (bash, with scripts/lib/rabbit.sh sourced) printed,
// and whether it succeeded.
inline std::vector<std::string> shell(const std::string& command, bool* ok = nullptr) {
  const std::string cmd = "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && " + command + "'";
  std::vector<std::string> lines;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return lines;
  char buf[4096];
  while (fgets(buf, sizeof buf, p) != nullptr) {
    std::string line(buf);
    if (!line.empty() && line.back() == '\n') line.pop_back();
    lines.push_back(line);
  }
  const int status = pclose(p);
  if (ok != nullptr) *ok = status == 0;
  return lines;
}

// Broker users made by rabbit_add_users ROLE:NAME... (scripts/lib/rabbit.sh:
// the function scripts/up, scripts/cluster and docker compose's first-run
// step make theirs with), on the node scripts/test started: their password
// files, in order.
inline std::vector<std::string> add_users(const std::vector<std::string>& specs) {
  std::string args;
  for (const std::string& s : specs) args += " " + s;
  bool ok = false;
  std::vector<std::string> files = shell("rabbit_add_users" + args, &ok);
  REQUIRE(ok);
  REQUIRE(files.size() == specs.size());
  return files;
}

// The password in a password file (its first line).
inline std::string password(const std::string& file) {
  std::string line;
  FILE* f = std::fopen(file.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[256];
  if (std::fgets(buf, sizeof buf, f) != nullptr) line = buf;
  std::fclose(f);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace rabbit
