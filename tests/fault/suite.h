// What the fault suite's scenarios share: the service binary and the
// directory for ledgers and logs (set once by main), instances of the fault
// service, the private broker's shell functions, bounded waits.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "probe.pb.h"
#include "service_process.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::string g_binary;
inline std::string g_dir;

// One instance of the fault service, as a child process, writing `ledger`.
class Instance : public ServiceProcess {
 public:
  Instance(const std::string& name, const std::string& ledger, std::vector<std::string> env = {})
      : ServiceProcess(g_binary, g_dir + "/" + name + ".log", with_defaults(ledger, std::move(env))) {}

 private:
  static std::vector<std::string> with_defaults(const std::string& ledger, std::vector<std::string> env) {
    env.insert(env.begin(), {"FAULT_LEDGER=" + ledger, "TERN_HEARTBEAT_S=2", "TERN_THREADS=1"});
    return env;
  }
};

inline std::string ledger_path(const std::string& scenario) { return g_dir + "/" + scenario + ".ledger"; }

// Runs a shell command; its exit status, and what it printed (stdout and
// stderr) in *out.
inline int sh(const std::string& command, std::string* out = nullptr) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  std::string text;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
  const int rc = pclose(p);
  if (out != nullptr) *out = text;
  return rc;
}

// Runs `source scripts/lib/rabbit.sh && COMMAND` (COMMAND without single
// quotes); its exit status, and what it printed in *out.
inline int rabbit(const std::string& command, std::string* out = nullptr) {
  return sh("bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && " + command + "'", out);
}
inline int rabbit_ctl(const std::string& args) { return rabbit("rabbit_ctl " + args); }

// Bounded wait for `text` in what the instance printed.
inline bool await_output(const ServiceProcess& p, const std::string& text, std::chrono::seconds limit = 20s) {
  for (auto until = Clock::now() + limit; Clock::now() < until; std::this_thread::sleep_for(20ms))
    if (p.output().find(text) != std::string::npos) return true;
  return false;
}

// Waits (bounded) until a call succeeds: the client and the instances have
// (re)connected. Its payload is empty: no ledger line.
inline bool await_service(tern::Client& client, const std::string& service = "test.fault") {
  for (auto until = Clock::now() + 30s; Clock::now() < until; std::this_thread::sleep_for(100ms)) {
    auto ctx = tern::Context::with_timeout(1s);
    if (client.call<probe::ProbeResponse>(ctx, service, "work", probe::ProbeRequest{}).ok()) return true;
  }
  return false;
}
