#include "service/periodic.h"

#include <boost/fiber/operations.hpp>

#include "tern/log.h"

namespace tern::detail {

void PeriodicTasks::start(const std::vector<Periodic>& tasks, const std::vector<ThreadRuntime*>& threads,
                          std::chrono::milliseconds timeout) {
  stop_.store(false);
  for (size_t i = 0; i < tasks.size(); ++i) {
    ThreadRuntime& thread = *threads[i % threads.size()];
    running_.fetch_add(1);
    thread.post([this, &thread, &task = tasks[i], timeout] {
      run(thread, task, timeout);
      running_.fetch_sub(1);
    });
  }
}

void PeriodicTasks::run(ThreadRuntime& thread, const Periodic& task, std::chrono::milliseconds timeout) {
  auto next = Context::Clock::now() + task.period;
  auto stopping = [&] { return stop_.load(std::memory_order_acquire) || thread.stopping(); };
  for (;;) {
    // Short naps, so that stop() never waits a whole period.
    while (Context::Clock::now() < next) {
      if (stopping()) return;
      boost::this_fiber::sleep_for(
          std::min<Context::Clock::duration>(next - Context::Clock::now(), std::chrono::milliseconds(50)));
    }
    if (stopping()) return;
    try {
      Context ctx = Context::with_timeout(std::max(task.period, timeout));
      ctx.set_transport(&thread);
      task.fn(ctx);
    } catch (const std::exception& e) {
      log::error("a periodic task threw: {}", e.what());
    }
    next = std::max(next + task.period, Context::Clock::now());
  }
}

}  // namespace tern::detail
