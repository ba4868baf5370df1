#include "service/watchdog.h"

#include <algorithm>

#include "tern/log.h"
#include "tern/metrics.h"

namespace tern::detail {

Watchdog::Watchdog(std::string service, std::vector<const Reactor*> reactors, std::chrono::milliseconds threshold)
    : service_(std::move(service)), reactors_(std::move(reactors)), threshold_(threshold) {
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

void Watchdog::run() {
  metrics::Counter& stalls = metrics::registry().counter(
      "tern_loop_stalls_total", "Times a loop thread went threshold without switching fibers (a handler blocked it)",
      {{"service", service_}});
  struct Seen {
    uint64_t turns = 0;
    Clock::time_point since;   // when it last switched or slept
    bool stalled = false;
  };
  std::vector<Seen> seen(reactors_.size(), Seen{0, Clock::now(), false});
  const auto period = std::max(threshold_ / 4, std::chrono::milliseconds(1));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, period, [this] { return stop_; })) {
    const auto now = Clock::now();
    for (size_t i = 0; i < reactors_.size(); ++i) {
      const Reactor& r = *reactors_[i];
      Seen& s = seen[i];
      const uint64_t turns = r.turns();
      if (turns != s.turns || r.idle()) {
        if (s.stalled)
          log::warn("{}: loop thread {} runs again after {} ms without a fiber switch", service_, i,
                    std::chrono::duration_cast<std::chrono::milliseconds>(now - s.since).count());
        s = Seen{turns, now, false};
        continue;
      }
      if (s.stalled || now - s.since < threshold_) continue;
      s.stalled = true;
      stalls.inc();
      const auto [what, trace_id] = r.holding_now();
      log::warn("{}: loop thread {} has not switched fibers for {} ms: {} blocks it{}{} (block the fiber, not the "
                "thread: tern::call, boost::this_fiber::sleep_for, fiber mutexes)",
                service_, i, std::chrono::duration_cast<std::chrono::milliseconds>(now - s.since).count(),
                what.empty() ? "a fiber" : what, trace_id.empty() ? "" : ", trace ", trace_id);
    }
  }
}

}  // namespace tern::detail
