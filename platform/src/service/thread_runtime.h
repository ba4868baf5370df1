// A thread runtime: one OS thread of a service or client, and the parts it
// owns, each one idea:
//   Reactor      fiber scheduler and poller (runtime/)
//   BrokerLink   the AMQP connections, failover, the IO fiber, dispatch (transport/amqp/)
//   SpanBuffer   spans waiting to leave (observability/)
//   Caller       outgoing calls and their filter chain (rpc/client/)
//   Confirms     publisher confirms, for events and republishes (transport/amqp/)
//   Publisher    confirmed event publishes (events/)
//   and for a service: the ServerPipeline with its Responder and
//   Cancellations (rpc/server/), and the Subscriber (events/).
// It wires them together, runs the thread, and is the Transport that calls
// and publishes made on its fibers go through.
//
// Threads: start(), post(), stop_consuming(), shutdown(), in_flight() and
// late_replies() are thread-safe; call() and publish() are for its fibers.
#pragma once

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "events/publisher.h"
#include "events/subscriber.h"
#include "observability/span_buffer.h"
#include "rpc/client/caller.h"
#include "rpc/server/cancellations.h"
#include "rpc/server/definition.h"
#include "rpc/server/pipeline.h"
#include "rpc/server/replay.h"
#include "rpc/server/responder.h"
#include "runtime/reactor.h"
#include "tern/call.h"
#include "tern/options.h"
#include "transport/amqp/broker_link.h"
#include "transport/amqp/confirms.h"

namespace tern::detail {

// What a service thread serves; a client thread has none.
struct Serving {
  const ServiceDefinition* def = nullptr;
  Replay* replay = nullptr;                                  // null: no idempotent replay
  const std::vector<EventSubscription>* subscriptions = nullptr;
  int prefetch = 100;                                        // deliveries in flight on this thread
};

class ThreadRuntime final : public Transport {
 public:
  // name: sent as `from`; call_filters: the user's client filters, shared
  // with the other threads and outliving this one.
  ThreadRuntime(const Options& options, std::string name, const std::vector<ClientFilter>& call_filters,
                Serving serving = {});
  ~ThreadRuntime() override;

  // Starts the thread, connects, declares and consumes. Returns once ready;
  // throws std::runtime_error (with the broker's reason) on failure.
  void start();
  // Runs fn in a new fiber on this thread.
  void post(std::function<void()> fn) { reactor_.post(std::move(fn)); }
  // Cancels the request and event consumers. Handlers already started run
  // on; deliveries read from here on are not started: left unacked, the
  // close requeues them (a handler started after the drain's last look
  // would apply its effect with an ack that never leaves). Returns at once.
  void stop_consuming() {
    dispatching_.store(false, std::memory_order_release);
    link_.request_stop_consuming();
  }
  // Closes the connections (unacked deliveries go back to their queues),
  // fails waiting calls, lets handler fibers end, joins. Idempotent.
  void shutdown();
  // As shutdown(), but waits at most `within` for handler fibers to end.
  // False if some did not: the thread is left running them, detached, and
  // this object must then never be destroyed (its owner leaks it).
  bool shutdown_within(std::chrono::milliseconds within);
  // Cancels the context of every request running on this thread.
  void cancel_running() {
    reactor_.post([this] { cancellations_.cancel_all(); });
  }

  // Handler fibers (requests and events) running now.
  int in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  uint64_t late_replies() const { return caller_.late_replies(); }

  // The runtime whose thread is calling, or null.
  static ThreadRuntime* current();
  Reactor& reactor() { return reactor_; }
  SpanBuffer& spans() { return spans_; }
  bool stopping() const { return reactor_.stopping(); }

  // Transport
  Result<std::string> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                           std::string body, const CallOptions& opts) override;
  Error publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                std::string body) override;
  Error publish_with_id(const Context& ctx, std::string_view event_id, std::string_view type,
                        std::string_view routing_key, std::string body) override;

 private:
  static topology::Spec spec_of(const Options& options, const Serving& serving);
  void thread_main(std::promise<void>* ready);
  void flush_spans(bool busy);
  template <class F>
  void run_handler(F&& fn);
  // A delivery for a handler fiber: its fields swapped into a spare
  // Message, which leaves the connection the spare's buffers to read the
  // next one into, so a steady stream of requests allocates nothing for
  // their Messages and the fiber captures a pointer, not the Message.
  std::unique_ptr<Message> take(Message& delivered);
  void give_back(std::unique_ptr<Message> m);

  const Options options_;
  const std::string name_;
  const topology::Spec spec_;
  Reactor reactor_;
  BrokerLink link_;
  SpanBuffer spans_;
  Confirms confirms_;
  Caller caller_;
  Publisher publisher_;
  std::unique_ptr<Responder> responder_;
  Cancellations cancellations_;
  std::unique_ptr<ServerPipeline> server_;
  std::unique_ptr<Subscriber> subscriber_;
  std::thread thread_;
  std::promise<void> ended_;   // set as the thread's last act
  std::future<void> ended_future_ = ended_.get_future();
  std::atomic<int> in_flight_{0};
  std::atomic<bool> dispatching_{true};
  std::vector<std::unique_ptr<Message>> spare_messages_;   // this thread's only
};

}  // namespace tern::detail
