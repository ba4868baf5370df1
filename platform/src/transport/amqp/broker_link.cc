#include "transport/amqp/broker_link.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>

#include "core/ids.h"
#include "transport/amqp/async_declarer.h"
#include "observability/telemetry.h"
#include "tern/log.h"

namespace tern::detail {
namespace {

// After losing a cluster node: the least wait before reconnecting (see
// connection_lost).
constexpr std::chrono::milliseconds kClusterSettle{1000};

// "host:port/vhost" of an AMQP URL, without its user and password: for logs.
std::string broker_address(std::string_view url) {
  url = url.substr(0, url.find('?'));   // (a TLS URL's file names)
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  if (auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  return std::string(url);
}

}  // namespace

BrokerLink::BrokerLink(Reactor& reactor, LinkOptions options, topology::Spec spec)
    : reactor_(reactor), options_(std::move(options)), spec_(std::move(spec)) {
  if (options_.urls.empty()) throw std::invalid_argument("BrokerLink: no broker URL");
  // A random first node, so the instances of a service spread over a cluster.
  url_index_ = static_cast<size_t>(next_random_u64() % options_.urls.size());
}

BrokerLink::~BrokerLink() = default;

void BrokerLink::connect() {
  setup();
  reactor_.set_source(this);
  io_ = boost::fibers::fiber([this] { io_fiber(); });
}

void BrokerLink::close() {
  if (io_.joinable()) io_.join();   // it ends when the reactor stops
  reactor_.set_source(nullptr);
  for (AmqpConnection* c : connections()) c->close();
  broken_ = true;
  broken_reason_ = "the tern runtime is shutting down";
  for (auto& fn : on_lost_) fn(broken_reason_);
  consumer_.reset();
  publisher_.reset();
}

BrokerLink::Connected BrokerLink::connect_any(const LinkOptions& options, const topology::Spec& spec,
                                              size_t first, bool consume) {
  // Every URL once, from `first` on, until one node takes the whole
  // set-up; both connections then live on that node.
  const auto& urls = options.urls;
  std::string errors;
  for (size_t i = 0; i < urls.size(); ++i) {
    const size_t at = (first + i) % urls.size();
    try {
      Connected c;
      c.publisher = std::make_unique<AmqpConnection>(urls[at], options.heartbeat_s, options.name + " publish");
      c.publisher->limit_bodies(options.max_body_bytes, {topology::kReplyTag});
      topology::declare_publisher(*c.publisher, spec);
      if (!spec.service.empty()) {
        c.consumer = std::make_unique<AmqpConnection>(urls[at], options.heartbeat_s, options.name + " consume");
        c.consumer->limit_bodies(options.max_body_bytes, {topology::kRequestTag});
        topology::declare_consumer(*c.consumer, spec);
        if (consume) {
          topology::consume(*c.consumer, spec);
          c.consuming = true;
        }
      }
      c.url_index = at;
      return c;
    } catch (const std::exception& e) {
      if (urls.size() == 1) throw;
      errors += fmt::format("{}{}: {}", errors.empty() ? "" : "; ", broker_address(urls[at]), e.what());
    }
  }
  throw AmqpError(fmt::format("no broker node of {} answered: {}", urls.size(), errors));
}

void BrokerLink::install(Connected&& c) {
  publisher_ = std::move(c.publisher);
  consumer_ = std::move(c.consumer);
  consuming_ = c.consuming;
  url_index_ = c.url_index;
  blocked_ = false;   // a new connection: blocked again once it publishes in an alarm
  ++generation_;
  input_ready_ = true;
  readable_ = kReadAll;
  // From here on this thread writes every frame, heartbeats included (a
  // failure here shows in the IO fiber's next round as a lost connection).
  for (AmqpConnection* conn : connections()) conn->own_heartbeats();
}

void BrokerLink::setup() { install(connect_any(options_, spec_, url_index_, !consume_cancelled_)); }

BrokerLink::Connections BrokerLink::connections() const {
  Connections all;
  if (publisher_) all.at[all.n++] = publisher_.get();   // first: replies leave before their acks
  if (consumer_) all.at[all.n++] = consumer_.get();
  return all;
}

void BrokerLink::connection_lost() {
  broken_ = true;
  consuming_ = false;
  std::string why;
  for (AmqpConnection* c : connections())
    if (c->failed()) why = c->error();
  broken_reason_ = "broker connection lost: " + why;
  const auto& urls = options_.urls;
  // The node may be gone for good: start the next attempt with the next URL.
  url_index_ = (url_index_ + 1) % urls.size();
  log::error("{}: {}; reconnecting{}", options_.name, broken_reason_,
             urls.size() > 1 ? fmt::format(" (first to {})", broker_address(urls[url_index_])) : "");
  for (auto& fn : on_lost_) fn(broken_reason_);
  reconnect_attempt_ = 0;
  next_reconnect_ = Clock::now();
  // With a cluster, the lost node is likely dead, and its quorum queues
  // elect new leaders on the others within about a second. On RabbitMQ 3.10
  // a channel opened before that may take the dead leader from the stale
  // queue record and stall for good: the cluster test saw calls and event
  // confirms stop for minutes (newer brokers look the leader up first,
  // rabbitmq-server#9241). So with several URLs the first attempt waits 1-2 s.
  if (urls.size() > 1) {
    const auto jitter = std::chrono::milliseconds(next_random_u64() % (kClusterSettle.count() + 1));
    next_reconnect_ += kClusterSettle + jitter;
  }
}

void BrokerLink::try_reconnect() {
  if (!connecting_.valid()) {
    if (Clock::now() < next_reconnect_) return;
    // Connecting, logging in and declaring block in rabbitmq-c: they run on
    // a thread of their own, while this one's fibers, HTTP sockets and
    // timers go on. The connections it makes are handed over once ready
    // and used only here from then on.
    boost::fibers::promise<Connected> done;
    connecting_ = done.get_future();
    std::thread([done = std::move(done), options = options_, spec = spec_, first = url_index_,
                 consume = !consume_cancelled_]() mutable {
      try {
        done.set_value(connect_any(options, spec, first, consume));
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    }).detach();
  }
  // Parks this fiber (not the thread) a little at a time, so a stop is seen.
  if (connecting_.wait_for(std::chrono::milliseconds(100)) != boost::fibers::future_status::ready) return;
  auto attempt = std::move(connecting_);
  try {
    Connected c = attempt.get();
    if (consume_cancelled_ && c.consuming && c.consumer) {   // stop_consuming() came meanwhile
      c.consumer->cancel(topology::kRequestTag);
      for (size_t i = 0; i < spec_.subscriptions.size(); ++i) c.consumer->cancel(topology::subscription_tag(i));
      c.consuming = false;
    }
    install(std::move(c));
    broken_ = false;
    metric::reconnects(options_.name).inc();
    log::info("{}: reconnected to the broker at {} after {} attempt(s)", options_.name,
              broker_address(options_.urls[url_index_]), reconnect_attempt_ + 1);
  } catch (const std::exception& e) {
    ++reconnect_attempt_;
    // Exponential backoff with full jitter, 100 ms doubling up to 5 s.
    auto ceiling = std::min<int64_t>(5000, 100LL << std::min(reconnect_attempt_, 6));
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(next_random_u64() % static_cast<uint64_t>(ceiling + 1)));
    next_reconnect_ = Clock::now() + delay;
    if (reconnect_attempt_ == 1 || reconnect_attempt_ % 10 == 0)
      log::warn("{}: reconnect attempt {} failed: {}", options_.name, reconnect_attempt_, e.what());
  }
}

void BrokerLink::request_stop_consuming() {
  cancel_requested_.store(true);
  reactor_.post([] {});   // wakes the thread; the IO fiber sees the flag
}

void BrokerLink::io_fiber() {
  for (;;) {
    if (reactor_.stopping()) break;
    if (cancel_requested_.exchange(false)) {
      consume_cancelled_ = true;
      if (consuming_ && !broken_ && consumer_) {
        consumer_->cancel(topology::kRequestTag);
        for (size_t i = 0; i < spec_.subscriptions.size(); ++i)
          consumer_->cancel(topology::subscription_tag(i));
      }
      consuming_ = false;
    }
    if (broken_) try_reconnect();
    if (!broken_) {
      // Stopped or blocked for 2 heartbeats: the broker has given up on us;
      // what waits in the socket must not run (it is being redelivered).
      bool ok = true;
      for (AmqpConnection* c : connections()) ok = c->wake_up(Clock::now()) && ok;
      if (!ok) {
        connection_lost();
        continue;
      }
      ok = publisher_->flush();
      // Acks due wait behind this wake-up's replies when input is waiting
      // (before_sleep sends them after the replies), unless they are
      // overdue: under steady input they still leave from here.
      if (consumer_ && ack_flush_due() && (!input_ready_ || ack_overdue())) ok = consumer_->flush() && ok;
      // Read before judging the broker silent: what it sent may be waiting.
      const auto now = Clock::now();
      if (heartbeat_due() <= now) {
        input_ready_ = true;
        readable_ = kReadAll;
      }
      if (ok && input_ready_) {
        input_ready_ = false;
        ok = pump();
      }
      for (AmqpConnection* c : connections()) ok = c->keep_heartbeat(now) && ok;
      if (!ok) connection_lost();
    }
    // Sleep until the reactor sees input, room for output, a heartbeat due,
    // a stop, or (disconnected) the next reconnect attempt.
    if (broken_ && connecting_.valid()) continue;   // try_reconnect parked the fiber
    parked_io_ = boost::fibers::context::active();
    if (broken_) {
      parked_io_->wait_until(next_reconnect_);
      parked_io_ = nullptr;
    } else {
      parked_io_->suspend();
    }
  }
}

bool BrokerLink::pump() {
  // Reading never writes (AmqpConnection::poll_messages), so a half-written
  // frame or a backlog of output never holds back input, nor the heartbeat
  // check that input feeds.
  // Only the sockets that have something: a recv() that finds nothing
  // costs a system call on every wake-up.
  bool ok = true;
  const Connections cs = connections();
  const unsigned readable = std::exchange(readable_, 0u);
  for (size_t i = 0; i < cs.n; ++i)
    if ((readable & (1u << i)) != 0 || cs.at[i]->has_buffered_input()) ok = cs.at[i]->poll_messages(*this) && ok;
  return ok;
}

Clock::time_point BrokerLink::heartbeat_due() const {
  auto due = Clock::time_point::max();
  if (broken_) return due;
  for (AmqpConnection* c : connections()) due = std::min(due, c->heartbeat_due());
  return due;
}

void BrokerLink::on_message(Message&& m) {
  if (m.returned) {
    if (on_return_) on_return_(std::move(m));
    return;
  }
  auto it = consumers_.find(m.consumer_tag);
  if (it == consumers_.end()) return;
  m.generation = generation_;
  it->second(std::move(m));
}

void BrokerLink::on_confirm(uint64_t tag, bool multiple, bool ack) {
  if (on_confirm_) on_confirm_(tag, multiple, ack);
}

void BrokerLink::wake_io(bool input) noexcept {
  if (input) {
    input_ready_ = true;
    readable_ = kReadAll;
  }
  if (parked_io_ != nullptr) Reactor::ready(std::exchange(parked_io_, nullptr));
}

uint64_t BrokerLink::publish(const AmqpConnection::Publish& p) {
  if (broken_ || !publisher_) {
    refusal_ = broken_reason_;
    return 0;
  }
  const uint64_t tag = publisher_->publish(p);
  if (tag == 0 && publisher_->failed()) refusal_ = "broker connection lost: " + publisher_->error();
  else if (tag == 0 && !publisher_->refused().empty()) refusal_ = publisher_->refused();
  else if (tag == 0)
    refusal_ = fmt::format("{} bytes wait to be written to the broker, over the {} MiB limit{}",
                           publisher_->output_bytes(), AmqpConnection::kMaxOutputBytes >> 20,
                           blocked_ ? " (" + blocked_reason() + ")" : "");
  return tag;
}

void BrokerLink::ack(const Message& m) {
  if (!broken_ && m.generation == generation_ && consumer_) consumer_->ack(m.delivery_tag);
}

void BrokerLink::requeue(const Message& m) {
  if (!broken_ && m.generation == generation_ && consumer_) consumer_->requeue(m.delivery_tag);
}

void BrokerLink::flush_now() {
  if (broken_) return;
  if (publisher_) publisher_->flush();
  if (consumer_) consumer_->flush();
}

size_t BrokerLink::output_bytes() const { return publisher_ ? publisher_->output_bytes() : 0; }

// Everything the fibers produced leaves in one write, now that none is
// ready. Acks wait up to kAckDelay to leave in batches, off the replies' path.
void BrokerLink::before_sleep(std::vector<pollfd>* fds, Clock::time_point* wake_at) noexcept {
  if (broken_) {
    // The next reconnect: polled() wakes the IO fiber for it.
    if (!connecting_.valid()) *wake_at = std::min(*wake_at, next_reconnect_);
    return;
  }
  if (!publisher_) return;
  // Replies and calls go out first: a span batch due now is encoded after
  // they left, not while they wait in the buffer.
  bool ok = publisher_->flush();
  if (on_idle_) {
    on_idle_(false);
    if (publisher_->has_output()) ok = publisher_->flush() && ok;
  }
  if (consumer_ && consumer_->has_output()) {
    if (ack_flush_due()) ok = consumer_->flush() && ok;
    else *wake_at = std::min(*wake_at, consumer_->output_since() + kAckDelay);
  }
  if (!ok) {
    wake_io(true);   // the IO fiber reports the failure
    *wake_at = Clock::now();
    return;
  }
  // A heartbeat to send or a silence to judge: the thread wakes for it even
  // with nothing else to do (the reactor's idle wait does not bound this).
  *wake_at = std::min(*wake_at, heartbeat_due());
  for (AmqpConnection* c : connections()) {
    short events = POLLIN;
    // Deferred acks are not waiting for the socket: no POLLOUT for those.
    if (c->has_output() && (c != consumer_.get() || ack_flush_due())) events |= POLLOUT;
    fds->push_back(pollfd{c->fd(), events, 0});
  }
}

void BrokerLink::while_busy(std::vector<pollfd>* fds) noexcept {
  if (parked_io_ == nullptr || broken_ || !publisher_) return;
  if (publisher_->has_output() || (consumer_ && consumer_->has_output() && ack_flush_due())) wake_io(false);
  for (AmqpConnection* c : connections()) fds->push_back(pollfd{c->fd(), POLLIN, 0});
  if (on_idle_) on_idle_(true);
}

void BrokerLink::polled(const pollfd* fds, size_t n, bool busy) noexcept {
  if (reactor_.stopping()) {
    wake_io(false);
    return;
  }
  // Disconnected, the IO fiber waits for its next attempt with a fiber
  // timer, and is woken from here too: after a failed attempt (a timed wait
  // on the future another thread fulfilled) that timer was seen never to
  // fire (Boost.Fiber 1.74; its timed waits share per-fiber state, twstatus,
  // with cross-thread notifies), leaving the link down for good. The
  // reactor's periodic wake-ups used to hide this.
  if (broken_) {
    if (!connecting_.valid() && Clock::now() >= next_reconnect_) wake_io(false);
    return;
  }
  bool wake = false, input = false;
  unsigned readable = 0;
  for (size_t i = 0; i < n; ++i) {
    if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) != 0) {
      input = true;
      readable |= 1u << i;
    }
    if ((fds[i].revents & POLLOUT) != 0) wake = true;
  }
  if (busy && n == 0) return;   // the IO fiber runs or the link is down
  if (heartbeat_due() <= Clock::now()) wake = true;   // keep_heartbeat has work
  // Acks due: sent now only when nothing came in. With input, the IO
  // fiber runs first and before_sleep sends them after its replies, so a
  // request that arrives as the ack timer runs out does not wait for them.
  if (!busy && !input && consumer_ && !broken_ && consumer_->has_output() && ack_flush_due()) {
    if (!consumer_->flush()) input = true;
  }
  if (input) {
    // What the poll saw readable, added to what the IO fiber has yet to read.
    input_ready_ = true;
    readable_ |= readable;
  }
  if (wake || input) wake_io(false);
}

}  // namespace tern::detail
