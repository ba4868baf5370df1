// libFuzzer: the hand-written AMQP reader of the message path
// (transport/amqp/codec) on any bytes, held to rabbitmq-c's decoder. The
// input is a stream of frames, split as a connection splits them; each
// basic.deliver and each content header is read by hand and, where
// rabbitmq-c can decode it too, must give the same fields. (The hand
// reader skips nested tables and arrays by their length, so it may take a
// header whose nested table rabbitmq-c refuses, and it refuses a table
// whose last entry runs past the table's end, which rabbitmq-c reads on
// into what follows; anything else read differently aborts.)
#include <amqp.h>
#include <amqp_framing.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "transport/amqp/codec.h"

namespace codec = tern::detail::amqp_codec;

namespace {

std::string_view view(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

// Aborts naming the line of the field that differs.
#define check(ok)                                                  \
  do {                                                             \
    if (!(ok)) {                                                   \
      std::fprintf(stderr, "amqp_frames: differs at line %d\n", __LINE__); \
      std::abort();                                                \
    }                                                              \
  } while (0)

void deliver(std::string_view args, amqp_pool_t* pool) {
  codec::Deliver d;
  const bool ours = codec::read_deliver(args, &d);
  void* decoded = nullptr;
  const bool theirs = amqp_decode_method(AMQP_BASIC_DELIVER_METHOD, pool,
                                         amqp_bytes_t{args.size(), const_cast<char*>(args.data())},
                                         &decoded) == AMQP_STATUS_OK;
  check(ours == theirs);
  if (!ours) return;
  const auto* m = static_cast<amqp_basic_deliver_t*>(decoded);
  check(d.consumer_tag == view(m->consumer_tag));
  check(d.delivery_tag == m->delivery_tag);
  check(d.redelivered == (m->redelivered != 0));
  check(d.exchange == view(m->exchange));
  check(d.routing_key == view(m->routing_key));
}

void content_header(std::string_view payload, amqp_pool_t* pool) {
  codec::ContentHeader h;
  std::vector<std::pair<std::string, std::string>> ours;
  const bool read = codec::read_content_header(payload, &h) &&
                    codec::for_each_string_header(h.headers, [&](std::string_view k, std::string_view v) {
                      ours.emplace_back(k, v);
                    });
  if (payload.size() < 12) {
    check(!read);
    return;
  }
  // More flag words (bit 0 of the first): rabbitmq-c shifts the third one
  // by 32 bits of a 32-bit number, undefined behaviour, so there is no
  // reference to hold the reader to.
  if (static_cast<unsigned char>(payload[13]) & 1) return;
  void* decoded = nullptr;
  const amqp_bytes_t props{payload.size() - 12, const_cast<char*>(payload.data() + 12)};
  if (amqp_decode_properties(AMQP_BASIC_CLASS, pool, props, &decoded) != AMQP_STATUS_OK) return;
  const auto* p = static_cast<amqp_basic_properties_t*>(decoded);
  const auto has = [&](amqp_flags_t f) { return (p->_flags & f) != 0; };
  // rabbitmq-c reads a header table's last entry past the table's end, into
  // the properties after it; the hand reader refuses such a table. Without
  // headers the two must agree.
  if (!read && has(AMQP_BASIC_HEADERS_FLAG)) return;
  // It does the same inside a nested table or array, where the hand reader
  // (which skips a header table by its length) reads on correctly: the
  // properties after such a table have no reference either.
  if (has(AMQP_BASIC_HEADERS_FLAG))
    for (int i = 0; i < p->headers.num_entries; ++i) {
      const uint8_t kind = p->headers.entries[i].value.kind;
      if (kind == AMQP_FIELD_KIND_TABLE || kind == AMQP_FIELD_KIND_ARRAY) return;
    }
  check(read);
  check(h.correlation_id == (has(AMQP_BASIC_CORRELATION_ID_FLAG) ? view(p->correlation_id) : ""));
  check(h.reply_to == (has(AMQP_BASIC_REPLY_TO_FLAG) ? view(p->reply_to) : ""));
  check(h.user_id == (has(AMQP_BASIC_USER_ID_FLAG) ? view(p->user_id) : ""));
  std::vector<std::pair<std::string, std::string>> theirs;
  if (has(AMQP_BASIC_HEADERS_FLAG))
    for (int i = 0; i < p->headers.num_entries; ++i) {
      const amqp_table_entry_t& e = p->headers.entries[i];
      if (e.value.kind == AMQP_FIELD_KIND_UTF8)
        theirs.emplace_back(view(e.key), view(e.value.value.bytes));
    }
  check(ours == theirs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static amqp_pool_t pool = [] {
    amqp_pool_t p;
    init_amqp_pool(&p, 4096);
    return p;
  }();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  codec::FrameView f;
  while (!in.empty()) {
    const long used = codec::split_frame(in, 4096, &f);
    if (used <= 0) break;   // incomplete or malformed: the connection would wait or fail
    check(static_cast<size_t>(used) == f.payload.size() + codec::kFrameOverhead);
    in.remove_prefix(static_cast<size_t>(used));
    uint32_t id = 0;
    std::string_view args;
    if (f.type == AMQP_FRAME_METHOD && codec::split_method(f.payload, &id, &args) && id == AMQP_BASIC_DELIVER_METHOD)
      deliver(args, &pool);
    else if (f.type == AMQP_FRAME_HEADER)
      content_header(f.payload, &pool);
    recycle_amqp_pool(&pool);
  }
  return 0;
}
