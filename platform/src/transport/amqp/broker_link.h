// The broker link: a reactor thread's two AMQP connections to one node of
// the broker (publishing and consuming apart, so a memory or disk alarm that
// blocks publishers never stops acks), failover over the URLs given,
// reconnects with backoff, the IO fiber, and a dispatch table of consumers
// by consumer tag that the caller, the server and the subscriber register
// into.
//
// Reactor thread only, except request_stop_consuming(). Nothing here knows
// what a request or an event is.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/fiber/future.hpp>

#include "runtime/reactor.h"
#include "transport/amqp/connection.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

struct LinkOptions {
  std::vector<std::string> urls;   // one or more nodes of one cluster
  int heartbeat_s = 10;
  std::string name;                // the connections' names on the broker
  // Requests and replies announced larger than this are not read into
  // memory (AmqpConnection::limit_bodies): answered too large, as before.
  size_t max_body_bytes = SIZE_MAX;
};

class BrokerLink final : public IoSource, private AmqpConnection::Sink {
 public:
  // Runs in the IO fiber for each delivery to the consumer; must not block
  // (hand long work to a fiber of its own).
  using Consumer = std::function<void(Message&&)>;

  BrokerLink(Reactor& reactor, LinkOptions options, topology::Spec spec);
  ~BrokerLink() override;

  // Before connect(): who gets deliveries to `tag`, returned mandatory
  // publishes, confirms on the event channel, and the news of a lost
  // connection (everything waiting on it must fail).
  void on_consumer(std::string tag, Consumer consumer) { consumers_[std::move(tag)] = std::move(consumer); }
  void on_return(Consumer fn) { on_return_ = std::move(fn); }
  void on_confirm(std::function<void(uint64_t tag, bool multiple, bool ack)> fn) { on_confirm_ = std::move(fn); }
  void on_lost(std::function<void(const std::string& reason)> fn) { on_lost_.push_back(std::move(fn)); }
  // A channel of the publishing connection was closed by the broker (a
  // channel error) and opened again: what waited on it (replies to requests
  // sent on kChannel, confirms on kEventChannel) will not come.
  void on_channel_lost(std::function<void(amqp_channel_t, const std::string& reason)> fn) {
    on_channel_lost_.push_back(std::move(fn));
  }
  // Called when the thread is about to sleep (busy=false) or every so
  // often while it is busy: a chance to batch output (span batches).
  void on_idle(std::function<void(bool busy)> fn) { on_idle_ = std::move(fn); }

  // Connects to the first node that takes the whole topology and starts
  // the IO fiber. Blocks the thread; throws std::runtime_error.
  void connect();
  // Once the reactor is stopping (it waits until then): ends the IO fiber
  // and closes the connections; unacked deliveries go back to their queues,
  // and the on_lost callbacks fail what still waits.
  void close();

  // Thread-safe: cancels the request and subscription consumers, for good.
  void request_stop_consuming();

  bool broken() const { return broken_; }
  const std::string& broken_reason() const { return broken_reason_; }
  // Bumped by every (re)connect, and when the consuming channel is opened
  // again; a delivery carries the one it came on.
  uint64_t generation() const { return generation_; }
  // The broker blocked the publishing connection (a memory or disk alarm):
  // what is published now waits in our buffer until the alarm clears. Calls
  // and events should fail fast instead. The broker says so only once the
  // connection publishes during the alarm.
  bool blocked() const { return blocked_; }
  // "the broker blocked publishing: low on memory" or the like.
  std::string blocked_reason() const;

  // Queues a publish on the publishing connection: its confirm tag on the
  // event channel, 1 on the others, 0 if it was not queued (refusal()).
  uint64_t publish(const AmqpConnection::Publish& p);
  // Why the last publish() returned 0: the link is down, or the output
  // buffer is full (AmqpConnection::kMaxOutputBytes).
  const std::string& refusal() const { return refusal_; }
  // Acks a delivery, if it came on the current connection (after a
  // reconnect the broker has requeued it already).
  void ack(const Message& m);
  // Gives a delivery back to its queue now (same generation rule as ack).
  void requeue(const Message& m);
  // Writes what is buffered now, publishes before acks.
  void flush_now();
  // The broker user this link logs in as (empty while it is down): the
  // user_id of everything it publishes.
  const std::string& user() const { return publisher_ ? publisher_->user() : kNobody; }
  // Bytes waiting to be written on the publishing connection.
  size_t output_bytes() const;

 private:
  // AmqpConnection::Sink
  void on_message(Message&& m) override;
  void on_confirm(uint64_t tag, bool multiple, bool ack) override;
  void on_blocked(AmqpConnection& c, bool blocked, const std::string& reason) override;
  void on_consumer_cancelled(AmqpConnection& c, const std::string& tag) override;
  void on_channel_closed(AmqpConnection& c, amqp_channel_t ch, const std::string& why) override;
  // IoSource
  void before_sleep(std::vector<pollfd>* fds, Clock::time_point* wake_at) noexcept override;
  void while_busy(std::vector<pollfd>* fds) noexcept override;
  void polled(const pollfd* fds, size_t n, bool busy) noexcept override;

  // Both connections, on the first node from `first` on that takes the
  // whole topology. Blocks the calling thread; throws. Touches nothing of
  // this object, so it can run on a thread of its own.
  struct Connected {
    std::unique_ptr<AmqpConnection> publisher, consumer;
    bool consuming = false;
    size_t url_index = 0;
  };
  static Connected connect_any(const LinkOptions& options, const topology::Spec& spec, size_t first,
                               bool consume);
  void install(Connected&& c);
  void setup();   // connect_any on this thread (before serving)
  void connection_lost();
  void try_reconnect();
  void io_fiber();
  bool pump();
  // The earliest heartbeat_due() of the connections; max() when broken.
  Clock::time_point heartbeat_due() const;
  // Acks are held up to kAckDelay (or kAckBatchBytes) to leave in one write;
  // overdue: twice that long.
  static constexpr auto kAckDelay = std::chrono::milliseconds(1);
  static constexpr size_t kAckBatchBytes = 4096;
  bool ack_flush_due() const { return acks_waited(kAckDelay); }
  bool ack_overdue() const { return acks_waited(2 * kAckDelay); }
  bool acks_waited(Clock::duration d) const {
    return consumer_->output_bytes() >= kAckBatchBytes || Clock::now() - consumer_->output_since() >= d;
  }
  void wake_io(bool input) noexcept;
  // The connections there are, publisher first; on the stack, since the
  // reactor asks several times per wake-up.
  struct Connections {
    AmqpConnection* at[2] = {nullptr, nullptr};
    size_t n = 0;
    AmqpConnection* const* begin() const { return at; }
    AmqpConnection* const* end() const { return at + n; }
  };
  Connections connections() const;

  Reactor& reactor_;
  const LinkOptions options_;
  const topology::Spec spec_;
  std::unordered_map<std::string, Consumer> consumers_;
  Consumer on_return_;
  std::function<void(uint64_t, bool, bool)> on_confirm_;
  std::vector<std::function<void(const std::string&)>> on_lost_;
  std::vector<std::function<void(amqp_channel_t, const std::string&)>> on_channel_lost_;
  std::function<void(bool)> on_idle_;

  size_t url_index_ = 0;   // where the next (re)connect starts; the node in use
  static inline const std::string kNobody;
  std::unique_ptr<AmqpConnection> publisher_;   // publishes; consumes direct reply-to
  std::unique_ptr<AmqpConnection> consumer_;    // consumes and acks (services only)
  bool broken_ = false;
  std::string broken_reason_;
  bool blocked_ = false;
  std::string blocked_by_;    // the broker's reason
  std::string refusal_;
  // Channel errors recovered in the current window; past a few, the
  // connection is failed instead (a declaration that fails each time).
  int reopens_ = 0;
  Clock::time_point reopen_window_{};
  uint64_t generation_ = 0;
  int reconnect_attempt_ = 0;
  boost::fibers::future<Connected> connecting_;   // a reconnect under way on its own thread
  Clock::time_point next_reconnect_{};
  bool consuming_ = false;
  bool consume_cancelled_ = false;
  std::atomic<bool> cancel_requested_{false};

  boost::fibers::fiber io_;
  boost::fibers::context* parked_io_ = nullptr;   // the IO fiber while it waits
  bool input_ready_ = true;
  // Which connections (bits by connections()'s order) to read in the next
  // pump: the ones the last polls saw readable, or all of them when the
  // wake-up came from anywhere else.
  static constexpr unsigned kReadAll = ~0u;
  unsigned readable_ = kReadAll;
};

}  // namespace tern::detail
