#include "transport/amqp/codec.h"

#include <amqp.h>
#include <amqp_framing.h>

#include <algorithm>
#include <cstring>

namespace tern::detail {

// Header values are cut here, as they are encoded (declared with AmqpConnection).
std::string_view AmqpConnection::truncated(std::string_view v, size_t max) {
  if (v.size() <= max) return v;
  size_t cut = max;
  // Not inside a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) --cut;
  return v.substr(0, cut);
}

}  // namespace tern::detail

namespace tern::detail::amqp_codec {
namespace {

// Writes into room reserved beforehand: the whole message is measured
// first, the string grows once, and each field is a store, not an append.
struct Writer {
  char* p;
  void u8(uint8_t v) { *p++ = static_cast<char>(v); }
  void u16(uint16_t v) {
    p[0] = static_cast<char>(v >> 8);
    p[1] = static_cast<char>(v);
    p += 2;
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void u64(uint64_t v) {
    u32(static_cast<uint32_t>(v >> 32));
    u32(static_cast<uint32_t>(v));
  }
  void bytes(std::string_view s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void short_string(std::string_view s) {
    u8(static_cast<uint8_t>(s.size()));
    bytes(s);
  }
  void frame_head(uint8_t type, uint16_t channel, size_t payload) {
    u8(type);
    u16(channel);
    u32(static_cast<uint32_t>(payload));
  }
  void frame_end() { u8(AMQP_FRAME_END); }
};

// Room for `n` more bytes at the end of *out, to write with a Writer.
Writer grow(std::string* out, size_t n) {
  const size_t at = out->size();
  out->resize(at + n);
  return Writer{out->data() + at};
}

constexpr std::string_view kContentType = "application/x-protobuf";

// The optional short-string properties a publish may carry, in the order
// of their flag bits (the order the header lists them in).
struct ShortProperty {
  uint16_t flag;
  std::string_view value;
};

void append_basic_method(std::string* out, uint16_t channel, uint16_t method, uint64_t delivery_tag, uint8_t bits) {
  constexpr size_t kPayload = 4 + 8 + 1;
  Writer w = grow(out, kFrameOverhead + kPayload);
  w.frame_head(AMQP_FRAME_METHOD, channel, kPayload);
  w.u16(AMQP_BASIC_CLASS);
  w.u16(method);
  w.u64(delivery_tag);
  w.u8(bits);
  w.frame_end();
}

}  // namespace

Refusal append_publish(std::string* out, const AmqpConnection::Publish& p, std::string_view user,
                           size_t frame_max) {
  if (p.routing_key.size() > 255 || p.exchange.size() > 255) return Refusal::kName;
  // Everything measured before anything is appended: a message that cannot
  // be encoded is refused alone.
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
    if (s.value.size() > 255) return Refusal::kProperty;
    flags |= s.flag;
    props += 1 + s.value.size();
  }
  const bool has_headers = p.headers != nullptr && !p.headers->empty();
  size_t table = 0;
  if (has_headers) {
    flags |= AMQP_BASIC_HEADERS_FLAG;
    for (const auto& [k, v] : *p.headers) {
      if (k.size() > 255) return Refusal::kProperty;
      // A header is a note about the message (an error, a URL): cut to
      // fit, never a reason to refuse it.
      table += 1 + k.size() + 1 + 4 + AmqpConnection::truncated(v, AmqpConnection::kMaxHeaderValueBytes).size();
    }
    props += 4 + table;
  }
  const size_t header_payload = 2 + 2 + 8 + 2 + props;
  if (header_payload + kFrameOverhead > frame_max) return Refusal::kProperty;

  const size_t chunk = frame_max - kFrameOverhead;
  const size_t body_frames = (p.body.size() + chunk - 1) / chunk;
  const size_t method_payload = 4 + 2 + 1 + p.exchange.size() + 1 + p.routing_key.size() + 1;
  Writer w = grow(out, kFrameOverhead * (2 + body_frames) + method_payload + header_payload + p.body.size());
  // basic.publish: reserved short, exchange, routing key, mandatory and
  // immediate bits.
  w.frame_head(AMQP_FRAME_METHOD, p.channel, method_payload);
  w.u16(AMQP_BASIC_CLASS);
  w.u16(AMQP_BASIC_PUBLISH_METHOD & 0xffff);
  w.u16(0);
  w.short_string(p.exchange);
  w.short_string(p.routing_key);
  w.u8(p.mandatory ? 1 : 0);
  w.frame_end();
  // Content header: class, weight, body size, property flags, properties.
  w.frame_head(AMQP_FRAME_HEADER, p.channel, header_payload);
  w.u16(AMQP_BASIC_CLASS);
  w.u16(0);
  w.u64(p.body.size());
  w.u16(flags);
  w.short_string(kContentType);
  if (has_headers) {
    w.u32(static_cast<uint32_t>(table));
    for (const auto& [k, v] : *p.headers) {
      const std::string_view value = AmqpConnection::truncated(v, AmqpConnection::kMaxHeaderValueBytes);
      w.short_string(k);
      w.u8('S');
      w.u32(static_cast<uint32_t>(value.size()));
      w.bytes(value);
    }
  }
  w.u8(p.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT);
  for (const ShortProperty& s : after_mode)
    if (!s.value.empty()) w.short_string(s.value);
  w.frame_end();
  for (size_t at = 0; at < p.body.size(); at += chunk) {
    const std::string_view part = p.body.substr(at, std::min(chunk, p.body.size() - at));
    w.frame_head(AMQP_FRAME_BODY, p.channel, part.size());
    w.bytes(part);
    w.frame_end();
  }
  return Refusal::kNone;
}

void append_ack(std::string* out, uint16_t channel, uint64_t delivery_tag) {
  append_basic_method(out, channel, AMQP_BASIC_ACK_METHOD & 0xffff, delivery_tag, /*multiple=*/0);
}

void append_requeue(std::string* out, uint16_t channel, uint64_t delivery_tag) {
  append_basic_method(out, channel, AMQP_BASIC_REJECT_METHOD & 0xffff, delivery_tag, /*requeue=*/1);
}

namespace {

// Reads from the bytes of one frame; every read checks the bounds and a
// failed one leaves ok() false for good.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  bool at_end() const { return s_.empty(); }
  uint64_t number(int n) {
    if (!take(static_cast<size_t>(n))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | static_cast<unsigned char>(last_[i]);
    return v;
  }
  std::string_view bytes(size_t n) { return take(n) ? last_ : std::string_view(); }
  std::string_view short_string() { return bytes(number(1)); }
  std::string_view long_string() { return bytes(number(4)); }

 private:
  bool take(size_t n) {
    if (!ok_ || s_.size() < n) return ok_ = false;
    last_ = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  std::string_view s_, last_;
  bool ok_ = true;
};

// Skips one field value of type `kind` (AMQP 0-9-1 with RabbitMQ's types:
// what rabbitmq-c reads).
void skip_value(Reader& r, char kind) {
  switch (kind) {
    case 't': case 'b': case 'B': r.bytes(1); break;
    case 's': case 'u': r.bytes(2); break;
    case 'I': case 'i': case 'f': r.bytes(4); break;
    case 'l': case 'L': case 'd': case 'T': r.bytes(8); break;
    case 'D': r.bytes(5); break;
    case 'V': break;
    case 'S': case 'x': case 'F': case 'A': r.long_string(); break;
    default: r.bytes(SIZE_MAX); break;   // unknown: fails the read
  }
}

}  // namespace

size_t frame_bytes(std::string_view head) {
  Reader r(head.substr(3, 4));
  return kFrameOverhead + r.number(4);
}

long split_frame(std::string_view in, size_t frame_max, FrameView* f) {
  if (in.size() < kFrameHeader) return 0;
  Reader r(in);
  f->type = static_cast<uint8_t>(r.number(1));
  f->channel = static_cast<uint16_t>(r.number(2));
  const uint64_t size = r.number(4);
  if (size + kFrameOverhead > frame_max) return -1;
  if (in.size() < size + kFrameOverhead) return 0;
  if (static_cast<unsigned char>(in[kFrameHeader + size]) != AMQP_FRAME_END) return -1;
  f->payload = in.substr(kFrameHeader, size);
  return static_cast<long>(size + kFrameOverhead);
}

bool split_method(std::string_view payload, uint32_t* id, std::string_view* args) {
  if (payload.size() < 4) return false;
  Reader r(payload);
  *id = static_cast<uint32_t>(r.number(4));
  *args = payload.substr(4);
  return true;
}

bool read_deliver(std::string_view args, Deliver* d) {
  Reader r(args);
  d->consumer_tag = r.short_string();
  d->delivery_tag = r.number(8);
  d->redelivered = (r.number(1) & 1) != 0;
  d->exchange = r.short_string();
  d->routing_key = r.short_string();
  return r.ok();
}

bool read_content_header(std::string_view payload, ContentHeader* h) {
  Reader r(payload);
  r.number(2);   // class
  r.number(2);   // weight
  h->body_size = r.number(8);
  h->flags = static_cast<uint16_t>(r.number(2));
  // Bit 0 says another flag word follows: the basic class has none of use
  // in it, but it is read past, as rabbitmq-c does.
  for (uint64_t more = h->flags; r.ok() && (more & 1) != 0;) more = r.number(2);
  if (!r.ok()) return false;
  const uint16_t f = h->flags;
  if (f & AMQP_BASIC_CONTENT_TYPE_FLAG) r.short_string();
  if (f & AMQP_BASIC_CONTENT_ENCODING_FLAG) r.short_string();
  if (f & AMQP_BASIC_HEADERS_FLAG) h->headers = r.long_string();
  if (f & AMQP_BASIC_DELIVERY_MODE_FLAG) r.number(1);
  if (f & AMQP_BASIC_PRIORITY_FLAG) r.number(1);
  if (f & AMQP_BASIC_CORRELATION_ID_FLAG) h->correlation_id = r.short_string();
  if (f & AMQP_BASIC_REPLY_TO_FLAG) h->reply_to = r.short_string();
  if (f & AMQP_BASIC_EXPIRATION_FLAG) r.short_string();
  if (f & AMQP_BASIC_MESSAGE_ID_FLAG) r.short_string();
  if (f & AMQP_BASIC_TIMESTAMP_FLAG) r.number(8);
  if (f & AMQP_BASIC_TYPE_FLAG) r.short_string();
  if (f & AMQP_BASIC_USER_ID_FLAG) h->user_id = r.short_string();
  if (f & AMQP_BASIC_APP_ID_FLAG) r.short_string();
  if (f & AMQP_BASIC_CLUSTER_ID_FLAG) r.short_string();
  return r.ok();
}

bool for_each_string_header(std::string_view table,
                            const std::function<void(std::string_view, std::string_view)>& fn) {
  Reader r(table);
  while (r.ok() && !r.at_end()) {
    const std::string_view key = r.short_string();
    const char kind = static_cast<char>(r.number(1));
    if (kind == 'S') {
      const std::string_view value = r.long_string();
      if (r.ok()) fn(key, value);
    } else {
      skip_value(r, kind);
    }
  }
  return r.ok();
}

}  // namespace tern::detail::amqp_codec
