#include "rpc/client/client_filters.h"

#include <boost/fiber/operations.hpp>
#include <fmt/format.h>

#include "observability/telemetry.h"
#include "tern/log.h"

namespace tern::detail::client_filters {
namespace {

using Clock = std::chrono::steady_clock;

[[gnu::noinline]] void log_transitions(CircuitBreaker& breaker, const std::string& name, const OutgoingCall& call) {
  while (auto t = breaker.take_transition()) {
    if (t->from == CircuitBreaker::State::kClosed) metric::circuits_open(name).add(1);
    if (t->to == CircuitBreaker::State::kClosed) metric::circuits_open(name).add(-1);
    log::warn("{}: circuit for {}/{} went from {} to {}", name, call.service, call.endpoint,
              state_name(t->from), state_name(t->to));
  }
}

// Cold paths, out of line: fmt::format's inline buffer would otherwise
// sit in every filter's stack frame, a page more per parked call.
[[gnu::noinline, gnu::cold]] Error not_before_deadline(const OutgoingCall& call) {
  return Error{Code::kDeadlineExceeded, fmt::format("deadline passed before calling {}/{}", call.service, call.endpoint)};
}

[[gnu::noinline, gnu::cold]] Error cancelled() { return Error{Code::kCancelled, "the caller's context was cancelled"}; }

[[gnu::noinline, gnu::cold]] Error circuit_open(CircuitBreaker& breaker, const std::string& name,
                                                const OutgoingCall& call) {
  log_transitions(breaker, name, call);
  Error e = Error{Code::kUnavailable, fmt::format("circuit open for {}/{}: failing fast", call.service, call.endpoint)}
                .with_param("circuit", "open");
  e.retryable = false;   // nothing was sent; a retry now would fail fast too
  return e;
}

// The error a call ends with after n attempts; `why` is appended (n > 1).
[[gnu::noinline, gnu::cold]] Error after_attempts(Error e, int n, const char* why) {
  if (n > 1 || *why != '\0') e.message += fmt::format(" (after {} attempts{})", n, why);
  e.params["attempts"] = std::to_string(n);
  return e;
}

[[gnu::noinline]] void record_client_span(SpanBuffer& spans, const Context& ctx, const OutgoingCall& call,
                                          const SpanClock& clock, const Result<std::string>& r) {
  SpanRecord* span = spans.open(v1::Span::CLIENT, clock.start);
  if (span == nullptr) return;
  span->trace_id = ctx.trace_id();
  span->span_id = call.span_id;
  span->parent_span_id = ctx.span_id();
  span->name.assign(call.service).append(1, '/').append(call.endpoint);
  span->code = r.code();
  if (!r.ok()) span->error = r.error().message;
  span->attempt = call.attempt;
  span->peer = call.service;
  spans.commit(span);
}

}  // namespace

ClientFilter metrics(std::string name) {
  return [name = std::move(name)](const Context& ctx, OutgoingCall& call, const ClientNext& next) {
    const SpanClock clock;
    Result<std::string> r = next(ctx, call);
    metric::client_calls(name, call.service, r.code()).inc();
    metric::client_latency(name, call.service).observe_us(static_cast<uint64_t>(clock.elapsed_us()));
    return r;
  };
}

ClientFilter deadline() {
  return [](const Context& ctx, OutgoingCall& call, const ClientNext& next) -> Result<std::string> {
    if (ctx.cancelled()) return cancelled();
    const auto now = Clock::now();
    call.deadline = std::min(ctx.deadline(), now + call.options->timeout);
    if (call.deadline <= now) return not_before_deadline(call);
    return next(ctx, call);
  };
}

ClientFilter retries(RetryBudget& budget, std::string name) {
  return [&budget, name = std::move(name)](const Context& ctx, OutgoingCall& call,
                                           const ClientNext& next) -> Result<std::string> {
    const CallOptions& opts = *call.options;
    const auto deadline = call.deadline;
    budget.record_call(Clock::now());
    const int max_attempts = std::max(1, opts.max_attempts);
    for (int n = 1;; ++n) {
      auto now = Clock::now();
      call.attempt = static_cast<uint32_t>(n);
      call.deadline = deadline;
      call.span_id.clear();
      if (opts.attempt_timeout.count() > 0) call.deadline = std::min(deadline, now + opts.attempt_timeout);
      const bool attempt_bounded = call.deadline < deadline;
      if (n > 1) metric::client_retries(name, call.service).inc();
      Result<std::string> r = next(ctx, call);
      if (r.ok()) return r;
      const Code code = r.code();
      const bool attempt_timed_out = code == Code::kDeadlineExceeded && attempt_bounded;
      const bool idempotent = opts.idempotent || !opts.idempotency_key.empty();
      // A request that went out and got no answer may have run: repeat it
      // only when running it twice is safe.
      const bool retryable = r.error().local.outcome_unknown
                                 ? idempotent
                                 : r.error().retryable || (idempotent && attempt_timed_out);
      if (!retryable) return after_attempts(std::move(r.error()), n, "");
      if (n >= max_attempts) return after_attempts(std::move(r.error()), n, "");
      now = Clock::now();
      if (!budget.try_spend_retry(now)) return after_attempts(std::move(r.error()), n, "; retry budget exhausted");
      auto delay = backoff_delay(Backoff{}, n, next_random_u64());
      if (now + delay >= deadline) return after_attempts(std::move(r.error()), n, "; no time left to retry");
      boost::this_fiber::sleep_for(delay);
      if (ctx.cancelled()) return cancelled();
    }
  };
}

ClientFilter breaker(CircuitBreakers& breakers, std::string name) {
  return [&breakers, name = std::move(name)](const Context& ctx, OutgoingCall& call,
                                             const ClientNext& next) -> Result<std::string> {
    const CircuitBreakers::Lease lease = breakers.get(call.service, call.endpoint);
    CircuitBreaker& breaker = *lease;
    if (!breaker.allow(Clock::now())) return circuit_open(breaker, name, call);
    log_transitions(breaker, name, call);
    Result<std::string> r = next(ctx, call);
    // The downstream is unhealthy if it cannot be reached, times out or
    // fails internally; our own lost broker link says nothing about it, and
    // neither does a service with no queue yet (nothing to protect, and an
    // open circuit would keep failing it for open_for once it is up).
    const Code code = r.code();
    const bool healthy = r.ok() || r.error().local.link_failed || r.error().local.no_route ||
                         !(code == Code::kUnavailable || code == Code::kDeadlineExceeded || code == Code::kInternal);
    breaker.record(healthy, Clock::now());
    log_transitions(breaker, name, call);
    return r;
  };
}

ClientFilter tracing(SpanBuffer& spans) {
  return [&spans](const Context& ctx, OutgoingCall& call, const ClientNext& next) {
    if (!spans.tracing()) return next(ctx, call);
    const SpanClock clock;
    call.span_id = new_span_id();
    Result<std::string> r = next(ctx, call);
    record_client_span(spans, ctx, call, clock, r);
    return r;
  };
}

}  // namespace tern::detail::client_filters
