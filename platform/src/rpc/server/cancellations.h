// The requests a reactor thread is handling, so that a caller's cancel
// notice (it gave up) cancels the handler's context, and through it the
// handler's own calls still waiting. Reactor thread only.
//
// Each request's entry is its Scope, on the handler fiber's stack, linked
// into a list: tracking costs no allocation, and the rare notice walks the
// requests running here (the prefetch bounds them).
#pragma once

#include <string>
#include <string_view>

#include "tern/context.h"

namespace tern::detail {

class Cancellations {
 public:
  // Tracks a request for the lifetime of a scope; `id` and `ctx` must
  // outlive it.
  class Scope {
   public:
    Scope(Cancellations& c, std::string_view id, Context* ctx) : c_(c), id_(id), ctx_(ctx), next_(c.head_) {
      if (next_ != nullptr) next_->prev_ = this;
      c_.head_ = this;
    }
    ~Scope() {
      if (prev_ != nullptr) prev_->next_ = next_;
      else c_.head_ = next_;
      if (next_ != nullptr) next_->prev_ = prev_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    friend class Cancellations;
    Cancellations& c_;
    const std::string_view id_;
    Context* const ctx_;
    Scope* prev_ = nullptr;
    Scope* next_;
  };

  // A cancel notice: cancels the request if it runs here. Ids are one per
  // attempt; a context's cancel hooks may end the request, so the walk
  // stops at the first.
  void cancel(std::string_view request_id) {
    for (Scope* s = head_; s != nullptr; s = s->next_) {
      if (s->id_ != request_id) continue;
      s->ctx_->cancel();
      return;
    }
  }

  // Cancels every request running here (a drain that ran out of time).
  void cancel_all() {
    for (Scope* s = head_; s != nullptr;) {
      Scope* next = s->next_;
      s->ctx_->cancel();
      s = next;
    }
  }

 private:
  Scope* head_ = nullptr;
};

}  // namespace tern::detail
