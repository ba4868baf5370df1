// What a loop does with messages that cannot take the normal path: requests
// refused by a full queue, events whose handler failed, requests delivered
// again after a crash, and messages that go to a dead-letter queue.
#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "service/loop.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"
#include "core/wire.h"

namespace tern::detail {

void Loop::refuse_overflow(const Message& m) {
  // Expired requests are dead-lettered here too: nobody waits for those.
  tern::v1::Request req;
  if (m.reply_to.empty() || !req.ParseFromString(m.body)) return;
  if (req.deadline_unix_ms() <= to_unix_ms(std::chrono::steady_clock::now())) return;
  reply_error(m, Error{Code::kResourceExhausted,
                       fmt::format("{} is overloaded: its queue holds {} requests already", queue_,
                                   options_.max_queue_length)});
}

void Loop::retry_event(const Message& m, size_t index, const std::string& error) {
  const Subscription& sub = subscriptions_.at(index);
  const int attempt = std::max(1, std::atoi(m.header("x-tern-attempt").c_str()));
  const bool last = attempt >= options_.event_attempts;
  const std::string target =
      last ? sub.queue + ".dead-letter" : fmt::format("{}.retry.{}", sub.queue, attempt);
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"x-tern-attempt", std::to_string(attempt + 1)},
      {"x-tern-error", error},
      {"x-tern-subscription", sub.queue},
  };
  if (last) {
    log::error("{}: event for {} failed {} times, last with {}: dead-lettered", name_, sub.queue, attempt, error);
    metric::events_dead_lettered(name_, sub.queue).inc();
  } else {
    metric::events_retried(name_, sub.queue).inc();
  }
  if (!broken_) {
    AmqpConnection::Publish p;
    p.routing_key = target;
    p.body = m.body;
    p.headers = &headers;
    p.persistent = true;
    conn_->publish(p);
  }
  ack(m);
}

bool Loop::count_redelivery(const Message& m) {
  if (!m.redelivered || broken_) return false;
  // The broker only says "redelivered". To count deliveries across crashes,
  // put the request back at the tail of the queue with the count in a header
  // and ack this copy; past the limit it is dead-lettered instead.
  const uint32_t next = m.deliveries + 1;
  if (next > static_cast<uint32_t>(options_.max_deliveries)) {
    log::error("{}: request {} was delivered {} times without an answer: dead-lettered", name_,
               m.correlation_id, m.deliveries);
    dead_letter(m, fmt::format("delivered {} times without an answer (its handler crashed?)", m.deliveries));
    reply_error(m, Error{Code::kInternal, fmt::format("{}: the request was delivered {} times without an "
                                                      "answer and went to {}", queue_, m.deliveries,
                                                      dead_letter_queue())});
  } else {
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"x-tern-deliveries", std::to_string(next)}};
    AmqpConnection::Publish p;
    p.routing_key = queue_;
    p.body = m.body;
    p.correlation_id = m.correlation_id;
    p.reply_to = m.reply_to;
    p.headers = &headers;
    conn_->publish(p);
  }
  // Out at once, the copy before the ack: if this process dies right after
  // (the next copy may crash it), the count must already be on the broker.
  conn_->flush();
  ack(m);
  if (consumer_) consumer_->flush();
  return true;
}

void Loop::dead_letter(const Message& m, std::string_view reason) {
  if (broken_) return;
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"x-tern-reason", std::string(reason)},
      {"x-tern-queue", queue_},
      {"x-tern-correlation-id", m.correlation_id},
      {"x-tern-reply-to", m.reply_to},
      {"x-tern-redelivered", m.redelivered ? "true" : "false"},
  };
  const std::string dlq = dead_letter_queue();
  AmqpConnection::Publish p;
  p.routing_key = dlq;
  p.body = m.body;
  p.headers = &headers;
  p.persistent = true;
  conn_->publish(p);
}

}  // namespace tern::detail
