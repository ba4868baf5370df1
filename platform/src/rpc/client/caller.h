// The caller: a reactor thread's outgoing calls. Each call runs the client
// filter chain (metrics, deadline, retries, breaker, tracing, the user's
// filters) around the wire step, which publishes the tern.v1.Request with
// direct reply-to and parks the calling fiber until its reply, a return
// from the broker, a cancel, a lost link or the attempt's deadline.
//
// Reactor thread only, except late_replies().
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/fiber/context.hpp>

#include "observability/span_buffer.h"
#include "rpc/client/resilience.h"
#include "runtime/reactor.h"
#include "tern/call.h"
#include "tern/filter.h"
#include "transport/amqp/broker_link.h"

namespace tern::detail {

struct CallerOptions {
  std::string name;              // sent as `from`; labels metrics
  int max_in_flight = 10000;     // calls awaiting replies at once
  size_t max_message_bytes = 0;  // requests and replies over this fail
  int circuit_open_ms = 5000;
};

class Caller {
 public:
  // Registers for replies, returns and lost links on `link`. The user's
  // filters are shared with other threads and must outlive the caller.
  Caller(Reactor& reactor, BrokerLink& link, SpanBuffer& spans, CallerOptions options,
         const std::vector<ClientFilter>& user_filters);
  Caller(const Caller&) = delete;
  Caller& operator=(const Caller&) = delete;

  // Transport::call: the whole chain.
  Result<std::string> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                           std::string body, const CallOptions& opts);

  uint64_t late_replies() const { return late_replies_.load(std::memory_order_relaxed); }
  size_t pending() const { return pending_.size(); }

 private:
  struct PendingCall;

  Result<std::string> send(const Context& ctx, OutgoingCall& call);   // the wire step
  void on_reply(Message&& m);
  void on_return(Message&& m);
  void fail_all(const std::string& reason);
  void cancel_pending(uint64_t seq);
  void send_cancel(std::string_view service, const std::string& request_id);
  static void complete(PendingCall* pc);

  Reactor& reactor_;
  BrokerLink& link_;
  const CallerOptions options_;
  std::vector<ClientFilter> chain_;
  const ClientEndpoint wire_;
  // By request id: a view of the id its waiting send() holds, which erases
  // the entry (or sees it erased) before it returns.
  std::unordered_map<std::string_view, PendingCall*> pending_;
  uint64_t next_seq_ = 1;   // PendingCall::seq
  // The Request being sent, reused from call to call; a large one is not kept.
  static constexpr size_t kKeptWireBytes = 64 * 1024;
  std::string wire_buffer_;
  RetryBudget retry_budget_;
  CircuitBreakers breakers_;
  std::atomic<uint64_t> late_replies_{0};
};

}  // namespace tern::detail
