// W3C traceparent parsing and writing, and head sampling by trace id.
#include <catch2/catch.hpp>

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
