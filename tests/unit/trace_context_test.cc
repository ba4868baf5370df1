// W3C traceparent parsing and writing, and head sampling by trace id.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>

#include "tern/envelope.pb.h"
#include "tern/trace.pb.h"

#include "core/trace_context.h"
#include "observability/span_buffer.h"

using tern::detail::format_traceparent;
using tern::detail::parse_traceparent;

namespace {
const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kParent = "00f067aa0ba902b7";
}  // namespace

TEST_CASE("traceparent: the spec's example parses into trace id, parent and sampled flag") {
  auto tp = parse_traceparent("00-" + kTrace + "-" + kParent + "-01");
  REQUIRE(tp);
  CHECK(tp->trace_id == kTrace);
  CHECK(tp->parent_id == kParent);
  CHECK(tp->sampled);
  auto unsampled = parse_traceparent("00-" + kTrace + "-" + kParent + "-00");
  REQUIRE(unsampled);
  CHECK_FALSE(unsampled->sampled);
  // Surrounding whitespace is allowed by the header grammar (OWS).
  CHECK(parse_traceparent(" 00-" + kTrace + "-" + kParent + "-01\t"));
}

TEST_CASE("traceparent: malformed values are ignored, as the spec says") {
  for (const std::string& bad : {
           std::string(),
           "00-" + kTrace + "-" + kParent,                              // no flags
           "00-" + kTrace + "-" + kParent + "-01-extra",                // version 00 has no more fields
           "ff-" + kTrace + "-" + kParent + "-01",                      // version ff is invalid
           "00-" + std::string(32, '0') + "-" + kParent + "-01",        // all-zero trace id
           "00-" + kTrace + "-" + std::string(16, '0') + "-01",         // all-zero parent
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + kParent + "-01",    // uppercase
           "00-" + kTrace.substr(1) + "-" + kParent + "0-01",           // fields shifted
           "0x-" + kTrace + "-" + kParent + "-01",                      // version not hex
           "00-" + kTrace + "-" + kParent + "-0g",                      // flags not hex
       }) {
    INFO(bad);
    CHECK_FALSE(parse_traceparent(bad));
  }
}

TEST_CASE("traceparent: a later version is read by its first four fields") {
  auto tp = parse_traceparent("01-" + kTrace + "-" + kParent + "-01-what-comes-next");
  REQUIRE(tp);
  CHECK(tp->trace_id == kTrace);
  CHECK_FALSE(parse_traceparent("01-" + kTrace + "-" + kParent + "-01x"));
}

TEST_CASE("traceparent: written as version 00, and not at all for ids that are not W3C's") {
  CHECK(format_traceparent(kTrace, kParent) == "00-" + kTrace + "-" + kParent + "-01");
  CHECK(format_traceparent(kTrace, kParent, false) == "00-" + kTrace + "-" + kParent + "-00");
  CHECK(parse_traceparent(format_traceparent(kTrace, kParent))->parent_id == kParent);
  CHECK(format_traceparent("abc", kParent).empty());
  CHECK(format_traceparent(kTrace, "XYZ0000000000000").empty());
  CHECK(format_traceparent(std::string(32, '0'), kParent).empty());
}

TEST_CASE("tracestate: passed on when it is short visible ASCII, else dropped") {
  CHECK(tern::detail::valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7") ==
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  CHECK(tern::detail::valid_tracestate(std::string(513, 'a')).empty());
  CHECK(tern::detail::valid_tracestate("a=b\r\nX-Injected: 1").empty());
}

TEST_CASE("sampling: the decision is the trace id's last 8 hex digits against the rate") {
  using tern::detail::trace_sampled;
  // 0x00000000 is the lowest value: kept at any rate above 0.
  CHECK(trace_sampled("ffffffffffffffffffffffff00000000", 0.01));
  CHECK_FALSE(trace_sampled("ffffffffffffffffffffffff00000000", 0.0));
  // 0x80000000 is exactly half way: kept below a rate of one half, not at it.
  CHECK_FALSE(trace_sampled("00000000000000000000000080000000", 0.5));
  CHECK(trace_sampled("0000000000000000000000007fffffff", 0.5));
  CHECK_FALSE(trace_sampled("000000000000000000000000ffffffff", 0.99));
  CHECK(trace_sampled("000000000000000000000000ffffffff", 1.0));
}

TEST_CASE("sampling: unsampled spans are not kept unless they failed or were slow") {
  using tern::detail::SpanBuffer;
  using tern::detail::SpanRecord;
  using Clock = std::chrono::steady_clock;
  SpanBuffer buffer("test.sampling", true, {.rate = 0.0, .slow = std::chrono::milliseconds(100)});
  auto record = [&](tern::Code code, Clock::time_point start) {
    SpanRecord* r = buffer.open(tern::v1::Span::SERVER, start);
    REQUIRE(r != nullptr);
    r->trace_id = "00000000000000000000000000000001";
    r->span_id = "0000000000000001";
    r->name = "probe";
    r->code = code;
    buffer.commit(r);
  };
  record(tern::Code::kOk, Clock::now());                                      // dropped
  record(tern::Code::kNotFound, Clock::now());                                // kept: failed
  record(tern::Code::kOk, Clock::now() - std::chrono::milliseconds(150));     // kept: slow
  size_t count = 0;
  const std::string wire = buffer.take_batch(Clock::now(), &count);
  CHECK(count == 2);
  // The slots are reused: the next batch holds only what came after.
  record(tern::Code::kInternal, Clock::now());
  buffer.take_batch(Clock::now(), &count);
  CHECK(count == 1);
}

TEST_CASE("span batch: spans encoded by hand parse back with every field as recorded") {
  // The batch is written to the wire format directly, not through protobuf
  // objects: protobuf's own parser must read every field back.
  using tern::detail::SpanBuffer;
  using tern::detail::SpanRecord;
  using Clock = std::chrono::steady_clock;
  SpanBuffer buffer("test.encode", true);
  const auto start = Clock::now() - std::chrono::milliseconds(3);
  SpanRecord* http = buffer.open(tern::v1::Span::HTTP, start);
  REQUIRE(http != nullptr);
  http->trace_id = kTrace;
  http->span_id = kParent;
  http->parent_span_id = "1111111111111111";
  http->name = "POST /greeter/{endpoint}";
  http->code = tern::Code::kNotFound;
  http->error = "no such thing";
  http->peer = "127.0.0.1:5000";
  http->http_status = 404;
  http->http_method = "POST";
  http->http_path = "/greeter/" + std::string(300, 'p');   // a length of two varint bytes
  http->http_route = "/greeter/{endpoint}";
  buffer.commit(http);
  SpanRecord* server = buffer.open(tern::v1::Span::SERVER, start);
  REQUIRE(server != nullptr);
  server->trace_id = kTrace;
  server->span_id = "2222222222222222";
  server->name = "hello";
  server->attempt = 3;
  server->tag_key = "request_id";
  server->tag_value = "r-1";
  buffer.commit(server);

  size_t count = 0;
  const auto now = Clock::now();
  const std::string wire = buffer.take_batch(now, &count);
  REQUIRE(count == 2);
  tern::v1::Event event;
  REQUIRE(event.ParseFromString(wire));
  CHECK(event.type() == "tern.v1.SpanBatch");
  CHECK(event.source() == "test.encode");
  CHECK(event.id().size() == 32);
  CHECK(event.time_unix_ms() > 1'700'000'000'000);
  tern::v1::SpanBatch batch;
  REQUIRE(batch.ParseFromString(event.body()));
  REQUIRE(batch.spans_size() == 2);
  CHECK(batch.dropped() == 0);

  const tern::v1::Span& h = batch.spans(0);
  CHECK(h.trace_id() == kTrace);
  CHECK(h.span_id() == kParent);
  CHECK(h.parent_span_id() == "1111111111111111");
  CHECK(h.service() == "test.encode");
  CHECK(h.name() == "POST /greeter/{endpoint}");
  CHECK(h.kind() == tern::v1::Span::HTTP);
  CHECK(h.code() == tern::v1::NOT_FOUND);
  CHECK(h.error() == "no such thing");
  CHECK(h.peer() == "127.0.0.1:5000");
  CHECK_FALSE(h.instance().empty());
  CHECK(h.duration_us() >= 3000);
  // Wall-clock start: within a second of now, as the system clock says.
  const int64_t wall_now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(std::abs(wall_now_us - h.start_unix_us()) < 1'000'000);
  CHECK(h.tags().size() == 4);
  CHECK(h.tags().at("http.method") == "POST");
  CHECK(h.tags().at("http.path") == "/greeter/" + std::string(300, 'p'));
  CHECK(h.tags().at("http.route") == "/greeter/{endpoint}");
  CHECK(h.tags().at("http.status_code") == "404");

  const tern::v1::Span& s = batch.spans(1);
  CHECK(s.kind() == tern::v1::Span::SERVER);
  CHECK(s.span_id() == "2222222222222222");
  CHECK(s.parent_span_id().empty());
  CHECK(s.code() == tern::v1::OK);
  CHECK(s.error().empty());
  CHECK(s.attempt() == 3);
  CHECK(s.tags().size() == 1);
  CHECK(s.tags().at("request_id") == "r-1");
}
