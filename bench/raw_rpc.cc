// raw_rpc: the performance floor tern's RPC is compared against.
//
// A bare rabbitmq-c request/reply pair on the same broker: no envelope, no
// fibers, one connection, one channel and one thread per process.
//
//   raw_rpc server --queue NAME [--prefetch 100]
//       Echoes every request on NAME back to its reply_to, with the same
//       correlation_id, then acks it.  Prints "ready" once consuming; runs
//       until SIGTERM/SIGINT.
//   raw_rpc client --queue NAME -n N -c C [--size 100] [--json]
//       Sends N requests of --size bytes keeping C in flight, replies coming
//       back over direct reply-to (amq.rabbitmq.reply-to), and reports
//       throughput and latency percentiles (--json: one line of JSON).
//
// The broker is TERN_AMQP_URL, e.g. amqp://USER:PASSWORD@127.0.0.1:5672/.
//
// Frames are read one by one with amqp_simple_wait_frame_noblock rather than
// amqp_consume_message: a delivery and a basic.return (mandatory request with
// no queue) then go through the same code, with no extra copies, and anything
// else (channel.close, ...) is reported instead of being misread.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
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
using std::chrono::milliseconds;

constexpr std::string_view kReplyTo = "amq.rabbitmq.reply-to";
constexpr std::string_view kContentType = "application/octet-stream";
constexpr milliseconds kProgressTimeout{30'000};  // client gives up after this without a reply
constexpr milliseconds kStopCheck{200};           // how often the server looks at its stop flag

volatile std::sig_atomic_t g_stop = 0;


void disconnect(amqp_connection_state_t conn) {
  amqp_channel_close(conn, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

// Next frame, or false after `timeout` without one.  (Heartbeats never show
// up here: rabbitmq-c handles them, and we negotiate none anyway.)
bool wait_frame(amqp_connection_state_t conn, amqp_frame_t& frame, milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  int rc = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) return false;
  if (rc != AMQP_STATUS_OK) die(fmt::format("reading from the broker: {}", amqp_error_string2(rc)));
  return true;
}

// A message from the broker: a delivery, or one of our mandatory publishes
// handed back as unroutable (basic.return).
struct Message {
  bool returned = false;
  std::string return_reason;                        // returned only, e.g. "312 NO_ROUTE"
  uint64_t delivery_tag = 0;                        // delivery only
  const amqp_basic_properties_t* props = nullptr;  // valid until amqp_maybe_release_buffers
  std::string body;
};

// Reads the next message into `msg`; false if none began within `timeout`.
// Dies on anything else the channel may carry (channel.close, ...).
bool read_message(amqp_connection_state_t conn, milliseconds timeout, Message& msg) {
  amqp_frame_t frame;
  if (!wait_frame(conn, frame, timeout)) return false;
  if (frame.frame_type != AMQP_FRAME_METHOD) die("content frame outside a message");
  const amqp_method_t& method = frame.payload.method;
  switch (method.id) {
    case AMQP_BASIC_DELIVER_METHOD:
      msg.returned = false;
      msg.delivery_tag = static_cast<amqp_basic_deliver_t*>(method.decoded)->delivery_tag;
      break;
    case AMQP_BASIC_RETURN_METHOD: {
      auto* m = static_cast<amqp_basic_return_t*>(method.decoded);
      msg.returned = true;
      msg.return_reason = fmt::format("{} {}", m->reply_code, view(m->reply_text));
      break;
    }
    default:
      raw::die_if_closed(method);
      die(fmt::format("unexpected {}", amqp_method_name(method.id)));
  }
  // The content follows at once: a header frame, then body frames up to body_size.
  if (!wait_frame(conn, frame, kProgressTimeout) || frame.frame_type != AMQP_FRAME_HEADER)
    die("message without a content header");
  msg.props = static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded);
  const uint64_t size = frame.payload.properties.body_size;
  msg.body.clear();
  while (msg.body.size() < size) {
    if (!wait_frame(conn, frame, kProgressTimeout) || frame.frame_type != AMQP_FRAME_BODY)
      die("truncated message body");
    msg.body += view(frame.payload.body_fragment);
  }
  return true;
}

// ---------------------------------------------------------------- options

struct Options {
  std::string mode;  // "server" or "client"
  std::string queue;
  long requests = 0;     // -n
  long concurrency = 1;  // -c
  long size = 100;       // --size, bytes per request
  long prefetch = 100;   // --prefetch
  bool json = false;
};

[[noreturn]] void usage() {
  die("usage: raw_rpc server --queue NAME [--prefetch 100]\n"
      "       raw_rpc client --queue NAME -n N -c C [--size 100] [--json]");
}

long parse_long(std::string_view flag, std::string_view text, long min, long max) {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < min || v > max)
    die(fmt::format("{} wants a number in [{}, {}], not '{}'", flag, min, max, text));
  return v;
}

Options parse_options(int argc, char** argv) {
  if (argc < 2) usage();
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die(fmt::format("{} needs a value", arg));
      return argv[++i];
    };
    if (arg == "--queue") o.queue = value();
    else if (arg == "-n") o.requests = parse_long(arg, value(), 1, 1'000'000'000);
    else if (arg == "-c") o.concurrency = parse_long(arg, value(), 1, 1'000'000);
    else if (arg == "--size") o.size = parse_long(arg, value(), 0, 64 << 20);
    else if (arg == "--prefetch") o.prefetch = parse_long(arg, value(), 0, 65535);
    else if (arg == "--json") o.json = true;
    else usage();
  }
  if ((o.mode != "server" && o.mode != "client") || o.queue.empty()) usage();
  if (o.mode == "client" && o.requests == 0) die("client needs -n");
  return o;
}

// ---------------------------------------------------------------- server

void on_signal(int) { g_stop = 1; }

int run_server(const Options& o) {
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  amqp_connection_state_t conn = connect_broker();
  amqp_queue_declare(conn, kChannel, bytes(o.queue), /*passive=*/0, /*durable=*/1,
                     /*exclusive=*/0, /*auto_delete=*/0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "queue.declare");
  amqp_basic_qos(conn, kChannel, 0, static_cast<uint16_t>(o.prefetch), 0);
  check(amqp_get_rpc_reply(conn), "basic.qos");
  amqp_basic_consume(conn, kChannel, bytes(o.queue), amqp_empty_bytes, /*no_local=*/0,
                     /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "basic.consume");
  fmt::print("ready\n");
  std::fflush(stdout);

  Message msg;
  bool warned = false;
  while (g_stop == 0) {
    // A short wait, so a signal (which rabbitmq-c's poll sleeps through) is seen soon.
    if (!read_message(conn, kStopCheck, msg)) continue;
    if (msg.returned) die("unexpected basic.return");  // we never publish mandatory
    if (msg.props->_flags & AMQP_BASIC_REPLY_TO_FLAG) {
      amqp_basic_properties_t props{};
      props._flags = msg.props->_flags & AMQP_BASIC_CORRELATION_ID_FLAG;
      props.correlation_id = msg.props->correlation_id;
      int rc = amqp_basic_publish(conn, kChannel, amqp_empty_bytes, msg.props->reply_to,
                                  /*mandatory=*/0, /*immediate=*/0, &props, bytes(msg.body));
      if (rc != AMQP_STATUS_OK) die(fmt::format("publishing a reply: {}", amqp_error_string2(rc)));
    } else if (!warned) {
      fmt::print(stderr, "raw_rpc: request without reply_to; acked and dropped\n");
      warned = true;
    }
    if (amqp_basic_ack(conn, kChannel, msg.delivery_tag, /*multiple=*/0) != AMQP_STATUS_OK)
      die("basic.ack failed");
    amqp_maybe_release_buffers(conn);  // frees the frames msg.props pointed into
  }
  disconnect(conn);
  return 0;
}

// ---------------------------------------------------------------- client

struct Result {
  std::vector<double> latencies_us;    // one per answered request
  std::map<std::string, long> errors;  // "TIMEOUT", "RETURNED" -> count
  double seconds = 0;
};

// Sends `count` requests keeping `concurrency` in flight: publishes that many
// at once, then one more per reply.  Correlation ids continue from `next_id`.
Result run_requests(amqp_connection_state_t conn, const Options& o, long count, uint64_t& next_id) {
  const std::string body(static_cast<size_t>(o.size), 'x');
  const uint64_t first_id = next_id;
  std::vector<Clock::time_point> sent_at(count);  // by id - first_id; {} once answered
  Result result;
  result.latencies_us.reserve(count);

  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
                 AMQP_BASIC_REPLY_TO_FLAG;
  props.content_type = bytes(kContentType);
  props.reply_to = bytes(kReplyTo);
  char id_text[24];

  long sent = 0, done = 0;
  auto send_one = [&] {
    uint64_t id = next_id++;
    auto [end, ec] = std::to_chars(id_text, id_text + sizeof id_text, id);
    props.correlation_id = {static_cast<size_t>(end - id_text), id_text};
    sent_at[sent++] = Clock::now();
    int rc = amqp_basic_publish(conn, kChannel, amqp_empty_bytes, bytes(o.queue),
                                /*mandatory=*/1, /*immediate=*/0, &props, bytes(body));
    if (rc != AMQP_STATUS_OK) die(fmt::format("publishing a request: {}", amqp_error_string2(rc)));
  };

  const auto start = Clock::now();
  while (sent < std::min(count, o.concurrency)) send_one();
  Message msg;
  while (done < sent) {
    if (!read_message(conn, kProgressTimeout, msg)) {
      fmt::print(stderr, "raw_rpc: no reply for {} s; is the server running? giving up\n",
                 kProgressTimeout.count() / 1000);
      result.errors["TIMEOUT"] += sent - done;
      break;
    }
    const auto now = Clock::now();
    uint64_t id = 0;
    std::string_view id_text = view(msg.props->correlation_id);
    if (!(msg.props->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
        std::from_chars(id_text.data(), id_text.data() + id_text.size(), id).ec != std::errc{} ||
        id < first_id || id >= first_id + sent || sent_at[id - first_id] == Clock::time_point{})
      die(fmt::format("reply with unknown correlation_id '{}'", id_text));
    auto& t = sent_at[id - first_id];
    if (msg.returned) {
      if (result.errors["RETURNED"]++ == 0)
        fmt::print(stderr, "raw_rpc: REQUEST RETURNED ({}): no queue '{}'? start the server\n",
                   msg.return_reason, o.queue);
    } else if (msg.body.size() != body.size()) {
      die(fmt::format("reply of {} bytes to a request of {}", msg.body.size(), body.size()));
    } else {
      result.latencies_us.push_back(std::chrono::duration<double, std::micro>(now - t).count());
    }
    t = {};
    ++done;
    amqp_maybe_release_buffers(conn);
    if (sent < count) send_one();
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

// Nearest-rank percentile of sorted values (0 if none).
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

int run_client(const Options& o) {
  amqp_connection_state_t conn = connect_broker();
  // Direct reply-to: consume the pseudo-queue, without acks, before the first
  // request names it as reply_to.
  amqp_basic_consume(conn, kChannel, bytes(kReplyTo), amqp_empty_bytes, /*no_local=*/0,
                     /*no_ack=*/1, /*exclusive=*/0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "basic.consume amq.rabbitmq.reply-to");

  uint64_t next_id = 0;
  if (long warmup = std::min(o.requests / 10, 1000L); warmup > 0) {
    Result w = run_requests(conn, o, warmup, next_id);
    if (!w.errors.empty()) die("warm-up failed");
  }
  Result r = run_requests(conn, o, o.requests, next_id);
  disconnect(conn);

  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  const double throughput = static_cast<double>(r.latencies_us.size()) / r.seconds;
  const double p50 = percentile(r.latencies_us, 0.50), p90 = percentile(r.latencies_us, 0.90),
               p99 = percentile(r.latencies_us, 0.99), max = percentile(r.latencies_us, 1.0);
  std::string errors;
  for (const auto& [code, n] : r.errors)
    errors += fmt::format("{}\"{}\":{}", errors.empty() ? "" : ",", code, n);
  if (o.json) {
    fmt::print(
        "{{\"requests\":{},\"errors\":{{{}}},\"seconds\":{:.6f},\"throughput\":{:.1f},"
        "\"p50_us\":{:.1f},\"p90_us\":{:.1f},\"p99_us\":{:.1f},\"max_us\":{:.1f}}}\n",
        o.requests, errors, r.seconds, throughput, p50, p90, p99, max);
  } else {
    fmt::print("raw_rpc: {} requests of {} B, {} in flight: {:.3f} s, {:.0f} req/s\n", o.requests,
               o.size, o.concurrency, r.seconds, throughput);
    fmt::print("latency us: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}\n", p50, p90, p99, max);
    fmt::print("errors: {}\n", errors.empty() ? "none" : errors);
  }
  return r.errors.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  return o.mode == "server" ? run_server(o) : run_client(o);
}
