// Periodic tasks of a service (Service::every): each runs in a fiber of one
// of the service's threads, every period, from start until stop.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <vector>

#include "service/thread_runtime.h"
#include "tern/context.h"

namespace tern::detail {

struct Periodic {
  std::chrono::milliseconds period;
  std::function<void(Context&)> fn;
};

class PeriodicTasks {
 public:
  // Spreads `tasks` (which must outlive this) over `threads`, round-robin.
  // Each run gets a context of max(period, timeout).
  void start(const std::vector<Periodic>& tasks, const std::vector<ThreadRuntime*>& threads,
             std::chrono::milliseconds timeout);
  // No run starts after this; thread-safe.
  void stop() { stop_.store(true, std::memory_order_release); }
  // Tasks still in a run (an outbox relay mid-publish); thread-safe.
  int running() const { return running_.load(std::memory_order_acquire); }

 private:
  void run(ThreadRuntime& thread, const Periodic& task, std::chrono::milliseconds timeout);

  std::atomic<bool> stop_{false};
  std::atomic<int> running_{0};
};

}  // namespace tern::detail
