// A Loop is one OS thread running Boost.Fiber fibers around one AMQP
// connection. It is the only user of that connection: rabbitmq-c is not
// thread-safe, and every call into it happens on the loop's thread, between
// fiber switches, so frames of different fibers never interleave.
//
// When no fiber is ready, the loop's scheduler sleeps in poll() on the
// connection's socket and an eventfd (cross-thread wake-ups), never longer
// than the next fiber timer or one second, so heartbeats keep flowing while
// handlers are parked.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <map>
#include <unordered_map>
#include <vector>

#include <poll.h>

#include <boost/fiber/all.hpp>

#include "transport/amqp/connection.h"
#include "rpc/client/resilience.h"
#include "tern/call.h"
#include "tern/options.h"
#include "tern/trace.pb.h"

namespace tern::detail {

class Loop;
class LoopScheduler;

// Runs in its own fiber on the loop for every delivery from the request
// queue. It must end by acking the delivery (Loop::reply_and_ack or
// Loop::ack), unless the loop is stopping.
using RequestHandler = std::function<void(Loop&, Message&&)>;
// Runs in its own fiber for every event delivered to subscription `index`;
// it must end with Loop::ack or Loop::retry_event.
using EventHandler = std::function<void(Loop&, Message&&, size_t index)>;

class Loop final : public Transport, private AmqpConnection::Sink {
 public:
  // name: sent as `from` on outgoing requests.
  Loop(Options options, std::string name);
  ~Loop() override;

  // Before start(): also consume `queue` (declared durable) with the given
  // prefetch, handing each delivery to `handler` in a new fiber.
  void serve(std::string queue, int prefetch, RequestHandler handler);
  // Before start(), after serve(): also consume these subscription queues
  // (each bound to tern.events with its pattern).
  struct Subscription {
    std::string queue;
    std::string pattern;
    std::string exchange;   // a topic exchange: tern.events, tern.traces
  };
  void subscribe(std::vector<Subscription> subscriptions, EventHandler handler);

  // Starts the thread, connects, declares and consumes. Returns once ready;
  // throws std::runtime_error (with the broker's reason) on failure.
  void start();

  // Thread-safe. Runs fn in a new fiber on this loop.
  void post(std::function<void()> fn);

  // Thread-safe. Cancels the request consumer; deliveries already received
  // still run. Returns at once.
  void stop_consuming();

  // Thread-safe. Closes the connection (unacked deliveries go back to the
  // queue) and joins the thread. Idempotent.
  void shutdown();

  // Handler fibers currently running. Thread-safe.
  int in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  uint64_t late_replies() const { return late_replies_.load(std::memory_order_relaxed); }

  // The loop whose thread is calling, or null.
  static Loop* current();

  // --- loop thread only ---
  Result<std::string> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                           std::string body, const CallOptions& opts) override;
  Error publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                std::string body) override;
  // Publishes a serialized tern.v1.Response to the request's reply_to;
  // false if it cannot (no reply_to, no connection).
  bool reply(const Message& request, const std::string& response);
  void reply_error(const Message& request, const Error& error);
  // Publishes the reply to the request's reply_to, then acks the request.
  void reply_and_ack(const Message& request, const std::string& response);
  // Acks a request without replying (one that cannot be answered).
  void ack(const Message& request);
  // Copies a message that cannot be processed to the service's dead-letter
  // queue, with the reason in its headers. The caller still acks it.
  void dead_letter(const Message& m, std::string_view reason);
  // For a redelivered request: requeues it with its delivery count, or past
  // Options::max_deliveries dead-letters it, and acks this copy. Returns
  // whether it did (then the request must not be handled now).
  bool count_redelivery(const Message& m);
  // After an event handler failed: to the next retry queue (its delay),
  // or past Options::event_attempts to the subscription's dead-letter
  // queue, with the error in a header; then acks the delivery.
  void retry_event(const Message& m, size_t index, const std::string& error);
  const Options& options() const { return options_; }
  // Answers a request the full queue refused with RESOURCE_EXHAUSTED.
  void refuse_overflow(const Message& m);
  // While a handler runs, its context can be cancelled by the caller's
  // cancel notice (loop thread only).
  void track(const std::string& request_id, Context* ctx);
  void untrack(const std::string& request_id);
  // "<service>.dead-letter": where unprocessable requests are kept.
  std::string dead_letter_queue() const { return queue_ + ".dead-letter"; }
  const std::string& name() const { return name_; }
  size_t max_message_bytes() const { return static_cast<size_t>(options_.max_message_kb) * 1024; }

  // Parks the calling fiber until `fd` is ready for `events` (POLLIN,
  // POLLOUT), `deadline` passes, cancel_waits(fd) is called or the loop
  // stops; the scheduler polls it with the broker sockets. Returns poll()'s
  // revents, 0 if the fd did not become ready. Loop thread only.
  short wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline);
  // Ends every wait_fd on `fd` (they return 0). Loop thread only.
  void cancel_waits(int fd);
  // Runs fn in a new fiber on this loop. Loop thread only.
  void spawn(std::function<void()> fn);
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // Tracing: keeps `span` (stamped with this loop's service and instance)
  // for the next batch sent to tern.traces, about once a second. Past
  // kMaxSpans waiting, or with tracing off, it is dropped and counted.
  // Never blocks. Loop thread only.
  void record_span(v1::Span&& span);
  bool tracing() const { return tracing_; }

  // Scheduler hooks (see loop.cc).
  void wait_for_io(std::chrono::steady_clock::time_point until) noexcept;
  void wake() noexcept;
  void check_io_while_busy() noexcept;
  // Makes the parked IO fiber ready; `input`: it should read the socket.
  void wake_io(bool input) noexcept;
  void set_scheduler(LoopScheduler* sched) { sched_ = sched; }

 private:
  struct PendingCall;
  struct PendingConfirm;
  struct FdWait;

  // AmqpConnection::Sink
  void on_message(Message&& m) override { dispatch(std::move(m)); }
  void on_confirm(uint64_t tag, bool multiple, bool ack) override;

  // One attempt of a call: publish, wait until `deadline`, decode.
  Result<std::string> attempt(const Context& ctx, std::string_view service, std::string_view endpoint,
                              std::string body, std::chrono::steady_clock::time_point deadline,
                              uint32_t attempt_number, const std::string& idempotency_key,
                              const std::string& span_id);
  Error publish_confirmed(const Context& ctx, std::string_view type, std::string_view routing_key,
                          std::string body, const std::string& span_id);
  Result<std::string> call_with_retries(const Context& ctx, std::string_view service,
                                        std::string_view endpoint, std::string body, const CallOptions& opts);
  void send_cancel(std::string_view service, const std::string& request_id);
  void cancel_request(const std::string& request_id);
  void cancel_pending(const std::string& id);
  void log_transitions(CircuitBreaker& breaker, std::string_view service, std::string_view endpoint);
  void thread_main(std::promise<void>* ready);
  void setup();  // connect, declare, consume, on the first node that takes it; throws
  void setup_on(const std::string& url);
  void connection_lost();
  void try_reconnect();
  void io_fiber();
  bool pump();   // reads every available frame; false when the connection is gone
  void dispatch(Message&& m);
  void fail_all_pending(const Error& error);
  void complete(PendingCall* pc);
  void run_posted();
  void flush_spans();   // one SpanBatch to tern.traces, when due
  // Adds the fd waits to pollfds_; wakes those poll() found ready.
  void add_fd_waits();
  void wake_fd_waits(size_t first);

  const Options options_;
  const std::string name_;
  std::string queue_;
  int prefetch_ = 0;
  RequestHandler handler_;
  std::vector<Subscription> subscriptions_;
  EventHandler event_handler_;

  std::vector<std::string> urls_;   // Options::amqp_urls()
  size_t url_index_ = 0;             // where the next (re)connect starts; the node in use
  std::thread thread_;
  int event_fd_ = -1;
  std::unique_ptr<AmqpConnection> conn_;      // publishes; consumes direct reply-to
  std::unique_ptr<AmqpConnection> consumer_;  // consumes and acks requests (services only)
  std::vector<AmqpConnection*> connections() const;
  bool ack_flush_due() const;
  LoopScheduler* sched_ = nullptr;
  boost::fibers::context* parked_io_ = nullptr;   // the IO fiber while it waits for input
  bool input_ready_ = true;                       // the socket may have input to read
  std::chrono::steady_clock::time_point last_pump_{};
  std::chrono::milliseconds idle_wait_{1000};
  bool broken_ = false;                           // the connection failed
  std::string broken_reason_;

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cancel_requested_{false};
  bool consuming_ = false;
  bool consume_cancelled_ = false;   // stop_consuming() was called: never consume again
  uint64_t generation_ = 0;          // bumped by every (re)connect
  int reconnect_attempt_ = 0;
  std::chrono::steady_clock::time_point next_reconnect_{};

  const bool tracing_;
  std::string instance_;
  std::vector<v1::Span> spans_;
  uint64_t spans_dropped_ = 0;
  std::chrono::steady_clock::time_point last_span_flush_{};
  std::vector<FdWait*> fd_waits_;
  std::vector<pollfd> pollfds_;
  std::unordered_map<std::string, PendingCall*> pending_;
  std::unordered_map<std::string, Context*> running_;   // handlers by request id
  std::map<uint64_t, PendingConfirm*> confirms_;
  RetryBudget retry_budget_;
  CircuitBreakers breakers_;   // by delivery tag on the event channel
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> late_replies_{0};
  boost::fibers::fiber::id io_id_;
  std::unique_ptr<boost::fibers::pooled_fixedsize_stack> stacks_;
};

}  // namespace tern::detail
