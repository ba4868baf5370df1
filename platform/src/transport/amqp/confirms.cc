#include "transport/amqp/confirms.h"

namespace tern::detail {

// A publish waiting for its confirm; on the waiting fiber's stack.
struct Confirms::Pending {
  boost::fibers::context* waiter = nullptr;
  bool done = false;
  bool ack = false;
  bool lost = false;   // its channel was closed: kUnknown
};

Confirms::Confirms(BrokerLink& link) : link_(link) {
  link_.on_confirm([this](uint64_t tag, bool multiple, bool ack) { on_confirm(tag, multiple, ack); });
  link_.on_lost([this](const std::string&) { fail_all(); });
  link_.on_channel_lost([this](amqp_channel_t ch, const std::string& reason) {
    if (ch != AmqpConnection::kEventChannel) return;
    lost_reason_ = reason;
    fail_all();
  });
}

Confirms::Outcome Confirms::publish(AmqpConnection::Publish p, Clock::time_point deadline) {
  p.channel = AmqpConnection::kEventChannel;
  const uint64_t tag = link_.publish(p);
  if (tag == 0) return Outcome::kNotSent;
  Pending pc;
  pc.waiter = boost::fibers::context::active();
  pending_.emplace(tag, &pc);
  while (!pc.done && Clock::now() < deadline) pc.waiter->wait_until(deadline);
  if (!pc.done) {
    pending_.erase(tag);
    return Outcome::kUnknown;
  }
  if (pc.ack) return Outcome::kConfirmed;
  if (link_.broken()) return Outcome::kUnknown;
  return pc.lost ? Outcome::kChannelLost : Outcome::kNacked;
}

void Confirms::on_confirm(uint64_t tag, bool multiple, bool ack) {
  auto end = pending_.upper_bound(tag);
  auto begin = multiple ? pending_.begin() : pending_.find(tag);
  if (begin == pending_.end()) return;
  for (auto it = begin; it != end;) {
    Pending* pc = it->second;
    it = pending_.erase(it);
    pc->ack = ack;
    pc->done = true;
    Reactor::ready(pc->waiter);
    if (!multiple) break;
  }
}

void Confirms::fail_all() {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [tag, pc] : pending) {
    pc->ack = false;
    pc->lost = true;
    pc->done = true;
    Reactor::ready(pc->waiter);
  }
}

}  // namespace tern::detail
