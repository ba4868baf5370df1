// The process metrics a service's /metrics shows, against what the kernel
// says about the same process (/proc/self, getrusage) at the same moment.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "broker.h"
#include "tern/metrics.h"
#include "tern/service.h"

namespace {

// name{labels} -> value, from Prometheus' text format.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

double status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1));
  return -1;
}

int fds_now() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A port nothing listens on now (the kernel's pick for a socket bound to 0).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

TEST_CASE("a service's metrics show its build and the process's CPU, memory, fds and threads as the kernel counts them") {
  const std::string name = unique_service("procmetrics");
  tern::Service svc(name);
  tern::Options o = broker_options();
  o.metrics_port = free_port();   // the process metrics come with the metrics port
  svc.start(o);
  auto m = samples(tern::metrics::registry().render());
  CHECK(m["tern_build_info{version=\"0.1.0\",service=\"" + name + "\"}"] == 1);
  CHECK(m["process_threads"] == status_kib("Threads"));
  CHECK(std::abs(m["process_open_fds"] - fds_now()) <= 1);
  const double rss = status_kib("VmRSS") * 1024;
  CHECK(std::abs(m["process_resident_memory_bytes"] - rss) <= rss * 0.2);
  CHECK(m["process_max_fds"] > 0);
  const double now = static_cast<double>(std::time(nullptr));
  CHECK(m["process_start_time_seconds"] <= now + 1);
  CHECK(m["process_start_time_seconds"] > now - 3600);

  // Burn 300 ms of CPU: the counter moves as getrusage does.
  const double cpu0 = cpu_seconds(), metric0 = m["process_cpu_seconds_total"];
  volatile uint64_t x = 0;
  while (cpu_seconds() - cpu0 < 0.3) x = x + 1;
  const double cpu1 = cpu_seconds();
  const double metric1 = samples(tern::metrics::registry().render())["process_cpu_seconds_total"];
  CHECK(metric1 - metric0 >= 0.25);
  CHECK(std::abs((metric1 - metric0) - (cpu1 - cpu0)) < 0.1);
  svc.stop();
}
