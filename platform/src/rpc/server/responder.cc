#include "rpc/server/responder.h"

#include <fmt/format.h>

#include "core/wire.h"
#include "observability/telemetry.h"
#include "tern/context.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

Responder::Responder(BrokerLink& link, Confirms& confirms, ResponderOptions options)
    : link_(link), confirms_(confirms), options_(std::move(options)), dead_letter_queue_(topology::dead_letter_queue(options_.queue)) {}

bool Responder::reply(const Message& request, const std::string& response) {
  if (request.reply_to.empty()) return false;
  AmqpConnection::Publish p;
  p.routing_key = request.reply_to;
  p.body = response;
  p.correlation_id = request.correlation_id;
  p.answers_delivery = true;
  return link_.publish(p) != 0;
}

void Responder::reply_error(const Message& request, const Error& error) {
  tern::v1::Response resp = response_for(request.correlation_id);
  to_wire(error, resp.mutable_error());
  reply(request, resp.SerializeAsString());
}

void Responder::reply_and_ack(const Message& request, const std::string& response) {
  if (!reply(request, response)) return;  // the broker redelivers the request
  link_.ack(request);
}

void Responder::refuse_overflow(const Message& m) {
  // Expired requests are dead-lettered here too: nobody waits for those.
  tern::v1::Request req;
  if (!answerable(m.reply_to) || !req.ParseFromString(m.body)) return;
  if (req.deadline_unix_ms() <= to_unix_ms(std::chrono::steady_clock::now())) return;
  reply_error(m, Error{Code::kResourceExhausted, fmt::format("{} is overloaded: its queue holds {} requests already",
                                                             options_.queue, options_.max_queue_length)});
}

bool Responder::count_redelivery(const Message& m) {
  if (!m.redelivered || link_.broken()) return false;
  // The broker only says "redelivered". To count deliveries across crashes,
  // put the request back at the tail of the queue with the count in a header
  // and ack this copy; past the limit it is dead-lettered instead.
  const uint32_t next = m.deliveries + 1;
  recounting_.insert(m.correlation_id);
  bool stored = false;
  if (next > static_cast<uint32_t>(options_.max_deliveries)) {
    log::error("{}: request {} was delivered {} times without an answer: dead-lettered", options_.queue,
               m.correlation_id, m.deliveries);
    const Confirms::Copy copy =
        dead_letter(m, fmt::format("delivered {} times without an answer (its handler crashed?)", m.deliveries));
    stored = copy != Confirms::Copy::kUnknown;
    if (stored)
      reply_error(m, Error{Code::kInternal,
                           fmt::format("{}: the request was delivered {} times without an answer and {}",
                                       options_.queue, m.deliveries,
                                       copy == Confirms::Copy::kStored
                                           ? "went to " + dead_letter_queue_
                                           : "was dropped: " + dead_letter_queue_ + " is full")});
  } else {
    // The copy is published as this service: it names who sent the original.
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"x-tern-deliveries", std::to_string(next)}, {Message::kOnBehalfOf, verified_caller(m)}};
    AmqpConnection::Publish p;
    p.routing_key = options_.queue;
    p.body = m.body;
    p.correlation_id = m.correlation_id;
    p.reply_to = m.reply_to;
    p.headers = &headers;
    p.persistent = true;
    p.answers_delivery = true;
    // The copy with its count must be on the broker before this one goes:
    // if this process dies right after (the next copy may crash it), the
    // count is already there.
    stored = confirms_.publish(p, Clock::now() + Confirms::kRepublishWait) == Confirms::Outcome::kConfirmed;
  }
  ack_if(stored, m);
  link_.flush_now();
  {
    std::lock_guard<boost::fibers::mutex> lock(recount_mu_);
    recounting_.erase(m.correlation_id);
  }
  recounted_.notify_all();
  return true;
}

void Responder::await_recount(const std::string& correlation_id) {
  if (recounting_.empty()) return;
  std::unique_lock<boost::fibers::mutex> lock(recount_mu_);
  recounted_.wait_until(lock, Clock::now() + Confirms::kRepublishWait + std::chrono::seconds(1),
                        [&] { return recounting_.count(correlation_id) == 0; });
}

void Responder::ack_if(bool stored, const Message& m) {
  if (stored) {
    link_.ack(m);
    return;
  }
  log::warn("{}: the broker did not confirm the copy of {}: it goes back to the queue", options_.queue,
            m.correlation_id);
  link_.requeue(m);
}

Confirms::Copy Responder::dead_letter(const Message& m, std::string_view reason) {
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"x-tern-reason", std::string(reason)},
      {"x-tern-queue", options_.queue},
      {"x-tern-correlation-id", m.correlation_id},
      {"x-tern-reply-to", m.reply_to},
      {"x-tern-redelivered", m.redelivered ? "true" : "false"},
      {Message::kOnBehalfOf, verified_caller(m)},
  };
  AmqpConnection::Publish p;
  p.routing_key = dead_letter_queue_;
  p.body = m.body;
  // Kept for inspection, by whoever may read the queue: without the
  // caller's credentials (a token sent as metadata authorization).
  std::string stripped;
  if (tern::v1::Request req; req.ParseFromString(m.body)) {
    bool any = false;
    for (auto it = req.mutable_metadata()->begin(); it != req.mutable_metadata()->end();) {
      if (Context::is_credential(it->first)) {
        it = req.mutable_metadata()->erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    if (any && req.SerializeToString(&stripped)) p.body = stripped;
  }
  p.headers = &headers;
  p.persistent = true;
  p.answers_delivery = true;
  const Confirms::Copy copy = confirms_.copy(p, Clock::now() + Confirms::kRepublishWait);
  if (copy == Confirms::Copy::kRefused) {
    log::error("{}: {} refused the message (correlation_id '{}'; full?): it was dropped", options_.queue,
               dead_letter_queue_, m.correlation_id);
    metric::dead_letters_refused(options_.queue, dead_letter_queue_).inc();
  }
  return copy;
}

}  // namespace tern::detail
