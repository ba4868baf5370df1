// rabbitmqctl against the private node scripts/test started, for tests that
// break the broker's side on purpose and check what it says.
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

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

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace rabbit
