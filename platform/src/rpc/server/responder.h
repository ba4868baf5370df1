// How a server answers the requests it took: replies to their reply_to,
// acks, dead letters and the count of redeliveries. Over one reactor
// thread's broker link; reactor thread only.
#pragma once

#include <string>
#include <string_view>

#include "tern/error.h"
#include "transport/amqp/broker_link.h"

namespace tern::detail {

struct ResponderOptions {
  std::string queue;             // the service's request queue
  int max_deliveries = 5;        // deliveries without an answer before a request is dead-lettered
  int64_t max_queue_length = 10000;
};

class Responder {
 public:
  Responder(BrokerLink& link, ResponderOptions options);

  // Publishes a serialized tern.v1.Response to the request's reply_to;
  // false if it cannot (no reply_to, no link).
  bool reply(const Message& request, const std::string& response);
  void reply_error(const Message& request, const Error& error);
  // The reply, then the ack: a request whose reply could not go out is
  // left unacked, and the broker redelivers it.
  void reply_and_ack(const Message& request, const std::string& response);
  // Acks without replying (a request nobody can be answered for).
  void ack(const Message& request) { link_.ack(request); }

  // Copies a message that cannot be processed to "<queue>.dead-letter",
  // with the reason in its headers. The caller still acks it.
  void dead_letter(const Message& m, std::string_view reason);
  // For a redelivered request: requeues it with its delivery count, or past
  // max_deliveries dead-letters and answers it; then acks this copy.
  // Returns whether it did (then the request must not be handled now).
  bool count_redelivery(const Message& m);
  // Answers a request the full queue refused with RESOURCE_EXHAUSTED.
  void refuse_overflow(const Message& m);

  const std::string& dead_letter_queue() const { return dead_letter_queue_; }

 private:
  BrokerLink& link_;
  const ResponderOptions options_;
  const std::string dead_letter_queue_;
};

}  // namespace tern::detail
