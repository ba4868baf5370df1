// The leak soak: thousands of short-lived clients, and callers and service
// instances killed -9 mid-call, against one real service instance; then the
// broker's queues and connections, and the instance's fds, threads and
// memory, must be back where they were, and so must this process's own.
//
//   soak SERVICE_BINARY [REPORT_FILE]
//
// SERVICE_BINARY is tests/fault's fault_service. With SOAK_CALLER=1 this
// binary is instead one killable caller: clients made and dropped in a loop,
// each with a call in flight most of the time, until it is killed.
//
// Needs TERN_AMQP_URL, TERN_RABBIT_NODE and TERN_RABBIT_DIR (scripts/test
// sets them). SOAK_CLIENTS (default 10000) sets how many clients this
// process makes and drops.
#include <dirent.h>
#include <fmt/format.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../fault/suite.h"
#include "probe.pb.h"
#include "tern/tern.h"

namespace {

const char* kService = "test.soak";

// One call through `client`: the handler sleeps `sleep_ms`.
bool call(tern::Client& client, uint32_t sleep_ms) {
  probe::ProbeRequest req;
  req.set_sleep_ms(sleep_ms);
  auto ctx = tern::Context::with_timeout(5s);
  return client.call<probe::ProbeResponse>(ctx, kService, "work", req).ok();
}

// SOAK_CALLER=1: a client per call, forever; its line before each call
// tells the parent whether it was killed with a call in flight.
int caller_main() {
  std::printf(" serving: soak caller\n");
  std::fflush(stdout);
  for (uint64_t n = 0;; ++n) {
    tern::Client client(tern::Options::from_env(), "soak.caller");
    std::printf("begin %llu\n", static_cast<unsigned long long>(n));
    std::fflush(stdout);
    const bool ok = call(client, 30);
    std::printf("end %llu %s\n", static_cast<unsigned long long>(n), ok ? "ok" : "error");
    std::fflush(stdout);
  }
}

int count_dir(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

long rss_kib(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);)
    if (line.starts_with("VmRSS:")) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// What a process holds: open fds, threads, resident memory.
struct Held {
  int fds = -1, threads = -1;
  long rss = -1;
  static Held of(pid_t pid) {
    // Our own heap: what the allocator keeps free (and the next client
    // would reuse) is handed back first, so the RSS left is what is held;
    // a leak survives this, allocator noise (seen: +-3 MiB between halves)
    // does not.
    if (pid == getpid()) malloc_trim(0);
    return {count_dir(fmt::format("/proc/{}/fd", pid)), count_dir(fmt::format("/proc/{}/task", pid)), rss_kib(pid)};
  }
  std::string to_string() const { return fmt::format("fds={} threads={} rss={} KiB", fds, threads, rss); }
};

// Lines rabbitmqctl prints for `args` (with -q: one per item), or -1.
int rabbit_count(const std::string& args) {
  std::string out;
  if (rabbit("rabbit_ctl -q " + args + " 2>/dev/null", &out) != 0) return -1;
  return static_cast<int>(std::count(out.begin(), out.end(), '\n'));
}

struct Broker {
  int queues = -1, connections = -1;
  static Broker now() { return {rabbit_count("list_queues name"), rabbit_count("list_connections name")}; }
  bool operator==(const Broker&) const = default;
  std::string to_string() const { return fmt::format("queues={} connections={}", queues, connections); }
};

// Polls `done` until it holds or `limit` passes.
template <class F>
bool await(F done, std::chrono::seconds limit) {
  for (auto until = Clock::now() + limit; Clock::now() < until; std::this_thread::sleep_for(200ms))
    if (done()) return true;
  return done();
}

// `clients` clients made and dropped over `threads` threads, each making
// one call; returns how many calls succeeded.
int churn(int clients, int threads) {
  std::atomic<int> next{0}, ok{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      while (next.fetch_add(1) < clients) {
        tern::Client client(tern::Options::from_env(), "soak.client");
        if (call(client, 0)) ok.fetch_add(1);
      }
    });
  for (auto& w : workers) w.join();
  return ok.load();
}

struct Kills {
  int callers = 0, callers_mid_call = 0, instances = 0, instances_holding = 0, not_by_sigkill = 0;
};

// For `run_for`, keeps `n` caller processes and one extra instance of the
// service running, killing one of them (-9) at random every ~150 ms and
// starting a replacement.
Kills kill_loop(const std::string& self, const std::string& service, const std::string& dir,
                std::chrono::seconds run_for) {
  Kills k;
  std::mt19937 rng(std::random_device{}());
  int started = 0;
  auto caller = [&] {
    return std::make_unique<ServiceProcess>(self, fmt::format("{}/caller-{}.log", dir, started++),
                                            std::vector<std::string>{"SOAK_CALLER=1"});
  };
  auto instance = [&] {
    return std::make_unique<ServiceProcess>(
        service, fmt::format("{}/instance-{}.log", dir, started++),
        std::vector<std::string>{std::string("FAULT_SERVICE=") + kService, "TERN_THREADS=1"});
  };
  std::vector<std::unique_ptr<ServiceProcess>> callers;
  for (int i = 0; i < 4; ++i) callers.push_back(caller());
  std::unique_ptr<ServiceProcess> extra = instance();
  for (auto until = Clock::now() + run_for; Clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 100));
    const bool kill_instance = rng() % 5 == 0;
    ServiceProcess& victim = kill_instance ? *extra : *callers[rng() % callers.size()];
    victim.signal(SIGKILL);
    victim.wait();
    if (victim.killed_by() != SIGKILL) ++k.not_by_sigkill;
    const std::string out = victim.output();
    const size_t last = out.rfind('\n', out.size() >= 2 ? out.size() - 2 : 0);
    const std::string last_line = out.substr(last == std::string::npos ? 0 : last + 1);
    if (kill_instance) {
      ++k.instances;
      extra = instance();
    } else {
      ++k.callers;
      if (last_line.starts_with("begin ")) ++k.callers_mid_call;
      for (auto& c : callers)
        if (c.get() == &victim) c = caller();
    }
  }
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* c = std::getenv("SOAK_CALLER"); c != nullptr && std::string(c) == "1") return caller_main();
  if (argc < 2) {
    std::fprintf(stderr, "usage: soak SERVICE_BINARY [REPORT_FILE]\n");
    return 2;
  }
  const std::string service = argv[1];
  const std::string self = argv[0];
  const int clients = std::getenv("SOAK_CLIENTS") ? std::atoi(std::getenv("SOAK_CLIENTS")) : 10000;
  char dir_template[] = "/tmp/tern-soak.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  std::vector<std::string> lines, failed;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) failed.push_back(what);
  };
  const auto started = Clock::now();
  {
    ServiceProcess server(service, dir + "/server.log",
                          {std::string("FAULT_SERVICE=") + kService, "TERN_THREADS=1"});
    // The broker's baseline: the server alone. The processes' baselines
    // once both sides are warm (allocators, metric series, caches).
    const Broker broker0 = Broker::now();
    const int warm = churn(200, 2);
    expect(warm == 200, "the warm-up calls succeeded");
    const Held server0 = Held::of(server.pid()), self0 = Held::of(getpid());
    lines.push_back(fmt::format("baseline: broker {}; server {}; soak process {}", broker0.to_string(),
                                server0.to_string(), self0.to_string()));
    expect(broker0.queues > 0 && broker0.connections > 0, "the broker counts are readable");

    const int half = churn(clients / 2, 4);
    const Held server_half = Held::of(server.pid()), self_half = Held::of(getpid());
    const Kills kills = kill_loop(self, service, dir, 20s);
    // The kill loop's own allocations (child processes, their output) are
    // the soak process's, not its clients': its client-side baseline for
    // the second half is taken after the loop.
    const Held self_killed = Held::of(getpid());
    const int rest = churn(clients - clients / 2, 4);
    lines.push_back(fmt::format("{} short-lived clients, {} calls ok; after the first {}: server rss={} KiB, "
                                "soak process rss={} KiB ({} KiB after the kill loop)",
                                clients, half + rest, clients / 2, server_half.rss, self_half.rss, self_killed.rss));
    lines.push_back(fmt::format("kill -9: {} callers ({} with a call in flight), {} instances; {} ended by "
                                "another signal",
                                kills.callers, kills.callers_mid_call, kills.instances, kills.not_by_sigkill));
    expect(half + rest == clients, "every short-lived client's call succeeded");
    expect(kills.callers >= 20 && kills.callers_mid_call * 2 >= kills.callers, "callers were killed mid-call");
    expect(kills.instances >= 5 && kills.not_by_sigkill == 0, "instances were killed by SIGKILL");

    // Everything the dead and dropped left must go: bounded waits.
    Broker broker1;
    const bool broker_back = await([&] { return (broker1 = Broker::now()) == broker0; }, 30s);
    Held server1, self1;
    const bool fds_back = await([&] {
      server1 = Held::of(server.pid());
      self1 = Held::of(getpid());
      return server1.fds == server0.fds && server1.threads == server0.threads && self1.fds == self0.fds &&
             self1.threads == self0.threads;
    }, 10s);
    lines.push_back(fmt::format("afterwards: broker {}; server {}; soak process {}", broker1.to_string(),
                                server1.to_string(), self1.to_string()));
    expect(broker_back, "the broker's queues and connections are back at their baseline");
    expect(fds_back, "fds and threads are back at their baseline");
    // Memory: a leak grows with the clients served, so the second half must
    // not have added more than allocator noise, and the total stays near
    // the baseline.
    expect(server1.rss - server_half.rss <= 4 * 1024 && server1.rss <= server0.rss + 16 * 1024,
           "the server's memory did not grow with the clients");
    expect(self1.rss - self_killed.rss <= 4 * 1024 && self1.rss <= self0.rss + 32 * 1024,
           "the soak process's memory did not grow with its clients");
    expect(server.pid() > 0 && server.state() != 0, "the server survived");
  }
  const auto took = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
  std::string report = fmt::format("{} leak soak ({} s)\n", failed.empty() ? "ok:" : "FAILED:", took);
  for (const auto& l : lines) report += "    " + l + "\n";
  for (const auto& f : failed) report += "    failed: " + f + "\n";
  std::fputs(report.c_str(), stdout);
  if (argc > 2) std::ofstream(argv[2]) << report;
  if (failed.empty()) std::system(("rm -rf " + dir).c_str());
  else std::printf("logs kept in %s\n", dir.c_str());
  return failed.empty() ? 0 : 1;
}
