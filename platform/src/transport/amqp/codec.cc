#include "transport/amqp/codec.h"

#include <amqp.h>
#include <amqp_framing.h>

#include <algorithm>

namespace tern::detail::amqp_codec {
namespace {

void u8(std::string& o, uint8_t v) { o.push_back(static_cast<char>(v)); }
void u16(std::string& o, uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  o.append(b, 2);
}
void u32(std::string& o, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                     static_cast<char>(v)};
  o.append(b, 4);
}
void u64(std::string& o, uint64_t v) {
  u32(o, static_cast<uint32_t>(v >> 32));
  u32(o, static_cast<uint32_t>(v));
}
void short_string(std::string& o, std::string_view s) {
  u8(o, static_cast<uint8_t>(s.size()));
  o.append(s);
}
void frame_head(std::string& o, uint8_t type, uint16_t channel, size_t payload) {
  u8(o, type);
  u16(o, channel);
  u32(o, static_cast<uint32_t>(payload));
}
void frame_end(std::string& o) { u8(o, AMQP_FRAME_END); }

constexpr std::string_view kContentType = "application/x-protobuf";

// The optional short-string properties a publish may carry, in the order
// of their flag bits (the order the header lists them in).
struct ShortProperty {
  uint16_t flag;
  std::string_view value;
};

void append_basic_method(std::string* out, uint16_t channel, uint16_t method, uint64_t delivery_tag, uint8_t bits) {
  std::string& o = *out;
  frame_head(o, AMQP_FRAME_METHOD, channel, 4 + 8 + 1);
  u16(o, AMQP_BASIC_CLASS);
  u16(o, method);
  u64(o, delivery_tag);
  u8(o, bits);
  frame_end(o);
}

}  // namespace

const char* append_publish(std::string* out, const AmqpConnection::Publish& p, std::string_view user,
                           size_t frame_max) {
  if (p.routing_key.size() > 255 || p.exchange.size() > 255) return "routing key or exchange";
  // Everything measured before anything is appended: a message that cannot
  // be encoded is refused alone.
  const ShortProperty before_headers[] = {{AMQP_BASIC_CONTENT_TYPE_FLAG, kContentType}};
  const ShortProperty after_mode[] = {{AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id},
                                      {AMQP_BASIC_REPLY_TO_FLAG, p.reply_to},
                                      {AMQP_BASIC_EXPIRATION_FLAG, p.expiration_ms},
                                      {AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id},
                                      {AMQP_BASIC_TYPE_FLAG, p.type},
                                      {AMQP_BASIC_USER_ID_FLAG, user}};
  uint16_t flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  size_t props = 1 + kContentType.size() + 1;  // content type, delivery mode
  for (const ShortProperty& s : after_mode) {
    if (s.value.empty()) continue;
    if (s.value.size() > 255) return "property";
    flags |= s.flag;
    props += 1 + s.value.size();
  }
  const bool has_headers = p.headers != nullptr && !p.headers->empty();
  size_t table = 0;
  if (has_headers) {
    flags |= AMQP_BASIC_HEADERS_FLAG;
    for (const auto& [k, v] : *p.headers) {
      if (k.size() > 255) return "property";
      // A header is a note about the message (an error, a URL): cut to
      // fit, never a reason to refuse it.
      table += 1 + k.size() + 1 + 4 + AmqpConnection::truncated(v, AmqpConnection::kMaxHeaderValueBytes).size();
    }
    props += 4 + table;
  }
  const size_t header_payload = 2 + 2 + 8 + 2 + props;
  if (header_payload + kFrameOverhead > frame_max) return "property";

  std::string& o = *out;
  const size_t chunk = frame_max - kFrameOverhead;
  const size_t body_frames = (p.body.size() + chunk - 1) / chunk;
  o.reserve(o.size() + kFrameOverhead * (2 + body_frames) + 7 + p.exchange.size() + p.routing_key.size() +
            header_payload + p.body.size());
  // basic.publish: reserved short, exchange, routing key, mandatory and
  // immediate bits.
  frame_head(o, AMQP_FRAME_METHOD, p.channel, 4 + 2 + 1 + p.exchange.size() + 1 + p.routing_key.size() + 1);
  u16(o, AMQP_BASIC_CLASS);
  u16(o, AMQP_BASIC_PUBLISH_METHOD & 0xffff);
  u16(o, 0);
  short_string(o, p.exchange);
  short_string(o, p.routing_key);
  u8(o, p.mandatory ? 1 : 0);
  frame_end(o);
  // Content header: class, weight, body size, property flags, properties.
  frame_head(o, AMQP_FRAME_HEADER, p.channel, header_payload);
  u16(o, AMQP_BASIC_CLASS);
  u16(o, 0);
  u64(o, p.body.size());
  u16(o, flags);
  for (const ShortProperty& s : before_headers) short_string(o, s.value);
  if (has_headers) {
    u32(o, static_cast<uint32_t>(table));
    for (const auto& [k, v] : *p.headers) {
      const std::string_view value = AmqpConnection::truncated(v, AmqpConnection::kMaxHeaderValueBytes);
      short_string(o, k);
      u8(o, 'S');
      u32(o, static_cast<uint32_t>(value.size()));
      o.append(value);
    }
  }
  u8(o, p.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT);
  for (const ShortProperty& s : after_mode)
    if (!s.value.empty()) short_string(o, s.value);
  frame_end(o);
  for (size_t at = 0; at < p.body.size(); at += chunk) {
    const std::string_view part = p.body.substr(at, std::min(chunk, p.body.size() - at));
    frame_head(o, AMQP_FRAME_BODY, p.channel, part.size());
    o.append(part);
    frame_end(o);
  }
  return nullptr;
}

void append_ack(std::string* out, uint16_t channel, uint64_t delivery_tag) {
  append_basic_method(out, channel, AMQP_BASIC_ACK_METHOD & 0xffff, delivery_tag, /*multiple=*/0);
}

void append_requeue(std::string* out, uint16_t channel, uint64_t delivery_tag) {
  append_basic_method(out, channel, AMQP_BASIC_REJECT_METHOD & 0xffff, delivery_tag, /*requeue=*/1);
}

}  // namespace tern::detail::amqp_codec
