// Declarations on a connection that is already serving: each one is queued
// in the connection's output buffer as a method with nowait set, on
// AmqpConnection::kChannel, so the thread never waits for the broker. An
// error comes back later as a channel.close (AmqpConnection::Sink). Used to
// put back what the broker took away while we ran: a deleted queue, a
// closed channel's consumers. Reactor thread only.
#pragma once

#include <string>

#include "transport/amqp/connection.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

class AsyncDeclarer final : public topology::Declarer {
 public:
  explicit AsyncDeclarer(AmqpConnection& c) : c_(c) {}

  void declare_queue(const std::string& name, const topology::QueueArgs& args) override;
  // The connection's exclusive queue, which lives as long as the connection
  // (a server-named queue cannot be declared again by name); throws
  // AmqpError if there is none.
  std::string declare_private_queue() override;
  void declare_exchange(const std::string& name, const char* type) override;
  void bind(const std::string& queue, const std::string& exchange, const std::string& key) override;
  // basic.qos has no nowait: its qos-ok arrives later and is ignored.
  void qos(uint16_t prefetch) override;
  void consume(const std::string& queue, const std::string& tag, bool no_ack) override;
  // Throws AmqpError: channels are opened again by AmqpConnection itself.
  void open_event_channel() override;

 private:
  AmqpConnection& c_;
};

}  // namespace tern::detail
