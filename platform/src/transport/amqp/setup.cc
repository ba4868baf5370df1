// The synchronous set-up methods of AmqpConnection (topology::Declarer):
// each sends one method and waits for its reply. Call only before serving.
#include <fmt/format.h>

#include "transport/amqp/connection.h"

namespace tern::detail {
namespace {

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

}  // namespace

amqp_table_t queue_arguments(const topology::QueueArgs& args, std::vector<amqp_table_entry_t>* entries) {
  entries->clear();
  entries->reserve(args.size());
  for (const topology::QueueArg& arg : args) {
    amqp_table_entry_t e;
    e.key = bytes(arg.key);
    if (const auto* n = std::get_if<int64_t>(&arg.value)) {
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = *n;
    } else {
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(std::get<std::string>(arg.value));
    }
    entries->push_back(e);
  }
  return amqp_table_t{static_cast<int>(entries->size()), entries->data()};
}

void AmqpConnection::declare_queue(const std::string& name, const QueueArgs& args) {
  // Durable, so a service's queues outlive its instances and the broker's
  // restarts.
  std::vector<amqp_table_entry_t> entries;
  amqp_queue_declare_t m{};
  m.queue = bytes(name);
  m.durable = 1;
  m.arguments = queue_arguments(args, &entries);
  rpc(kChannel, AMQP_QUEUE_DECLARE_METHOD, &m, AMQP_QUEUE_DECLARE_OK_METHOD,
      fmt::format("cannot declare queue '{}'", name));
}

std::string AmqpConnection::declare_private_queue() {
  amqp_queue_declare_t m{};
  m.exclusive = 1;
  m.auto_delete = 1;
  const amqp_frame_t f =
      rpc(kChannel, AMQP_QUEUE_DECLARE_METHOD, &m, AMQP_QUEUE_DECLARE_OK_METHOD, "cannot declare a private queue");
  private_queue_ = str(static_cast<amqp_queue_declare_ok_t*>(f.payload.method.decoded)->queue);
  return private_queue_;
}

void AmqpConnection::declare_exchange(const std::string& name, const char* type) {
  amqp_exchange_declare_t m{};
  m.exchange = bytes(name);
  m.type = amqp_cstring_bytes(type);
  m.durable = 1;
  rpc(kChannel, AMQP_EXCHANGE_DECLARE_METHOD, &m, AMQP_EXCHANGE_DECLARE_OK_METHOD,
      fmt::format("cannot declare exchange '{}'", name));
}

void AmqpConnection::bind(const std::string& queue, const std::string& exchange, const std::string& key) {
  amqp_queue_bind_t m{};
  m.queue = bytes(queue);
  m.exchange = bytes(exchange);
  m.routing_key = bytes(key);
  rpc(kChannel, AMQP_QUEUE_BIND_METHOD, &m, AMQP_QUEUE_BIND_OK_METHOD,
      fmt::format("cannot bind '{}' to '{}'", queue, exchange));
}

void AmqpConnection::qos(uint16_t prefetch) {
  amqp_basic_qos_t m{};
  m.prefetch_count = prefetch;
  rpc(kChannel, AMQP_BASIC_QOS_METHOD, &m, AMQP_BASIC_QOS_OK_METHOD, "basic.qos failed");
}

void AmqpConnection::consume(const std::string& queue, const std::string& consumer_tag, bool no_ack) {
  amqp_basic_consume_t m{};
  m.queue = bytes(queue);
  m.consumer_tag = bytes(consumer_tag);
  m.no_ack = no_ack ? 1 : 0;
  rpc(kChannel, AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD,
      fmt::format("cannot consume from '{}'", queue));
}

void AmqpConnection::open_event_channel() {
  amqp_channel_open_t open{};
  rpc(kEventChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "cannot open the event channel");
  amqp_confirm_select_t select{};
  rpc(kEventChannel, AMQP_CONFIRM_SELECT_METHOD, &select, AMQP_CONFIRM_SELECT_OK_METHOD, "confirm.select failed");
  rpc(kNoticeChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "cannot open the notice channel");
}

}  // namespace tern::detail
