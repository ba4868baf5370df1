// What a reactor wake costs with many idle connections: N fibers wait on
// N idle pipes while one fiber answers a ping-pong with another thread
// through two more pipes. With a ppoll over every waited fd each wake is
// O(N); with epoll it stays flat.
//   reactor_wake [ROUND_TRIPS]      prints round trips/s for each N
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "runtime/reactor.h"

using tern::detail::Clock;
using tern::detail::Reactor;

namespace {

double round_trips_per_second(int idle, int trips) {
  std::vector<std::array<int, 2>> pipes(idle);
  for (auto& p : pipes)
    if (pipe2(p.data(), O_NONBLOCK | O_CLOEXEC) != 0) std::abort();
  int ping[2], pong[2];
  if (pipe2(ping, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(pong, O_CLOEXEC) != 0) std::abort();
  Reactor reactor(16 * 1024);
  double rate = 0;
  std::thread loop([&] {
    reactor.attach();
    for (auto& p : pipes)
      reactor.spawn([&, fd = p[0]] {
        reactor.wait_fd(fd, POLLIN, Clock::now() + std::chrono::hours(1));
      });
    boost::this_fiber::yield();   // each idle fiber parks in its wait
    std::thread peer([&] {
      char c = 'x';
      const auto start = Clock::now();
      for (int i = 0; i < trips; ++i) {
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) std::abort();
      }
      rate = trips / std::chrono::duration<double>(Clock::now() - start).count();
    });
    char c;
    for (int i = 0; i < trips; ++i) {
      while (read(ping[0], &c, 1) != 1) reactor.wait_fd(ping[0], POLLIN, Clock::now() + std::chrono::seconds(10));
      if (write(pong[1], &c, 1) != 1) std::abort();
    }
    peer.join();
    for (auto& p : pipes) reactor.cancel_waits(p[0]);
    reactor.detach();
  });
  loop.join();
  for (auto& p : pipes) close(p[0]), close(p[1]);
  for (int fd : {ping[0], ping[1], pong[0], pong[1]}) close(fd);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  const int trips = argc > 1 ? std::atoi(argv[1]) : 20000;
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);   // as the services do; past the hard limit the table stops early
  std::printf("%-28s %s\n", "idle fds waited on", "round trips/s");
  for (int idle : {0, 100, 1000, 3000, 9000}) {
    if (2 * idle + 16 > static_cast<int>(files.rlim_cur)) break;
    std::printf("%-28d %.0f\n", idle, round_trips_per_second(idle, trips));
  }
}
