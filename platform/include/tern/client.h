// A tern runtime for code that is not a service: tools, tests, plain main().
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "tern/call.h"
#include "tern/filter.h"
#include "tern/options.h"

namespace tern {

namespace detail {
class ThreadRuntime;
}

// Owns one broker connection and a thread running fibers. Thread-safe.
class Client {
 public:
  // Connects at once; throws std::runtime_error if the broker is unreachable.
  // name is sent as the caller ("from") of every request.
  explicit Client(const Options& options = Options::from_env(), std::string name = "tern.client");
  // With client filters around every attempt of every call it makes (see
  // tern/filter.h), after the platform's own.
  Client(const Options& options, std::string name, std::vector<ClientFilter> filters);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs fn in a fiber on the client's thread and blocks the calling thread
  // until it returns (rethrowing what it throws). Inside fn, and in fibers
  // it starts, tern::call suspends just the calling fiber, so thousands of
  // calls can be in flight at once. Must not be called from the client's
  // own fibers.
  template <class F>
  auto run(F&& fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      run_fiber([&] { fn(); });
    } else {
      std::optional<R> out;
      run_fiber([&] { out.emplace(fn()); });
      return std::move(*out);
    }
  }

  // A single call from a thread that is not one of the client's fibers.
  template <class Resp, class Req>
  Result<Resp> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                    const Req& req, const CallOptions& opts = {}) {
    return run([&] { return tern::call<Resp>(ctx, service, endpoint, req, opts); });
  }

  // Replies that arrived after their caller's deadline and were dropped.
  uint64_t late_replies() const;

 private:
  void run_fiber(std::function<void()> fn);
  std::vector<ClientFilter> filters_;   // outlives the runtime, which calls them
  std::unique_ptr<detail::ThreadRuntime> runtime_;
};

}  // namespace tern
