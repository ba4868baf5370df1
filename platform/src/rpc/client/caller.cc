#include "rpc/client/caller.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/envelope_codec.h"
#include "core/utf8.h"
#include "core/wire.h"
#include "rpc/client/client_filters.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"
#include "transport/amqp/topology.h"

namespace tern::detail {
namespace {

// Cold paths, out of line, so fmt's buffers stay out of the frame of every
// parked call.
[[gnu::noinline, gnu::cold]] Error too_late(const OutgoingCall& call) {
  return Error{Code::kDeadlineExceeded, fmt::format("deadline passed before calling {}/{}", call.service, call.endpoint)};
}
[[gnu::noinline, gnu::cold]] Error too_many(size_t pending) {
  return Error{Code::kResourceExhausted, fmt::format("{} calls already await replies (TERN_MAX_IN_FLIGHT)", pending)};
}
[[gnu::noinline, gnu::cold]] Error too_big(const OutgoingCall& call, size_t size, size_t limit) {
  return Error{Code::kInvalidArgument, fmt::format("request to {}/{} is {} bytes, over the {} byte limit",
                                                   call.service, call.endpoint, size, limit)}
      .with_param("limit_bytes", std::to_string(limit));
}
[[gnu::noinline, gnu::cold]] Error no_reply(const OutgoingCall& call, std::chrono::milliseconds budget) {
  return Error{Code::kDeadlineExceeded,
               fmt::format("no reply from {}/{} within {} ms", call.service, call.endpoint, budget.count())}
      .with_param("service", std::string(call.service))
      .with_param("endpoint", std::string(call.endpoint));
}
[[gnu::noinline, gnu::cold]] Error reply_too_big(const OutgoingCall& call, size_t size, size_t limit) {
  return Error{Code::kInternal, fmt::format("reply from {}/{} is {} bytes, over the {} byte limit", call.service,
                                            call.endpoint, size, limit)};
}
[[gnu::noinline, gnu::cold]] Error link_down(const std::string& reason) {
  return Error{Code::kUnavailable, reason}.with_param("outcome", "not sent").with_local({.link_failed = true});
}
[[gnu::noinline, gnu::cold]] Error bad_name(const OutgoingCall& call) {
  return Error{Code::kInvalidArgument,
               fmt::format("a service name of {} bytes and an endpoint of {}: each must be 1 to 255 bytes of UTF-8",
                           call.service.size(), call.endpoint.size())}
      .with_param("outcome", "not sent");
}
// Retryable (UNAVAILABLE): nothing was sent, and the alarm may clear.
[[gnu::noinline, gnu::cold]] Error blocked(const OutgoingCall& call, const BrokerLink& link) {
  return link_down(fmt::format("{}; the call to {}/{} was not sent", link.blocked_reason(), call.service,
                               call.endpoint));
}

}  // namespace

// A call waiting for its reply. Lives on the caller's fiber stack; the
// caller parks itself with wait_until(deadline) and the IO fiber (or a
// failure) sets `done` and makes it ready. All on the reactor's thread, so
// no locks: Boost's fiber mutex and condition variable would also cost each
// parked call ~5 KiB more stack (their spinlock reserves a random_device).
struct Caller::PendingCall {
  boost::fibers::context* waiter = nullptr;
  bool done = false;
  bool cancelled = false;
  bool failed = false;   // error holds why; otherwise reply holds a tern.v1.Response
  Error error;
  std::string reply;
  size_t reply_bytes = 0;   // as announced: over the limit, `reply` was not kept
  uint64_t seq = 0;         // names the call to a cancel hook in two words, not its id
};

Caller::Caller(Reactor& reactor, BrokerLink& link, SpanBuffer& spans, CallerOptions options,
               const std::vector<ClientFilter>& user_filters)
    : reactor_(reactor),
      link_(link),
      options_(std::move(options)),
      wire_([this](const Context& ctx, OutgoingCall& call) { return send(ctx, call); }),
      breakers_(CircuitBreakerOptions{.open_for = std::chrono::milliseconds(options_.circuit_open_ms)}) {
  chain_.push_back(client_filters::metrics(options_.name));
  chain_.push_back(client_filters::deadline());
  chain_.push_back(client_filters::retries(retry_budget_, options_.name));
  chain_.push_back(client_filters::breaker(breakers_, options_.name));
  chain_.push_back(client_filters::tracing(spans));
  // Called, not copied: state they hold is shared by every thread.
  for (const ClientFilter& f : user_filters)
    chain_.push_back([&f](const Context& ctx, OutgoingCall& call, const ClientNext& next) {
      return f(ctx, call, next);
    });
  link_.on_consumer(topology::kReplyTag, [this](Message&& m) { on_reply(std::move(m)); });
  link_.on_return([this](Message&& m) { on_return(std::move(m)); });
  link_.on_lost([this](const std::string& reason) { fail_all(reason); });
  // Direct reply-to answers on the channel that sent the request: with the
  // channel gone, the broker drops those replies.
  link_.on_channel_lost([this](amqp_channel_t ch, const std::string& reason) {
    if (ch == AmqpConnection::kChannel) fail_all(reason + "; replies to the requests sent on it are dropped");
  });
}

Result<std::string> Caller::call(const Context& ctx, std::string_view service, std::string_view endpoint,
                                 std::string body, const CallOptions& opts) {
  OutgoingCall call;
  call.service = service;
  call.endpoint = endpoint;
  call.body = std::move(body);
  call.options = &opts;
  return run_chain(chain_, wire_, ctx, call);
}

Result<std::string> Caller::send(const Context& ctx, OutgoingCall& call) {
  const auto deadline = call.deadline;
  const auto budget = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (budget.count() <= 0) return too_late(call);
  // Names become the routing key and the type property: AMQP short
  // strings. Refused here, typed, before anything reaches the connection.
  // Both become a routing key and protobuf string fields: a server could
  // not parse an envelope holding invalid UTF-8, and would dead-letter it.
  if (call.service.empty() || call.service.size() > 255 || call.endpoint.size() > 255 ||
      !utf8::valid(call.service) || !utf8::valid(call.endpoint))
    return bad_name(call);
  if (link_.broken()) return link_down(link_.broken_reason());
  if (link_.blocked()) return blocked(call, link_);
  if (pending_.size() >= static_cast<size_t>(options_.max_in_flight)) return too_many(pending_.size());

  std::string id = new_trace_id();
  // A root call starts its trace; an attempt's span comes from its filter.
  const std::string trace_id = ctx.trace_id().empty() ? new_trace_id() : std::string();
  const std::string span_id = call.span_id.empty() ? new_span_id() : std::string();
  envelope::RequestFields f;
  f.id = id;
  f.service = call.service;
  f.endpoint = call.endpoint;
  f.body = call.body;
  f.deadline_unix_ms = to_unix_ms(deadline);
  f.trace_id = trace_id.empty() ? std::string_view(ctx.trace_id()) : trace_id;
  f.span_id = span_id.empty() ? std::string_view(call.span_id) : span_id;
  f.parent_span_id = ctx.span_id();
  f.from = options_.name;
  f.attempt = call.attempt == 0 ? 1 : call.attempt;
  f.idempotency_key = call.options->idempotency_key;
  // Written into this caller's buffer, which publish copies out before the
  // fiber waits: the call's own metadata after the context's, so it wins.
  std::string& wire = wire_buffer_;
  envelope::encode_request(f, &wire, ctx.metadata(), call.metadata);
  if (wire.size() > options_.max_message_bytes) {
    const size_t n = wire.size();
    std::string().swap(wire_buffer_);
    return too_big(call, n, options_.max_message_bytes);
  }

  PendingCall pc;
  pc.seq = next_seq_++;
  pending_.emplace(std::string_view(id), &pc);
  const std::string expiration = std::to_string(budget.count());
  AmqpConnection::Publish p;
  p.routing_key = call.service;
  p.body = wire;
  p.correlation_id = id;
  p.reply_to = topology::kReplyTo;
  p.expiration_ms = expiration;
  p.type = call.endpoint;
  p.mandatory = true;
  const bool published = link_.publish(p) != 0;
  // The buffer is done with (publish copied it): a large one is not kept.
  if (wire_buffer_.capacity() > kKeptWireBytes) std::string().swap(wire_buffer_);
  if (!published) {
    pending_.erase(id);
    return link_down(link_.refusal());
  }

  pc.waiter = boost::fibers::context::active();
  // An explicit cancel, from any thread, ends the wait with CANCELLED.
  // (Two words fit inside a std::function: no allocation per call.)
  const uint64_t hook = ctx.on_cancel([this, seq = pc.seq] { reactor_.post([this, seq] { cancel_pending(seq); }); });
  while (!pc.done && Clock::now() < deadline) pc.waiter->wait_until(deadline);
  ctx.remove_on_cancel(hook);
  if (!pc.done || pc.cancelled) {
    // The caller gives up: tell the service, so the handler's context
    // reports cancellation where the request still runs.
    pending_.erase(id);
    send_cancel(call.service, id);
    if (pc.cancelled) return std::move(pc.error);
    return no_reply(call, budget);
  }
  if (pc.failed) return std::move(pc.error);
  if (pc.reply_bytes > options_.max_message_bytes) return reply_too_big(call, pc.reply_bytes, options_.max_message_bytes);
  return decode_response(std::move(pc.reply), call.service, call.endpoint);
}

void Caller::on_reply(Message&& m) {
  auto it = pending_.find(m.correlation_id);
  if (it == pending_.end()) {
    late_replies_.fetch_add(1, std::memory_order_relaxed);
    log::debug("{}: dropped a late reply for {}", options_.name, m.correlation_id);
    return;
  }
  PendingCall* pc = it->second;
  pending_.erase(it);
  pc->reply = std::move(m.body);
  pc->reply_bytes = m.body_size;
  complete(pc);
}

void Caller::on_return(Message&& m) {
  auto it = pending_.find(m.correlation_id);
  if (it == pending_.end()) return;
  PendingCall* pc = it->second;
  pending_.erase(it);
  pc->failed = true;
  pc->error = Error{Code::kUnavailable, fmt::format("no route to '{}' ({} {}): is the service running?",
                                                    m.routing_key, m.reply_code, m.reply_text)}
                  .with_param("service", m.routing_key)
                  .with_local({.no_route = true});
  complete(pc);
}

void Caller::fail_all(const std::string& reason) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, pc] : pending) {
    pc->failed = true;
    pc->error = Error{Code::kUnavailable, reason + "; the request was sent, its outcome is unknown"}
                    .with_param("outcome", "unknown")
                    .with_local({.link_failed = true, .outcome_unknown = true});
    pc->error.retryable = false;   // unless the call is idempotent: the retry step decides
    complete(pc);
  }
}

void Caller::cancel_pending(uint64_t seq) {
  // Rare: a scan, so the hot path's hook holds no copy of the id.
  auto it = std::find_if(pending_.begin(), pending_.end(), [seq](const auto& e) { return e.second->seq == seq; });
  if (it == pending_.end()) return;  // answered meanwhile
  PendingCall* pc = it->second;
  pc->cancelled = true;
  pc->failed = true;
  pc->error = Error{Code::kCancelled, "the call was cancelled by its caller"};
  complete(pc);  // its fiber erases it and passes the cancel on downstream
}

void Caller::send_cancel(std::string_view service, const std::string& request_id) {
  // Best effort: while the broker blocks publishing it would only arrive
  // once the alarm clears, stale, behind everything else.
  if (link_.blocked()) return;
  AmqpConnection::Publish p;
  p.exchange = topology::kCancelExchange;
  p.routing_key = service;
  p.body = request_id;
  p.channel = AmqpConnection::kNoticeChannel;
  link_.publish(p);
}

void Caller::complete(PendingCall* pc) {
  pc->done = true;
  // At its deadline the waiter may already be ready (moved there by the
  // timer) without having run yet; it will see `done` when it does.
  Reactor::ready(pc->waiter);
}

}  // namespace tern::detail
