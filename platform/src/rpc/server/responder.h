// How a server answers the requests it took: replies to their reply_to,
// acks, dead letters and the count of redeliveries. A republish (the
// counted copy, a dead letter) is confirmed by the broker before the
// original is acked; unconfirmed, the original goes back to its queue, so a
// crash or an alarm between the two loses nothing. Over one reactor
// thread's broker link; reactor thread only.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/mutex.hpp>

#include "tern/error.h"
#include "transport/amqp/broker_link.h"
#include "transport/amqp/confirms.h"

namespace tern::detail {

struct ResponderOptions {
  std::string queue;             // the service's request queue
  int max_deliveries = 5;        // deliveries without an answer before a request is dead-lettered
  int64_t max_queue_length = 10000;
};

class Responder {
 public:
  Responder(BrokerLink& link, Confirms& confirms, ResponderOptions options);

  // Publishes a serialized tern.v1.Response to the request's reply_to;
  // false if it cannot (no reply_to, no link).
  bool reply(const Message& request, const std::string& response);
  // Whether a reply may go to `reply_to`: a caller's direct reply-to or a
  // server-named private queue (amq.gen-*), never a named queue, so a
  // request cannot make this service publish into someone else's queue.
  static bool answerable(std::string_view reply_to) {
    return reply_to.starts_with("amq.rabbitmq.reply-to") || reply_to.starts_with("amq.gen-");
  }
  void reply_error(const Message& request, const Error& error);
  // The reply, then the ack: a request whose reply could not go out is
  // left unacked, and the broker redelivers it.
  void reply_and_ack(const Message& request, const std::string& response);
  // Acks without replying (a request nobody can be answered for).
  void ack(const Message& request) { link_.ack(request); }

  // Copies a message that cannot be processed to "<queue>.dead-letter",
  // with the reason in its headers, and waits for the broker's confirm.
  // kRefused (the queue is at its length limit, docs/reliability.md) is
  // logged and counted here: the original is then dropped, not requeued,
  // since it would only come back to the same full queue.
  Confirms::Copy dead_letter(const Message& m, std::string_view reason);
  // Acks `m` if `stored` (its copy is on the broker), else requeues it.
  void ack_if(bool stored, const Message& m);
  // After dead_letter: acks `m` unless its copy's fate is unknown.
  void settle(Confirms::Copy copy, const Message& m) { ack_if(copy != Confirms::Copy::kUnknown, m); }
  // For a redelivered request: republishes it with its delivery count, or
  // past max_deliveries dead-letters and answers it; then acks this copy
  // (or requeues it, unconfirmed). Returns whether it did (then the
  // request must not be handled now).
  bool count_redelivery(const Message& m);
  // Before handling a delivery: while its request's counted copy waits for
  // the confirm that lets the original be acked, the copy (delivered here
  // meanwhile) waits too, so a request that crashes this process cannot
  // crash it between the copy and the ack, with the count never growing.
  void await_recount(const std::string& correlation_id);
  // Answers a request the full queue refused with RESOURCE_EXHAUSTED.
  void refuse_overflow(const Message& m);

  const std::string& dead_letter_queue() const { return dead_letter_queue_; }
  // Who sent the request, as the broker verified it (Message::verified_user).
  std::string verified_caller(const Message& m) const { return m.verified_user(link_.user()); }

 private:
  BrokerLink& link_;
  Confirms& confirms_;
  const ResponderOptions options_;
  const std::string dead_letter_queue_;
  std::unordered_set<std::string> recounting_;   // correlation ids between copy and ack
  boost::fibers::mutex recount_mu_;
  boost::fibers::condition_variable recounted_;
};

}  // namespace tern::detail
