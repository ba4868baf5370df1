// Idempotent replay: the handler runs at most once per (endpoint,
// idempotency key) within the store's window; repeats get the stored
// answer. A repeat that arrives while the first is still running waits for
// it (or for its own deadline): woken when a thread of this process
// finishes the key, re-checking every kRecheck for keys in progress in
// another process sharing the store. Shared by the service's threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/mutex.hpp>

#include "tern/filter.h"
#include "tern/idempotency.h"

namespace tern::detail {

class Replay {
 public:
  static constexpr std::chrono::milliseconds kRecheck{250};

  explicit Replay(std::shared_ptr<IdempotencyStore> store, std::chrono::milliseconds recheck = kRecheck)
      : store_(std::move(store)), recheck_(recheck) {}

  // The server filter's body; `req.idempotency_key` is not empty.
  Result<std::string> run(Context& ctx, const IncomingRequest& req, const ServerNext& next);

 private:
  void finished();

  const std::shared_ptr<IdempotencyStore> store_;
  const std::chrono::milliseconds recheck_;
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable changed_;
  uint64_t version_ = 0;   // bumped whenever a key of this process finishes
};

}  // namespace tern::detail
