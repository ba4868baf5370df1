// Message::reset and swap, which let a runtime thread reuse a delivery's
// buffers for the next one (ThreadRuntime::take / give_back).
#include <catch2/catch.hpp>

#include "transport/amqp/connection.h"

TEST_CASE("a Message reset for reuse keeps its buffers and none of its contents, and swap exchanges every field") {
  tern::detail::Message a;
  a.returned = true, a.delivery_tag = 9, a.redelivered = true, a.reply_code = 312, a.body_size = 5;
  a.deliveries = 3, a.generation = 4;
  a.consumer_tag = std::string(40, 't'), a.routing_key = std::string(40, 'r'), a.reply_text = std::string(40, 'x');
  a.correlation_id = std::string(40, 'c'), a.reply_to = std::string(40, 'p'), a.user_id = std::string(40, 'u');
  a.body = std::string(1000, 'b');
  a.headers = {{"k", "v"}};
  tern::detail::Message b;
  b.swap(a);
  CHECK(a.body.empty());
  CHECK(a.correlation_id.empty());
  CHECK(a.delivery_tag == 0);
  CHECK(b.returned);
  CHECK(b.delivery_tag == 9);
  CHECK(b.redelivered);
  CHECK(b.reply_code == 312);
  CHECK(b.body_size == 5);
  CHECK(b.deliveries == 3);
  CHECK(b.generation == 4);
  CHECK(b.consumer_tag == std::string(40, 't'));
  CHECK(b.routing_key == std::string(40, 'r'));
  CHECK(b.reply_text == std::string(40, 'x'));
  CHECK(b.correlation_id == std::string(40, 'c'));
  CHECK(b.reply_to == std::string(40, 'p'));
  CHECK(b.user_id == std::string(40, 'u'));
  CHECK(b.body == std::string(1000, 'b'));
  CHECK(b.headers.size() == 1);
  const size_t body_capacity = b.body.capacity(), id_capacity = b.correlation_id.capacity();
  b.reset();
  const tern::detail::Message fresh;
  CHECK(b.returned == fresh.returned);
  CHECK(b.delivery_tag == fresh.delivery_tag);
  CHECK(b.redelivered == fresh.redelivered);
  CHECK(b.reply_code == fresh.reply_code);
  CHECK(b.body_size == fresh.body_size);
  CHECK(b.deliveries == fresh.deliveries);
  CHECK(b.generation == fresh.generation);
  for (const std::string* s : {&b.consumer_tag, &b.routing_key, &b.reply_text, &b.correlation_id, &b.reply_to,
                               &b.user_id, &b.body})
    CHECK(s->empty());
  CHECK(b.headers.empty());
  CHECK(b.body.capacity() == body_capacity);
  CHECK(b.correlation_id.capacity() == id_capacity);
}
