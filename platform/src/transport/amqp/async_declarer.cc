#include "transport/amqp/async_declarer.h"

#include <vector>

namespace tern::detail {
namespace {
amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
constexpr amqp_channel_t kChannel = AmqpConnection::kChannel;
}  // namespace

void AsyncDeclarer::declare_queue(const std::string& name, const topology::QueueArgs& args) {
  // As AmqpConnection::declare_queue: durable, the same arguments.
  std::vector<amqp_table_entry_t> entries;
  amqp_queue_declare_t m{};
  m.queue = bytes(name);
  m.durable = 1;
  m.nowait = 1;
  m.arguments = queue_arguments(args, &entries);
  c_.queue_method(kChannel, AMQP_QUEUE_DECLARE_METHOD, &m);
}

std::string AsyncDeclarer::declare_private_queue() {
  if (c_.private_queue().empty()) throw AmqpError("no private queue to declare again");
  return c_.private_queue();
}

void AsyncDeclarer::declare_exchange(const std::string& name, const char* type) {
  amqp_exchange_declare_t m{};
  m.exchange = bytes(name);
  m.type = amqp_cstring_bytes(type);
  m.durable = 1;
  m.nowait = 1;
  c_.queue_method(kChannel, AMQP_EXCHANGE_DECLARE_METHOD, &m);
}

void AsyncDeclarer::bind(const std::string& queue, const std::string& exchange, const std::string& key) {
  amqp_queue_bind_t m{};
  m.queue = bytes(queue);
  m.exchange = bytes(exchange);
  m.routing_key = bytes(key);
  m.nowait = 1;
  c_.queue_method(kChannel, AMQP_QUEUE_BIND_METHOD, &m);
}

void AsyncDeclarer::qos(uint16_t prefetch) {
  amqp_basic_qos_t m{};
  m.prefetch_count = prefetch;
  c_.queue_method(kChannel, AMQP_BASIC_QOS_METHOD, &m);
}

void AsyncDeclarer::consume(const std::string& queue, const std::string& tag, bool no_ack) {
  amqp_basic_consume_t m{};
  m.queue = bytes(queue);
  m.consumer_tag = bytes(tag);
  m.no_ack = no_ack ? 1 : 0;
  m.nowait = 1;
  c_.queue_method(kChannel, AMQP_BASIC_CONSUME_METHOD, &m);
}

void AsyncDeclarer::open_event_channel() { throw AmqpError("AsyncDeclarer cannot open channels"); }

}  // namespace tern::detail
