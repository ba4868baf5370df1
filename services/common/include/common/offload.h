// Work that would block a loop thread (a password KDF, a slow syscall) run
// on a small pool of threads of its own: the calling fiber waits for it,
// while the other fibers of its thread keep running. A handler must never
// hold its thread for long (docs/architecture.md).
#pragma once

#include <boost/fiber/future.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <type_traits>

namespace common {

// Runs `job` on one of the pool's threads (started on first use).
void run_on_pool(std::function<void()> job);

// fn() on the pool; its value, or what it threw, in the calling fiber.
template <class F>
auto offload(F fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  auto done = std::make_shared<boost::fibers::promise<R>>();
  boost::fibers::future<R> result = done->get_future();
  run_on_pool([done, fn = std::move(fn)]() mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        done->set_value();
      } else {
        done->set_value(fn());
      }
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  return result.get();
}

}  // namespace common
