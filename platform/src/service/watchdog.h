// Notices a loop thread that has stopped switching fibers: a handler that
// blocks its thread (a blocking syscall, a std::mutex, a long loop) holds
// up every other fiber on it. One thread per service samples each reactor
// every threshold/4; one that is not asleep and has not switched for the
// threshold is logged (what held it: endpoint, event or HTTP request, and
// its trace) and counted in tern_loop_stalls_total, and logged again when
// it lets go.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/reactor.h"

namespace tern::detail {

class Watchdog {
 public:
  Watchdog(std::string service, std::vector<const Reactor*> reactors, std::chrono::milliseconds threshold);
  ~Watchdog();   // stops and joins its thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run();

  const std::string service_;
  const std::vector<const Reactor*> reactors_;
  const std::chrono::milliseconds threshold_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tern::detail
