#include <catch2/catch.hpp>

#include <limits>
#include <set>
#include <vector>

#include "tern/context.h"

using namespace std::chrono_literals;
using tern::Context;

TEST_CASE("a root context has a new trace and span and its deadline") {
  auto before = Context::Clock::now();
  Context ctx = Context::with_timeout(500ms);
  CHECK(ctx.trace_id().size() == 32);
  CHECK(ctx.span_id().size() == 16);
  CHECK(ctx.parent_span_id().empty());
  CHECK(ctx.deadline() >= before + 500ms);
  CHECK(ctx.deadline() <= Context::Clock::now() + 500ms);
  CHECK(Context::with_timeout(1s).trace_id() != ctx.trace_id());
}

TEST_CASE("a child inherits the remaining deadline and never more") {
  Context parent = Context::with_timeout(300ms);
  Context longer = parent.child(10s);
  CHECK(longer.deadline() == parent.deadline());
  Context shorter = parent.child(100ms);
  CHECK(shorter.deadline() < parent.deadline());
  CHECK(shorter.deadline() <= Context::Clock::now() + 100ms);
}

TEST_CASE("a child continues the trace with the parent's span as its parent") {
  Context parent = Context::with_timeout(1s);
  parent.set_metadata("user", "42");
  Context child = parent.child(1s);
  CHECK(child.trace_id() == parent.trace_id());
  CHECK(child.parent_span_id() == parent.span_id());
  CHECK(child.span_id() != parent.span_id());
  CHECK(child.metadata().at("user") == "42");
}

TEST_CASE("remaining time is never negative and expiry is reported") {
  Context ctx = Context::with_deadline(Context::Clock::now() - 5ms);
  CHECK(ctx.expired());
  CHECK(ctx.remaining() == 0ms);
  Context live = Context::with_timeout(1h);
  CHECK_FALSE(live.expired());
  CHECK(live.remaining() > 59min);
}

TEST_CASE("unix-millisecond deadlines round-trip through the wire form") {
  Context ctx = Context::with_timeout(1500ms);
  int64_t wire = ctx.deadline_unix_ms();
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(wire - now_ms > 1400);
  CHECK(wire - now_ms <= 1500);
  Context back = Context::from_wire(wire, ctx.trace_id(), "s", "p", "id", "caller", {});
  auto drift = back.deadline() - ctx.deadline();
  CHECK(std::chrono::abs(drift) < 3ms);
  CHECK(back.trace_id() == ctx.trace_id());
  CHECK(back.request_id() == "id");
  CHECK(back.declared_caller() == "caller");
  CHECK(back.caller().empty());   // nothing verified it
}

TEST_CASE("a context from the wire without a trace starts one") {
  Context c = Context::from_wire(1, "", "", "", "id", "", {});
  CHECK(c.trace_id().size() == 32);
  CHECK(c.expired());
}

TEST_CASE("cancelling a parent cancels its children but not the other way round") {
  Context parent = Context::with_timeout(1s);
  Context child = parent.child(1s);
  Context sibling = parent.child(1s);
  child.cancel();
  CHECK(child.cancelled());
  CHECK_FALSE(parent.cancelled());
  CHECK_FALSE(sibling.cancelled());
  parent.cancel();
  CHECK(sibling.cancelled());
}

TEST_CASE("cancel hooks run once and a parent's cancel reaches a child's hooks") {
  Context parent = Context::with_timeout(1s);
  Context child = parent.child(1s);
  int ran = 0, removed_ran = 0;
  child.on_cancel([&] { ++ran; });
  auto h = child.on_cancel([&] { ++removed_ran; });
  child.remove_on_cancel(h);
  parent.cancel();
  child.cancel();
  CHECK(ran == 1);
  CHECK(removed_ran == 0);
  int late = 0;
  child.on_cancel([&] { ++late; });  // already cancelled: runs at once
  CHECK(late == 1);
}

TEST_CASE("trace and span ids are lowercase hex, and every digit of them varies") {
  std::vector<std::set<char>> trace_digits(32), span_digits(16);
  for (int i = 0; i < 400; ++i) {
    const std::string t = tern::new_trace_id(), s = tern::new_span_id();
    REQUIRE(t.size() == 32);
    REQUIRE(s.size() == 16);
    for (size_t k = 0; k < t.size(); ++k) trace_digits[k].insert(t[k]);
    for (size_t k = 0; k < s.size(); ++k) span_digits[k].insert(s[k]);
  }
  for (const auto* digits : {&trace_digits, &span_digits})
    for (const std::set<char>& at : *digits) {
      for (char c : at) CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
      CHECK(at.size() == 16);   // 400 draws: each of the 16 digits turns up at every position
    }
}

TEST_CASE("a root context's cancel hooks run once each, a removed one never, a late one at once") {
  Context root = Context::with_timeout(1s);
  int ran = 0, removed_ran = 0, other = 0;
  root.on_cancel([&] { ++ran; });
  const uint64_t h = root.on_cancel([&] { ++removed_ran; });
  root.on_cancel([&] { ++other; });
  root.remove_on_cancel(h);
  root.cancel();
  root.cancel();   // a second cancel finds no hooks left
  CHECK(ran == 1);
  CHECK(other == 1);
  CHECK(removed_ran == 0);
  int late = 0;
  const uint64_t late_handle = root.on_cancel([&] { ++late; });   // already cancelled: runs at once
  CHECK(late == 1);
  root.cancel();
  root.remove_on_cancel(late_handle);
  CHECK(late == 1);
  // A copy shares the state: cancelling the copy runs the original's hooks.
  Context second = Context::with_timeout(1s);
  int via_copy = 0;
  second.on_cancel([&] { ++via_copy; });
  Context copy = second;
  copy.cancel();
  CHECK(via_copy == 1);
  CHECK(second.cancelled());
}

// Found by tests/fuzz/rpc_envelope.cc: a caller's deadline_unix_ms of
// 3.4e16 overflowed the conversion to nanoseconds (UBSan: signed integer
// overflow in std::chrono), giving a deadline anywhere, the past included.
TEST_CASE("a deadline from the wire too far from now for the clocks is clamped, never wrapped") {
  for (int64_t far : {int64_t{33696230400000000}, int64_t{1} << 62, std::numeric_limits<int64_t>::max()}) {
    Context ctx = Context::from_wire(far, "", "", "", "r", "c", {});
    INFO(far);
    CHECK_FALSE(ctx.expired());
    CHECK(ctx.remaining() > std::chrono::hours(24 * 365 * 100));
  }
  for (int64_t past : {int64_t{-33696230400000000}, std::numeric_limits<int64_t>::min()}) {
    INFO(past);
    CHECK(Context::from_wire(past, "", "", "", "r", "c", {}).expired());
  }
}
