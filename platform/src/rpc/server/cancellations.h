// The requests a reactor thread is handling, by request id, so that a
// caller's cancel notice (it gave up) cancels the handler's context, and
// through it the handler's own calls still waiting. Reactor thread only.
#pragma once

#include <string>
#include <unordered_map>

#include "tern/context.h"

namespace tern::detail {

class Cancellations {
 public:
  // While a handler runs; the context must outlive its registration.
  void track(const std::string& request_id, Context* ctx) { running_[request_id] = ctx; }
  void untrack(const std::string& request_id) { running_.erase(request_id); }
  // A cancel notice: cancels the request if it runs here.
  void cancel(const std::string& request_id) {
    auto it = running_.find(request_id);
    if (it != running_.end()) it->second->cancel();
  }

  // Cancels every request running here (a drain that ran out of time).
  void cancel_all() {
    for (auto& [id, ctx] : running_) ctx->cancel();
  }

  // Tracks for the lifetime of a scope.
  class Scope {
   public:
    Scope(Cancellations& c, const std::string& id, Context* ctx) : c_(c), id_(id) { c_.track(id_, ctx); }
    ~Scope() { c_.untrack(id_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Cancellations& c_;
    const std::string& id_;
  };

 private:
  std::unordered_map<std::string, Context*> running_;
};

}  // namespace tern::detail
