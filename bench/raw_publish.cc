// raw_publish: the performance floor for tern's event publishing.
//
//   raw_publish -n N [--size 100] [--window 1000] [--json]
//
// Publishes N persistent messages of --size bytes to the durable topic
// exchange bench.events (routing key bench.event), with publisher confirms and
// at most --window unconfirmed, into the durable queue bench.events.raw (bound
// with "#", purged first, deleted at the end so repeated runs don't fill the
// disk).  Reports messages per second; a nack counts as an error.  One
// connection, one channel, one thread, plain rabbitmq-c.
//
// The broker is TERN_AMQP_URL, e.g. amqp://USER:PASSWORD@127.0.0.1:5672/.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <fmt/core.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "raw_amqp.h"

namespace {

using raw::bytes;
using raw::check;
using raw::connect_broker;
using raw::die;
using raw::kChannel;
using raw::view;

using Clock = std::chrono::steady_clock;

constexpr std::string_view kExchange = "bench.events";
constexpr std::string_view kQueue = "bench.events.raw";
constexpr std::string_view kRoutingKey = "bench.event";
constexpr timeval kConfirmTimeout{30, 0};  // give up after this long without a confirm


struct Options {
  long messages = 0;   // -n
  long size = 100;     // --size, bytes per message
  long window = 1000;  // --window, most unconfirmed messages at any time
  bool json = false;
};

[[noreturn]] void usage() { die("usage: raw_publish -n N [--size 100] [--window 1000] [--json]"); }

long parse_long(std::string_view flag, std::string_view text, long min, long max) {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < min || v > max)
    die(fmt::format("{} wants a number in [{}, {}], not '{}'", flag, min, max, text));
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die(fmt::format("{} needs a value", arg));
      return argv[++i];
    };
    if (arg == "-n") o.messages = parse_long(arg, value(), 1, 1'000'000'000);
    else if (arg == "--size") o.size = parse_long(arg, value(), 0, 64 << 20);
    else if (arg == "--window") o.window = parse_long(arg, value(), 1, 1'000'000);
    else if (arg == "--json") o.json = true;
    else usage();
  }
  if (o.messages == 0) usage();
  return o;
}

// Which delivery tags (1..n, in publish order) the broker has confirmed.
class Confirms {
 public:
  explicit Confirms(long n) : settled_(static_cast<size_t>(n) + 1) {}

  // Settles `tag`, or with `multiple` every tag up to it; counts nacks.
  void settle(uint64_t tag, bool multiple, bool nack, uint64_t published) {
    if (tag == 0 || tag > published) die(fmt::format("confirm for unknown delivery tag {}", tag));
    for (uint64_t t = multiple ? lowest_ : tag; t <= tag; ++t) {
      if (settled_[t]) continue;
      settled_[t] = true;
      ++count_;
      nacks_ += nack;
    }
    while (lowest_ < settled_.size() && settled_[lowest_]) ++lowest_;
  }
  long count() const { return count_; }
  long nacks() const { return nacks_; }

 private:
  std::vector<bool> settled_;  // by delivery tag
  uint64_t lowest_ = 1;        // lowest tag not yet settled
  long count_ = 0, nacks_ = 0;
};

// Reads one frame and settles the basic.ack / basic.nack it carries.
void read_confirm(amqp_connection_state_t conn, Confirms& confirms, uint64_t published) {
  amqp_frame_t frame;
  int rc = amqp_simple_wait_frame_noblock(conn, &frame, &kConfirmTimeout);
  if (rc == AMQP_STATUS_TIMEOUT) die("no publisher confirm for 30 s; giving up");
  if (rc != AMQP_STATUS_OK) die(fmt::format("reading from the broker: {}", amqp_error_string2(rc)));
  if (frame.frame_type != AMQP_FRAME_METHOD) die("unexpected content frame");
  const amqp_method_t& method = frame.payload.method;
  switch (method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      auto* m = static_cast<amqp_basic_ack_t*>(method.decoded);
      confirms.settle(m->delivery_tag, m->multiple, /*nack=*/false, published);
      break;
    }
    case AMQP_BASIC_NACK_METHOD: {
      auto* m = static_cast<amqp_basic_nack_t*>(method.decoded);
      confirms.settle(m->delivery_tag, m->multiple, /*nack=*/true, published);
      break;
    }
    default:
      raw::die_if_closed(method);
      die(fmt::format("unexpected {}", amqp_method_name(method.id)));
  }
  amqp_maybe_release_buffers(conn);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  amqp_connection_state_t conn = connect_broker();

  amqp_confirm_select(conn, kChannel);
  check(amqp_get_rpc_reply(conn), "confirm.select");
  amqp_exchange_declare(conn, kChannel, bytes(kExchange), amqp_cstring_bytes("topic"),
                        /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                        amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "exchange.declare");
  amqp_queue_declare(conn, kChannel, bytes(kQueue), /*passive=*/0, /*durable=*/1,
                     /*exclusive=*/0, /*auto_delete=*/0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "queue.declare");
  amqp_queue_bind(conn, kChannel, bytes(kQueue), bytes(kExchange), amqp_cstring_bytes("#"),
                  amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "queue.bind");
  amqp_queue_purge(conn, kChannel, bytes(kQueue));
  check(amqp_get_rpc_reply(conn), "queue.purge");

  const std::string body(static_cast<size_t>(o.size), 'x');
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  props.delivery_mode = AMQP_DELIVERY_PERSISTENT;

  // Publish while fewer than --window are unconfirmed, else wait for confirms.
  Confirms confirms(o.messages);
  uint64_t published = 0;
  const auto start = Clock::now();
  while (confirms.count() < o.messages) {
    while (published < static_cast<uint64_t>(o.messages) &&
           published - confirms.count() < static_cast<uint64_t>(o.window)) {
      int rc = amqp_basic_publish(conn, kChannel, bytes(kExchange), bytes(kRoutingKey),
                                  /*mandatory=*/0, /*immediate=*/0, &props, bytes(body));
      if (rc != AMQP_STATUS_OK) die(fmt::format("publishing: {}", amqp_error_string2(rc)));
      ++published;
    }
    read_confirm(conn, confirms, published);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  amqp_queue_delete(conn, kChannel, bytes(kQueue), /*if_unused=*/0, /*if_empty=*/0);
  check(amqp_get_rpc_reply(conn), "queue.delete");
  amqp_channel_close(conn, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);

  const double throughput = static_cast<double>(o.messages) / seconds;
  const std::string errors =
      confirms.nacks() == 0 ? "" : fmt::format("\"NACK\":{}", confirms.nacks());
  if (o.json) {
    fmt::print("{{\"messages\":{},\"errors\":{{{}}},\"seconds\":{:.6f},\"throughput\":{:.1f}}}\n",
               o.messages, errors, seconds, throughput);
  } else {
    fmt::print("raw_publish: {} persistent messages of {} B, window {}: {:.3f} s, {:.0f} msg/s\n",
               o.messages, o.size, o.window, seconds, throughput);
    fmt::print("errors: {}\n", errors.empty() ? "none" : errors);
  }
  return confirms.nacks() == 0 ? 0 : 1;
}
