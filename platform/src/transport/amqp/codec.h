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
// empty. Returns null, or why the message cannot be encoded (a routing key
// or property over 255 bytes, headers over one frame), with nothing
// appended.
const char* append_publish(std::string* out, const AmqpConnection::Publish& p, std::string_view user,
                           size_t frame_max);
// Appends basic.ack (multiple off) or, requeue, basic.reject with requeue.
void append_ack(std::string* out, uint16_t channel, uint64_t delivery_tag);
void append_requeue(std::string* out, uint16_t channel, uint64_t delivery_tag);

}  // namespace tern::detail::amqp_codec
