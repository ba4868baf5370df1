// The AMQP 0-9-1 frames of the message path, written and read by hand: a
// basic.publish (method, content header, body frames) and a basic.ack
// appended straight to the output buffer, and incoming frames split and a
// delivery's method and content header read as views into the bytes read.
// rabbitmq-c's general codec (amqp_encode_*, amqp_handle_input) does the
// same through its own structs, pool and copies; it still handles every
// other method. Layouts: AMQP 0-9-1 sections 4.2.3 (frames), 4.2.6
// (content header) and the basic class's property list.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "transport/amqp/connection.h"

namespace tern::detail::amqp_codec {

// Frame header: type (1 byte), channel (2), payload size (4); then the
// payload and 0xCE. Numbers are big-endian.
constexpr size_t kFrameHeader = 7;
constexpr size_t kFrameOverhead = kFrameHeader + 1;

// Appends a basic.publish of `p` on p.channel as method, header and body
// frames (bodies cut to fit frame_max). `user` becomes user_id when not
// empty. Returns kNone, or why the message cannot be encoded, with nothing
// appended.
enum class Refusal {
  kNone,
  kName,       // a routing key or exchange over 255 bytes
  kProperty,   // a property over 255 bytes, or headers over one frame
};
Refusal append_publish(std::string* out, const AmqpConnection::Publish& p, std::string_view user,
                           size_t frame_max);
// Appends basic.ack (multiple off) or, requeue, basic.reject with requeue.
void append_ack(std::string* out, uint16_t channel, uint64_t delivery_tag);
void append_requeue(std::string* out, uint16_t channel, uint64_t delivery_tag);

// One frame at the front of the bytes read: views into them.
struct FrameView {
  uint8_t type = 0;
  uint16_t channel = 0;
  std::string_view payload;
};
// The whole size of the frame whose 7-byte header `head` starts with.
size_t frame_bytes(std::string_view head);
// Splits the frame at the front of `in` off: the bytes it takes, 0 if `in`
// does not hold all of it yet, -1 if it is malformed (a payload over
// frame_max, an end byte other than 0xCE).
long split_frame(std::string_view in, size_t frame_max, FrameView* f);
// A method frame's class and method (as one number, rabbitmq-c's
// amqp_method_number_t) and arguments; false if it is too short.
bool split_method(std::string_view payload, uint32_t* id, std::string_view* args);

// basic.deliver's arguments.
struct Deliver {
  std::string_view consumer_tag;
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string_view exchange, routing_key;
};
bool read_deliver(std::string_view args, Deliver* d);

// What a basic content header says that the platform reads; the other
// properties are skipped. `headers` is the field table's bytes (empty if
// none): for_each_string_header reads it.
struct ContentHeader {
  uint64_t body_size = 0;
  uint16_t flags = 0;
  std::string_view correlation_id, reply_to, user_id, headers;
};
bool read_content_header(std::string_view payload, ContentHeader* h);
// Calls fn(key, value) for each long-string ('S') entry of a field table,
// skipping entries of the other types; false if the table is malformed.
bool for_each_string_header(std::string_view table,
                            const std::function<void(std::string_view, std::string_view)>& fn);

}  // namespace tern::detail::amqp_codec
