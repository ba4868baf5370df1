// The hand-written AMQP frames of the message path (transport/amqp/codec)
// read back by rabbitmq-c's own decoder, the reference: every field of
// thousands of random publishes, bodies cut over several frames, header
// values cut to their limit, and what cannot be encoded refused with
// nothing written.
#include <catch2/catch.hpp>

#include <amqp.h>
#include <amqp_framing.h>

#include <random>

#include "transport/amqp/codec.h"

namespace codec = tern::detail::amqp_codec;
using tern::detail::AmqpConnection;

namespace {

struct Frame {
  uint8_t type;
  uint16_t channel;
  std::string payload;
};

uint32_t be(const std::string& s, size_t at, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = v << 8 | static_cast<unsigned char>(s[at + i]);
  return v;
}

// Splits `bytes` into frames, checking each one's end byte and size.
std::vector<Frame> split(const std::string& bytes, size_t frame_max) {
  std::vector<Frame> frames;
  size_t at = 0;
  while (at < bytes.size()) {
    REQUIRE(bytes.size() - at >= 8);
    const uint32_t size = be(bytes, at + 3, 4);
    REQUIRE(size + 8 <= frame_max);
    REQUIRE(at + 8 + size <= bytes.size());
    REQUIRE(static_cast<unsigned char>(bytes[at + 7 + size]) == AMQP_FRAME_END);
    frames.push_back({static_cast<uint8_t>(bytes[at]), static_cast<uint16_t>(be(bytes, at + 1, 2)),
                      bytes.substr(at + 7, size)});
    at += 8 + size;
  }
  return frames;
}

std::string view(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }
amqp_bytes_t bytes(std::string& s) { return amqp_bytes_t{s.size(), s.data()}; }

std::string random_string(std::mt19937_64& rng, size_t max) {
  std::string s(rng() % (max + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

TEST_CASE("hand-written publishes decode, field by field, with rabbitmq-c's own decoder") {
  std::mt19937_64 rng(7);
  amqp_pool_t pool;
  init_amqp_pool(&pool, 4096);
  for (int round = 0; round < 3000; ++round) {
    const size_t frame_max = round % 2 ? 4096 : 131072;
    const std::string routing_key = random_string(rng, 255), exchange = random_string(rng, rng() % 3 ? 0 : 255);
    const std::string correlation_id = random_string(rng, rng() % 2 ? 40 : 255),
                      reply_to = random_string(rng, rng() % 2 ? 0 : 100), expiration = random_string(rng, 8),
                      type = random_string(rng, rng() % 3 ? 0 : 30), message_id = random_string(rng, rng() % 3 ? 0 : 36),
                      user = random_string(rng, rng() % 4 ? 12 : 0);
    const std::string body = random_string(rng, rng() % 4 ? 300 : 3 * frame_max);
    std::vector<std::pair<std::string, std::string>> headers;
    for (size_t n = rng() % 4; n > 0; --n) headers.emplace_back(random_string(rng, 40), random_string(rng, 1500));
    AmqpConnection::Publish p;
    p.routing_key = routing_key;
    p.exchange = exchange;
    p.correlation_id = correlation_id;
    p.reply_to = reply_to;
    p.expiration_ms = expiration;
    p.type = type;
    p.message_id = message_id;
    p.body = body;
    p.channel = static_cast<amqp_channel_t>(1 + rng() % 3);
    p.mandatory = rng() % 2;
    p.persistent = rng() % 2;
    if (!headers.empty()) p.headers = &headers;

    std::string out = "before";
    REQUIRE(codec::append_publish(&out, p, user, frame_max) == codec::Refusal::kNone);
    REQUIRE(out.substr(0, 6) == "before");
    const std::vector<Frame> frames = split(out.substr(6), frame_max);
    REQUIRE(frames.size() >= 2);
    for (const Frame& f : frames) REQUIRE(f.channel == p.channel);

    REQUIRE(frames[0].type == AMQP_FRAME_METHOD);
    std::string method = frames[0].payload;
    REQUIRE(be(method, 0, 4) == AMQP_BASIC_PUBLISH_METHOD);
    void* decoded = nullptr;
    REQUIRE(amqp_decode_method(AMQP_BASIC_PUBLISH_METHOD, &pool,
                               amqp_bytes_t{method.size() - 4, method.data() + 4}, &decoded) == AMQP_STATUS_OK);
    const auto* m = static_cast<amqp_basic_publish_t*>(decoded);
    CHECK(view(m->exchange) == exchange);
    CHECK(view(m->routing_key) == routing_key);
    CHECK(m->mandatory == p.mandatory);
    CHECK(m->immediate == 0);

    REQUIRE(frames[1].type == AMQP_FRAME_HEADER);
    std::string header = frames[1].payload;
    REQUIRE(be(header, 0, 2) == AMQP_BASIC_CLASS);
    const uint64_t body_size = uint64_t{be(header, 4, 4)} << 32 | be(header, 8, 4);
    CHECK(body_size == body.size());
    std::string props_bytes = header.substr(12);
    REQUIRE(amqp_decode_properties(AMQP_BASIC_CLASS, &pool, bytes(props_bytes), &decoded) == AMQP_STATUS_OK);
    const auto* props = static_cast<amqp_basic_properties_t*>(decoded);
    const auto has = [&](amqp_flags_t flag) { return (props->_flags & flag) != 0; };
    CHECK(view(props->content_type) == "application/x-protobuf");
    CHECK(props->delivery_mode == (p.persistent ? 2 : 1));
    CHECK(has(AMQP_BASIC_CORRELATION_ID_FLAG) == !correlation_id.empty());
    if (!correlation_id.empty()) CHECK(view(props->correlation_id) == correlation_id);
    CHECK(has(AMQP_BASIC_REPLY_TO_FLAG) == !reply_to.empty());
    if (!reply_to.empty()) CHECK(view(props->reply_to) == reply_to);
    CHECK(has(AMQP_BASIC_EXPIRATION_FLAG) == !expiration.empty());
    if (!expiration.empty()) CHECK(view(props->expiration) == expiration);
    CHECK(has(AMQP_BASIC_TYPE_FLAG) == !type.empty());
    if (!type.empty()) CHECK(view(props->type) == type);
    CHECK(has(AMQP_BASIC_MESSAGE_ID_FLAG) == !message_id.empty());
    if (!message_id.empty()) CHECK(view(props->message_id) == message_id);
    CHECK(has(AMQP_BASIC_USER_ID_FLAG) == !user.empty());
    if (!user.empty()) CHECK(view(props->user_id) == user);
    CHECK(!has(AMQP_BASIC_PRIORITY_FLAG));
    CHECK(!has(AMQP_BASIC_TIMESTAMP_FLAG));
    CHECK(has(AMQP_BASIC_HEADERS_FLAG) == !headers.empty());
    if (!headers.empty()) {
      REQUIRE(props->headers.num_entries == static_cast<int>(headers.size()));
      for (size_t i = 0; i < headers.size(); ++i) {
        const amqp_table_entry_t& e = props->headers.entries[i];
        CHECK(view(e.key) == headers[i].first);
        REQUIRE(e.value.kind == AMQP_FIELD_KIND_UTF8);
        CHECK(view(e.value.value.bytes) == AmqpConnection::truncated(headers[i].second, 1024));
      }
    }

    std::string got_body;
    for (size_t i = 2; i < frames.size(); ++i) {
      REQUIRE(frames[i].type == AMQP_FRAME_BODY);
      REQUIRE(!frames[i].payload.empty());
      got_body += frames[i].payload;
    }
    CHECK(got_body == body);
    recycle_amqp_pool(&pool);
  }
  empty_amqp_pool(&pool);
}

TEST_CASE("a publish that cannot be encoded is refused and writes nothing") {
  const std::string long_key(256, 'k'), long_id(256, 'i');
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 10; ++i) many.emplace_back("h" + std::to_string(i), std::string(1024, 'v'));
  const std::vector<std::pair<std::string, std::string>> long_name = {{std::string(256, 'n'), "v"}};
  AmqpConnection::Publish base;
  base.routing_key = "q";
  base.body = "body";
  for (int c = 0; c < 5; ++c) {
    AmqpConnection::Publish p = base;
    std::string user;
    size_t frame_max = 131072;
    if (c == 0) p.routing_key = long_key;
    if (c == 1) p.exchange = long_key;
    if (c == 2) p.correlation_id = long_id;
    if (c == 3) p.headers = &many, frame_max = 4096;   // 10 KiB of headers in a 4 KiB frame
    if (c == 4) p.headers = &long_name;
    std::string out = "kept";
    INFO("case " << c);
    CHECK(codec::append_publish(&out, p, user, frame_max) ==
          (c < 2 ? codec::Refusal::kName : codec::Refusal::kProperty));
    CHECK(out == "kept");
  }
  // At the limits themselves: accepted.
  AmqpConnection::Publish p = base;
  const std::string key(255, 'k');
  p.routing_key = key;
  p.correlation_id = std::string_view(key);
  std::string out;
  CHECK(codec::append_publish(&out, p, "", 131072) == codec::Refusal::kNone);
}

TEST_CASE("hand-written acks and requeues decode with rabbitmq-c's own decoder") {
  amqp_pool_t pool;
  init_amqp_pool(&pool, 4096);
  for (uint64_t tag : {uint64_t{1}, uint64_t{300}, uint64_t{1} << 40, ~uint64_t{0}}) {
    for (bool requeue : {false, true}) {
      std::string out;
      if (requeue) codec::append_requeue(&out, 3, tag);
      else codec::append_ack(&out, 3, tag);
      const std::vector<Frame> frames = split(out, 4096);
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].type == AMQP_FRAME_METHOD);
      CHECK(frames[0].channel == 3);
      std::string method = frames[0].payload;
      const uint32_t id = be(method, 0, 4);
      void* decoded = nullptr;
      REQUIRE(amqp_decode_method(id, &pool, amqp_bytes_t{method.size() - 4, method.data() + 4}, &decoded) ==
              AMQP_STATUS_OK);
      if (requeue) {
        REQUIRE(id == AMQP_BASIC_REJECT_METHOD);
        CHECK(static_cast<amqp_basic_reject_t*>(decoded)->delivery_tag == tag);
        CHECK(static_cast<amqp_basic_reject_t*>(decoded)->requeue == 1);
      } else {
        REQUIRE(id == AMQP_BASIC_ACK_METHOD);
        CHECK(static_cast<amqp_basic_ack_t*>(decoded)->delivery_tag == tag);
        CHECK(static_cast<amqp_basic_ack_t*>(decoded)->multiple == 0);
      }
      recycle_amqp_pool(&pool);
    }
  }
  empty_amqp_pool(&pool);
}

namespace {

amqp_bytes_t text(const std::string& s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }

// A content header as rabbitmq-c writes it: class, weight, body size, properties.
std::string reference_header(amqp_basic_properties_t& props, uint64_t body_size) {
  std::string out(12, '\0');
  out[0] = 0, out[1] = 60;
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<char>(body_size >> (56 - 8 * i));
  std::string room(65536, '\0');
  const int n = amqp_encode_properties(AMQP_BASIC_CLASS, &props, amqp_bytes_t{room.size(), room.data()});
  REQUIRE(n >= 0);
  return out + room.substr(0, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("content headers rabbitmq-c writes are read by hand with the same fields, other header kinds skipped") {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::string> keep;   // what the property views point into
    keep.reserve(64);
    const auto s = [&](size_t max) -> amqp_bytes_t {
      keep.push_back(random_string(rng, max));
      return text(keep.back());
    };
    amqp_basic_properties_t props{};
    for (amqp_flags_t flag : {AMQP_BASIC_CONTENT_TYPE_FLAG, AMQP_BASIC_CONTENT_ENCODING_FLAG, AMQP_BASIC_HEADERS_FLAG,
                              AMQP_BASIC_DELIVERY_MODE_FLAG, AMQP_BASIC_PRIORITY_FLAG, AMQP_BASIC_CORRELATION_ID_FLAG,
                              AMQP_BASIC_REPLY_TO_FLAG, AMQP_BASIC_EXPIRATION_FLAG, AMQP_BASIC_MESSAGE_ID_FLAG,
                              AMQP_BASIC_TIMESTAMP_FLAG, AMQP_BASIC_TYPE_FLAG, AMQP_BASIC_USER_ID_FLAG,
                              AMQP_BASIC_APP_ID_FLAG, AMQP_BASIC_CLUSTER_ID_FLAG})
      if (rng() % 2) props._flags |= flag;
    props.content_type = s(30), props.content_encoding = s(10), props.correlation_id = s(255);
    props.reply_to = s(120), props.expiration = s(8), props.message_id = s(40), props.type = s(20);
    props.user_id = s(20), props.app_id = s(20), props.cluster_id = s(20);
    props.delivery_mode = 2, props.priority = 5, props.timestamp = rng();
    // Headers of every kind, strings among them (what x-death and friends look like).
    std::vector<amqp_table_entry_t> entries(rng() % 8), inner(2);
    std::vector<amqp_field_value_t> array(3);
    inner[0].key = s(10), inner[0].value.kind = AMQP_FIELD_KIND_UTF8, inner[0].value.value.bytes = s(10);
    inner[1].key = s(10), inner[1].value.kind = AMQP_FIELD_KIND_I64, inner[1].value.value.i64 = 7;
    for (auto& a : array) a.kind = AMQP_FIELD_KIND_UTF8, a.value.bytes = s(5);
    std::vector<std::pair<std::string, std::string>> strings;
    for (auto& e : entries) {
      e.key = s(20);
      static const uint8_t kinds[] = {AMQP_FIELD_KIND_BOOLEAN, AMQP_FIELD_KIND_I8, AMQP_FIELD_KIND_U8,
                                      AMQP_FIELD_KIND_I16, AMQP_FIELD_KIND_U16, AMQP_FIELD_KIND_I32,
                                      AMQP_FIELD_KIND_U32, AMQP_FIELD_KIND_I64, AMQP_FIELD_KIND_U64,
                                      AMQP_FIELD_KIND_F32, AMQP_FIELD_KIND_F64, AMQP_FIELD_KIND_DECIMAL,
                                      AMQP_FIELD_KIND_UTF8, AMQP_FIELD_KIND_UTF8, AMQP_FIELD_KIND_ARRAY,
                                      AMQP_FIELD_KIND_TIMESTAMP, AMQP_FIELD_KIND_TABLE, AMQP_FIELD_KIND_VOID,
                                      AMQP_FIELD_KIND_BYTES};
      e.value.kind = kinds[rng() % std::size(kinds)];
      e.value.value.u64 = rng();
      if (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES) e.value.value.bytes = s(300);
      if (e.value.kind == AMQP_FIELD_KIND_ARRAY) e.value.value.array = {3, array.data()};
      if (e.value.kind == AMQP_FIELD_KIND_TABLE) e.value.value.table = {2, inner.data()};
      if (e.value.kind == AMQP_FIELD_KIND_UTF8)
        strings.emplace_back(view(e.key), view(e.value.value.bytes));
    }
    props.headers = {static_cast<int>(entries.size()), entries.data()};
    const uint64_t body_size = rng();
    const std::string header = reference_header(props, body_size);

    codec::ContentHeader h;
    REQUIRE(codec::read_content_header(header, &h));
    CHECK(h.body_size == body_size);
    CHECK(h.flags == props._flags);
    const auto has = [&](amqp_flags_t flag) { return (props._flags & flag) != 0; };
    CHECK(h.correlation_id == (has(AMQP_BASIC_CORRELATION_ID_FLAG) ? view(props.correlation_id) : ""));
    CHECK(h.reply_to == (has(AMQP_BASIC_REPLY_TO_FLAG) ? view(props.reply_to) : ""));
    CHECK(h.user_id == (has(AMQP_BASIC_USER_ID_FLAG) ? view(props.user_id) : ""));
    std::vector<std::pair<std::string, std::string>> got;
    REQUIRE(codec::for_each_string_header(h.headers, [&](std::string_view k, std::string_view v) {
      got.emplace_back(k, v);
    }));
    CHECK(got == (has(AMQP_BASIC_HEADERS_FLAG) ? strings : decltype(strings){}));

    // Cut short anywhere, it is refused, never read past its end.
    const size_t cut = rng() % header.size();
    const std::string shorter = header.substr(0, cut);
    codec::ContentHeader c;
    const bool whole = codec::read_content_header(shorter, &c) &&
                       codec::for_each_string_header(c.headers, [](std::string_view, std::string_view) {});
    // (A cut right after the last property is a whole header: only when nothing followed.)
    if (whole) CHECK(cut >= 14);
    if (has(AMQP_BASIC_CLUSTER_ID_FLAG)) CHECK(!whole);
  }
}

TEST_CASE("frames split off a stream: whole, incomplete, oversized and badly ended") {
  AmqpConnection::Publish p;
  p.routing_key = "service.greeter";
  const std::string body(10000, 'b');
  p.body = body;
  std::string out;
  REQUIRE(codec::append_publish(&out, p, "u", 4096) == codec::Refusal::kNone);
  // Byte by byte: each frame is incomplete until its last byte.
  size_t at = 0, frames = 0;
  while (at < out.size()) {
    codec::FrameView f;
    long used = 0;
    size_t n = 0;
    while ((used = codec::split_frame(std::string_view(out).substr(at, n), 4096, &f)) == 0) ++n;
    REQUIRE(used > 0);
    CHECK(static_cast<size_t>(used) == n);
    at += n;
    ++frames;
  }
  CHECK(frames == 2 + 3);   // method, header, 10,000 bytes in frames of 4,088
  codec::FrameView f;
  std::string method = out.substr(0, static_cast<size_t>(codec::split_frame(out, 4096, &f)));
  std::string wrong_end = method;
  wrong_end.back() = 'x';
  CHECK(codec::split_frame(wrong_end, 4096, &f) == -1);
  CHECK(codec::split_frame(method, method.size() - 1, &f) == -1);   // over frame_max
  CHECK(codec::split_frame(method, method.size(), &f) == static_cast<long>(method.size()));
  codec::Deliver d;
  uint32_t id = 0;
  std::string_view args;
  REQUIRE(codec::split_method(f.payload, &id, &args));
  CHECK(id == AMQP_BASIC_PUBLISH_METHOD);
  CHECK(!codec::split_method("abc", &id, &args));
  CHECK(!codec::read_deliver(args.substr(0, 3), &d));
}

TEST_CASE("basic.deliver as rabbitmq-c writes it is read by hand") {
  std::mt19937_64 rng(3);
  for (int round = 0; round < 1000; ++round) {
    const std::string tag = random_string(rng, 255), exchange = random_string(rng, 255),
                      key = random_string(rng, 255);
    amqp_basic_deliver_t m{};
    m.consumer_tag = text(tag);
    m.delivery_tag = rng();
    m.redelivered = rng() % 2;
    m.exchange = text(exchange);
    m.routing_key = text(key);
    std::string room(2048, '\0');
    const int n = amqp_encode_method(AMQP_BASIC_DELIVER_METHOD, &m, amqp_bytes_t{room.size(), room.data()});
    REQUIRE(n > 0);
    codec::Deliver d;
    REQUIRE(codec::read_deliver(std::string_view(room).substr(0, static_cast<size_t>(n)), &d));
    CHECK(d.consumer_tag == tag);
    CHECK(d.delivery_tag == m.delivery_tag);
    CHECK(d.redelivered == (m.redelivered != 0));
    CHECK(d.exchange == exchange);
    CHECK(d.routing_key == key);
    CHECK(!codec::read_deliver(std::string_view(room).substr(0, rng() % static_cast<size_t>(n)), &d));
  }
}

TEST_CASE("a content header's further flag words are read past, as rabbitmq-c reads them") {
  // class 60, weight 0, body size 5, flags: correlation id + "more flags",
  // one more flag word (empty), then the correlation id.
  const std::string payload = std::string("\x00\x3c\x00\x00", 4) + std::string(7, '\0') + "\x05" +
                              std::string("\x04\x01\x00\x00", 4) + "\x02id";
  codec::ContentHeader h;
  REQUIRE(codec::read_content_header(payload, &h));
  CHECK(h.body_size == 5);
  CHECK(h.correlation_id == "id");
  CHECK(!codec::read_content_header(payload.substr(0, 16), &h));   // the second word cut short
}
