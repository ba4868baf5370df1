#include "rpc/server/replay.h"

#include <mutex>

#include "core/wire.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"

namespace tern::detail {

Result<std::string> Replay::run(Context& ctx, const IncomingRequest& req, const ServerNext& next) {
  std::string key;
  key.reserve(req.endpoint.size() + 1 + req.idempotency_key.size());
  key.append(req.endpoint).append(1, '\n').append(req.idempotency_key);
  for (;;) {
    std::unique_lock<boost::fibers::mutex> lock(mu_);
    const uint64_t seen = version_;
    lock.unlock();
    IdempotencyStore::Entry e;
    try {
      e = store_->begin(key);
    } catch (const std::exception& ex) {
      // A custom store that fails must fail the request, not the process.
      log::error("the idempotency store failed: {}", ex.what());
      return Error{Code::kUnavailable, std::string("the idempotency store failed: ") + ex.what()};
    }
    if (e.state == IdempotencyStore::State::kNew) break;
    if (e.state == IdempotencyStore::State::kDone) {
      tern::v1::Response stored;
      stored.ParseFromString(e.reply);
      if (stored.has_error() && stored.error().code() != tern::v1::OK) return from_wire(stored.error());
      return std::move(*stored.mutable_body());
    }
    if (ctx.expired())
      return Error{Code::kDeadlineExceeded,
                   "the deadline passed while the first request with this idempotency key was still running"};
    lock.lock();
    changed_.wait_until(lock, std::min(ctx.deadline(), std::chrono::steady_clock::now() + recheck_),
                        [&] { return version_ != seen; });
  }
  Result<std::string> r = next(ctx, req);
  try {
    if (!r.ok() && r.error().retryable) {
      store_->abandon(key);
    } else {
      tern::v1::Response stored;
      if (r.ok()) stored.set_body(*r);
      else to_wire(r.error(), stored.mutable_error());
      store_->finish(key, stored.SerializeAsString());
    }
  } catch (const std::exception& ex) {
    log::error("the idempotency store failed to keep an answer: {}", ex.what());
  }
  finished();
  return r;
}

void Replay::finished() {
  {
    std::lock_guard<boost::fibers::mutex> lock(mu_);
    ++version_;
  }
  changed_.notify_all();
}

}  // namespace tern::detail
