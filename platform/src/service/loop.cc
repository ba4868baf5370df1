#include "service/loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <future>

#include "tern/envelope.pb.h"
#include "tern/events.h"
#include "tern/log.h"
#include "observability/telemetry.h"
#include "core/wire.h"

namespace tern::detail {
namespace {

constexpr const char* kReplyTo = "amq.rabbitmq.reply-to";
constexpr const char* kReplyTag = "tern.replies";
constexpr const char* kRequestTag = "tern.requests";
constexpr const char* kOverflowTag = "tern.overflow";
constexpr const char* kCancelTag = "tern.cancel";
constexpr std::string_view kSubscriptionTag = "tern.sub.";
// Acks are held up to this long (or this many bytes) to leave in one write.
constexpr auto kAckDelay = std::chrono::milliseconds(1);
constexpr size_t kAckBatchBytes = 4096;
// Cancel notices: body = the request id, routing key = the service.
constexpr const char* kCancelExchange = "tern.cancel";
// Spans wait at most this long, and this many, before leaving in a batch.
constexpr auto kSpanFlushEvery = std::chrono::seconds(1);
constexpr size_t kSpanBatch = 512;
constexpr size_t kMaxSpans = 8192;
// A batch nobody collects within a minute is dropped by the broker.
constexpr const char* kSpanTtlMs = "60000";
// After losing a cluster node: the least wait before reconnecting (see
// connection_lost).
constexpr std::chrono::milliseconds kClusterSettle{1000};

thread_local Loop* t_current = nullptr;

// "host:port/vhost" of an AMQP URL, without its user and password: for logs.
std::string broker_address(std::string_view url) {
  if (auto scheme = url.find("://"); scheme != std::string_view::npos)
    url.remove_prefix(scheme + 3);
  if (auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  return std::string(url);
}

}  // namespace

// Round-robin over this thread's fibers; when none is ready it sleeps in
// poll() on the broker socket instead of a condition variable.
class LoopScheduler final : public boost::fibers::algo::algorithm {
 public:
  explicit LoopScheduler(Loop* loop) : loop_(loop) { loop->set_scheduler(this); }

  void awakened(boost::fibers::context* ctx) noexcept override {
    ctx->ready_link(queue_);
  }
  boost::fibers::context* pick_next() noexcept override {
    // While other fibers keep the thread busy, still look at the socket
    // every so often, so replies and heartbeats are not starved.
    if (++picks_ >= kPicksBetweenIoChecks) {
      picks_ = 0;
      loop_->check_io_while_busy();
    }
    if (queue_.empty()) return nullptr;
    boost::fibers::context* ctx = &queue_.front();
    queue_.pop_front();
    return ctx;
  }
  bool has_ready_fibers() const noexcept override { return !queue_.empty(); }
  void suspend_until(std::chrono::steady_clock::time_point const& t) noexcept override {
    loop_->wait_for_io(t);
  }
  void notify() noexcept override { loop_->wake(); }

 private:
  static constexpr int kPicksBetweenIoChecks = 64;
  Loop* loop_;
  int picks_ = 0;
  boost::fibers::scheduler::ready_queue_type queue_;
};

// A call waiting for its reply. Lives on the caller's fiber stack; the
// caller parks itself with wait_until(deadline) and the IO fiber (or a
// failure) sets `done` and makes it ready. All on the loop's thread, so no
// locks: Boost's fiber mutex and condition variable would also cost each
// parked call ~5 KiB more stack (their spinlock reserves a random_device).
struct Loop::PendingCall {
  boost::fibers::context* waiter = nullptr;
  const Context* ctx = nullptr;  // the caller's: cancelling it cancels this call
  bool done = false;
  bool cancelled = false;
  bool failed = false;   // error holds why; otherwise reply holds a tern.v1.Response
  Error error;
  std::string reply;
};

// A fiber waiting for a socket of its own (HTTP): polled with the broker's.
struct Loop::FdWait {
  int fd;
  short events;
  short revents = 0;
  bool done = false;
  boost::fibers::context* waiter = nullptr;
};

// An event publish waiting for the broker's confirm; like PendingCall.
struct Loop::PendingConfirm {
  boost::fibers::context* waiter = nullptr;
  bool done = false;
  bool ack = false;
};

Loop::Loop(Options options, std::string name)
    : options_(std::move(options)),
      name_(std::move(name)),
      tracing_(options_.tracing == "on"),
      breakers_(CircuitBreakerOptions{.open_for = std::chrono::milliseconds(options_.circuit_open_ms)}) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  instance_ = fmt::format("{}:{}", host, getpid());
  // Even with nothing to read, look at the connection this often, so
  // heartbeats go out on time (rabbitmq-c sends them from inside its calls).
  if (options_.heartbeat_s > 0)
    idle_wait_ = std::min<std::chrono::milliseconds>(idle_wait_, std::chrono::milliseconds(options_.heartbeat_s * 1000 / 4));
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::runtime_error("eventfd failed");
  urls_ = options_.amqp_urls();
  // A random first node, so the instances of a service spread over a cluster.
  url_index_ = static_cast<size_t>(next_random_u64() % urls_.size());
  stacks_ = std::make_unique<boost::fibers::pooled_fixedsize_stack>(
      static_cast<size_t>(std::max(options_.stack_kb, 16)) * 1024);
}

Loop::~Loop() {
  shutdown();
  if (event_fd_ >= 0) close(event_fd_);
}

Loop* Loop::current() { return t_current; }

void Loop::serve(std::string queue, int prefetch, RequestHandler handler) {
  queue_ = std::move(queue);
  prefetch_ = std::clamp(prefetch, 1, 65535);
  handler_ = std::move(handler);
}

void Loop::subscribe(std::vector<Subscription> subscriptions, EventHandler handler) {
  subscriptions_ = std::move(subscriptions);
  event_handler_ = std::move(handler);
}

void Loop::start() {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread([this, &ready] { thread_main(&ready); });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

void Loop::setup() {
  // Every URL once, from url_index_ on, until one node takes the whole
  // set-up; both connections then live on that node.
  std::string errors;
  for (size_t i = 0; i < urls_.size(); ++i) {
    const size_t at = (url_index_ + i) % urls_.size();
    try {
      setup_on(urls_[at]);
      url_index_ = at;
      return;
    } catch (const std::exception& e) {
      if (urls_.size() == 1) throw;
      errors += fmt::format("{}{}: {}", errors.empty() ? "" : "; ", broker_address(urls_[at]),
                            e.what());
    }
  }
  throw AmqpError(fmt::format("no broker node of {} answered: {}", urls_.size(), errors));
}

void Loop::setup_on(const std::string& url) {
  // Publishing and consuming use separate connections: a broker memory or
  // disk alarm blocks connections that publish, and must not stop the acks.
  auto pub = std::make_unique<AmqpConnection>(url, options_.heartbeat_s, name_ + " publish");
  // Direct reply-to: consumed without acks on the channel requests go out on.
  pub->consume(kReplyTo, kReplyTag, /*no_ack=*/true);
  pub->open_event_channel(kEventExchange);
  pub->declare_exchange(kCancelExchange, "direct");
  if (tracing_) pub->declare_exchange(kTraceExchange, "topic");
  std::unique_ptr<AmqpConnection> conn;
  if (!queue_.empty()) {
    conn = std::make_unique<AmqpConnection>(url, options_.heartbeat_s, name_ + " consume");
    // Quorum queues are replicated over a majority of a cluster's nodes and
    // outlive the loss of any minority; classic ones live on one node.
    const bool quorum_requests = options_.request_queue_type == "quorum";
    const bool quorum_events = options_.event_queue_type == "quorum";
    auto typed = [](bool quorum, AmqpConnection::QueueArgs args) {
      if (quorum) args.push_back({"x-queue-type", "quorum"});
      return args;
    };
    const std::string overflow = queue_ + ".overflow";
    conn->declare_queue(overflow, typed(quorum_requests, {}));
    // Past max_queue_length a classic queue refuses the publish and
    // dead-letters it to the overflow queue, where it is answered
    // RESOURCE_EXHAUSTED. Quorum queues have no reject-publish-dlx (RabbitMQ
    // 3.10): they drop their oldest request to the overflow queue instead,
    // which is answered the same way.
    const char* overflow_mode = quorum_requests ? "drop-head" : "reject-publish-dlx";
    conn->declare_queue(queue_, typed(quorum_requests,
                                      {{"x-max-length", int64_t{options_.max_queue_length}},
                                       {"x-overflow", overflow_mode},
                                       {"x-dead-letter-exchange", ""},
                                       {"x-dead-letter-routing-key", overflow}}));
    conn->declare_queue(dead_letter_queue(), typed(quorum_requests, {}));
    // Requests refused by the full queue come back here to be answered.
    conn->consume(overflow, kOverflowTag, /*no_ack=*/true);
    // Cancel notices for this service reach every instance and thread.
    std::string notices = conn->declare_private_queue();
    conn->bind(notices, kCancelExchange, queue_);
    conn->consume(notices, kCancelTag, /*no_ack=*/true);
    conn->qos(static_cast<uint16_t>(prefetch_));
    for (size_t i = 0; i < subscriptions_.size(); ++i) {
      const Subscription& sub = subscriptions_[i];
      // A quorum queue's delivery limit is a backstop for crash loops: tern's
      // retry queues count failed attempts (and requeue), the broker counts
      // redeliveries after crashes.
      const std::string dead = sub.queue + ".dead-letter";
      if (quorum_events)
        conn->declare_queue(sub.queue,
                            typed(true, {{"x-delivery-limit", int64_t{std::max(options_.max_deliveries, 1)}},
                                         {"x-dead-letter-exchange", ""},
                                         {"x-dead-letter-routing-key", dead}}));
      else
        conn->declare_queue(sub.queue);
      if (sub.exchange != kEventExchange) conn->declare_exchange(sub.exchange, "topic");
      conn->bind(sub.queue, sub.exchange, sub.pattern);
      // Retry n waits event_retry_ms * 2^(n-1) in its own queue, then goes
      // back to the subscription queue: FIFO per delay, no head-of-line wait.
      for (int n = 1; n < options_.event_attempts; ++n)
        conn->declare_queue(
            fmt::format("{}.retry.{}", sub.queue, n),
            typed(quorum_events, {{"x-message-ttl", int64_t{options_.event_retry_ms} << std::min(n - 1, 20)},
                                  {"x-dead-letter-exchange", ""},
                                  {"x-dead-letter-routing-key", sub.queue}}));
      conn->declare_queue(dead, typed(quorum_events, {}));
    }
    if (!consume_cancelled_) {
      conn->consume(queue_, kRequestTag, /*no_ack=*/false);
      for (size_t i = 0; i < subscriptions_.size(); ++i)
        conn->consume(subscriptions_[i].queue, fmt::format("{}{}", kSubscriptionTag, i), /*no_ack=*/false);
      consuming_ = true;
    }
  }
  conn_ = std::move(pub);
  consumer_ = std::move(conn);
  ++generation_;
  input_ready_ = true;
}

std::vector<AmqpConnection*> Loop::connections() const {
  std::vector<AmqpConnection*> all;
  if (conn_) all.push_back(conn_.get());   // first: replies leave before their acks
  if (consumer_) all.push_back(consumer_.get());
  return all;
}

void Loop::connection_lost() {
  broken_ = true;
  consuming_ = false;
  std::string why;
  for (AmqpConnection* c : connections())
    if (c->failed()) why = c->error();
  broken_reason_ = "broker connection lost: " + why;
  // The node may be gone for good: start the next attempt with the next URL.
  url_index_ = (url_index_ + 1) % urls_.size();
  log::error("{}: {}; reconnecting{}", name_, broken_reason_,
             urls_.size() > 1 ? fmt::format(" (first to {})", broker_address(urls_[url_index_]))
                              : "");
  fail_all_pending(Error{Code::kUnavailable, broken_reason_}.with_param("cause", "connection"));
  reconnect_attempt_ = 0;
  next_reconnect_ = std::chrono::steady_clock::now();
  // With a cluster, the lost node is likely dead, and its quorum queues
  // elect new leaders on the others within about a second. On RabbitMQ 3.10
  // a channel opened before that may take the dead leader from the stale
  // queue record and stall for good: the cluster test saw calls and event
  // confirms stop for minutes (newer brokers look the leader up first,
  // rabbitmq-server#9241). So with several URLs the first attempt waits 1-2 s.
  if (urls_.size() > 1) {
    const auto jitter = std::chrono::milliseconds(next_random_u64() % (kClusterSettle.count() + 1));
    next_reconnect_ += kClusterSettle + jitter;
  }
}

void Loop::try_reconnect() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_reconnect_) return;
  try {
    setup();  // blocks this thread while connecting (bounded by connect and RPC timeouts)
    broken_ = false;
    metric::reconnects(name_).inc();
    log::info("{}: reconnected to the broker at {} after {} attempt(s)", name_,
              broker_address(urls_[url_index_]), reconnect_attempt_ + 1);
  } catch (const std::exception& e) {
    ++reconnect_attempt_;
    // Exponential backoff with full jitter, 100 ms doubling up to 5 s.
    auto ceiling = std::min<int64_t>(5000, 100LL << std::min(reconnect_attempt_, 6));
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(next_random_u64() % static_cast<uint64_t>(ceiling + 1)));
    next_reconnect_ = std::chrono::steady_clock::now() + delay;
    if (reconnect_attempt_ == 1 || reconnect_attempt_ % 10 == 0)
      log::warn("{}: reconnect attempt {} failed: {}", name_, reconnect_attempt_, e.what());
  }
}

void Loop::thread_main(std::promise<void>* ready) {
  t_current = this;
  boost::fibers::use_scheduling_algorithm<LoopScheduler>(this);
  try {
    setup();
  } catch (...) {
    conn_.reset();
    ready->set_exception(std::current_exception());
    t_current = nullptr;
    return;
  }
  ready->set_value();  // `ready` is gone after this line

  boost::fibers::fiber io([this] { io_fiber(); });
  io.join();

  // Stopping: close the connection (the broker requeues what we did not
  // ack), fail calls still waiting, and let handler fibers run to their end;
  // their replies and acks are no-ops now.
  for (AmqpConnection* c : connections()) c->close();
  broken_ = true;
  broken_reason_ = "the tern runtime is shutting down";
  fail_all_pending(Error{Code::kUnavailable, broken_reason_});
  for (FdWait* w : fd_waits_) {
    if (w->done) continue;
    w->done = true;
    if (!w->waiter->ready_is_linked()) boost::fibers::context::active()->schedule(w->waiter);
  }
  while (in_flight_.load() > 0) boost::this_fiber::sleep_for(std::chrono::milliseconds(2));
  run_posted();
  t_current = nullptr;
}

void Loop::io_fiber() {
  for (;;) {
    run_posted();
    if (stopping_.load(std::memory_order_acquire)) break;
    if (cancel_requested_.exchange(false)) {
      consume_cancelled_ = true;
      if (consuming_ && !broken_ && consumer_) {
        consumer_->cancel(kRequestTag);
        for (size_t i = 0; i < subscriptions_.size(); ++i)
          consumer_->cancel(fmt::format("{}{}", kSubscriptionTag, i));
      }
      consuming_ = false;
    }
    if (broken_) try_reconnect();
    if (!broken_) {
      bool ok = conn_->flush();
      if (consumer_ && ack_flush_due()) ok = consumer_->flush() && ok;
      if (ok && input_ready_) {
        input_ready_ = false;
        ok = pump();
      }
      if (!ok) connection_lost();
    }
    // Sleep until the scheduler sees input, room for output, posted work,
    // a heartbeat due, or (disconnected) the next reconnect attempt.
    parked_io_ = boost::fibers::context::active();
    if (broken_) {
      parked_io_->wait_until(next_reconnect_);
      parked_io_ = nullptr;
    } else {
      parked_io_->suspend();
    }
  }
}

bool Loop::pump() {
  last_pump_ = std::chrono::steady_clock::now();
  bool ok = true;
  for (AmqpConnection* c : connections()) {
    if (c->has_partial_output()) {
      input_ready_ = true;  // read once the frame is out (rabbitmq-c may write)
      continue;
    }
    ok = c->poll_messages(*this) && ok;
  }
  return ok;
}

void Loop::wake_io(bool input) noexcept {
  if (input) input_ready_ = true;
  if (parked_io_ != nullptr && !parked_io_->ready_is_linked()) {
    boost::fibers::context* io = parked_io_;
    parked_io_ = nullptr;
    boost::fibers::context::active()->schedule(io);
  }
}

void Loop::wait_for_io(std::chrono::steady_clock::time_point until) noexcept {
  // Everything the fibers produced leaves in one write, now that none is ready.
  // Acks wait up to kAckDelay to leave in batches, off the replies' path.
  auto now = std::chrono::steady_clock::now();
  auto wake_at = std::min(until, now + idle_wait_);
  if (!broken_) {
    if (!spans_.empty()) flush_spans();
    bool ok = conn_->flush();
    if (consumer_ && consumer_->has_output()) {
      if (ack_flush_due()) ok = consumer_->flush() && ok;
      else wake_at = std::min(wake_at, consumer_->output_since() + kAckDelay);
    }
    if (!ok) {
      wake_io(true);  // the IO fiber reports the failure
      return;
    }
  }
  auto left = std::max(wake_at - now, std::chrono::steady_clock::duration::zero());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};

  pollfds_.clear();
  pollfds_.push_back(pollfd{event_fd_, POLLIN, 0});
  if (!broken_) {
    for (AmqpConnection* c : connections()) {
      short events = POLLIN;
      // Deferred acks are not waiting for the socket: no POLLOUT for those.
      if (c->has_output() && (c != consumer_.get() || ack_flush_due())) events |= POLLOUT;
      pollfds_.push_back(pollfd{c->fd(), events, 0});
    }
  }
  const size_t first_wait = pollfds_.size();
  add_fd_waits();
  int rc = ppoll(pollfds_.data(), pollfds_.size(), &ts, nullptr);

  bool wake = false, input = false;
  if (rc > 0) {
    if (pollfds_[0].revents != 0) {
      uint64_t drained;
      [[maybe_unused]] ssize_t r = read(event_fd_, &drained, sizeof drained);
      wake = true;
    }
    for (size_t i = 1; i < first_wait; ++i) {
      if ((pollfds_[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) input = true;
      if ((pollfds_[i].revents & POLLOUT) != 0) wake = true;
    }
    wake_fd_waits(first_wait);
  }
  if (std::chrono::steady_clock::now() - last_pump_ >= idle_wait_) input = true;
  if (consumer_ && !broken_ && consumer_->has_output() && ack_flush_due()) {
    if (!consumer_->flush()) input = true;
  }
  if (wake || input) wake_io(input);
}

bool Loop::ack_flush_due() const {
  return consumer_->output_bytes() >= kAckBatchBytes ||
         std::chrono::steady_clock::now() - consumer_->output_since() >= kAckDelay;
}

void Loop::check_io_while_busy() noexcept {
  pollfds_.clear();
  const bool io = parked_io_ != nullptr && !broken_ && conn_;
  if (io) {
    if (conn_->has_output() || (consumer_ && consumer_->has_output() && ack_flush_due())) wake_io(false);
    for (AmqpConnection* c : connections()) pollfds_.push_back(pollfd{c->fd(), POLLIN, 0});
  }
  if (io && spans_.size() >= kSpanBatch) flush_spans();
  const size_t first_wait = pollfds_.size();
  add_fd_waits();
  if (pollfds_.empty()) return;
  bool heartbeat_due = io && std::chrono::steady_clock::now() - last_pump_ >= idle_wait_;
  bool ready = poll(pollfds_.data(), pollfds_.size(), 0) > 0;
  if (ready) wake_fd_waits(first_wait);
  bool input = false;
  for (size_t i = 0; ready && i < first_wait; ++i) input = input || pollfds_[i].revents != 0;
  if (io && (heartbeat_due || input)) wake_io(true);
}

void Loop::add_fd_waits() {
  for (FdWait* w : fd_waits_)
    if (!w->done) pollfds_.push_back(pollfd{w->fd, w->events, 0});
}

void Loop::wake_fd_waits(size_t first) {
  size_t i = first;
  for (FdWait* w : fd_waits_) {
    if (w->done) continue;
    short revents = pollfds_[i++].revents;
    if (revents == 0) continue;
    w->revents = revents;
    w->done = true;
    if (!w->waiter->ready_is_linked()) boost::fibers::context::active()->schedule(w->waiter);
  }
}

short Loop::wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  if (stopping()) return 0;
  FdWait w{fd, events};
  w.waiter = boost::fibers::context::active();
  fd_waits_.push_back(&w);
  while (!w.done && !stopping() && std::chrono::steady_clock::now() < deadline)
    w.waiter->wait_until(deadline);
  fd_waits_.erase(std::find(fd_waits_.begin(), fd_waits_.end(), &w));
  return w.revents;
}

void Loop::cancel_waits(int fd) {
  for (FdWait* w : fd_waits_) {
    if (w->fd != fd || w->done) continue;
    w->done = true;
    if (!w->waiter->ready_is_linked()) boost::fibers::context::active()->schedule(w->waiter);
  }
}

void Loop::spawn(std::function<void()> fn) {
  boost::fibers::fiber(std::allocator_arg, *stacks_, std::move(fn)).detach();
}

void Loop::wake() noexcept {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof one);
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  wake();
}

void Loop::run_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) boost::fibers::fiber(std::allocator_arg, *stacks_, std::move(fn)).detach();
}

void Loop::stop_consuming() {
  cancel_requested_.store(true);
  wake();
}

void Loop::shutdown() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  wake();
  thread_.join();
  consumer_.reset();
  conn_.reset();
}

void Loop::dispatch(Message&& m) {
  if (m.returned || m.consumer_tag == kReplyTag) {
    auto it = pending_.find(m.correlation_id);
    if (it == pending_.end()) {
      if (!m.returned) {
        late_replies_.fetch_add(1, std::memory_order_relaxed);
        log::debug("{}: dropped a late reply for {}", name_, m.correlation_id);
      }
      return;
    }
    PendingCall* pc = it->second;
    pending_.erase(it);
    if (m.returned) {
      pc->failed = true;
      pc->error = Error{Code::kUnavailable,
                        fmt::format("no route to '{}' ({} {}): is the service running?",
                                    m.routing_key, m.reply_code, m.reply_text)}
                      .with_param("service", m.routing_key);
    } else {
      pc->reply = std::move(m.body);
    }
    complete(pc);
    return;
  }
  if (m.consumer_tag == kCancelTag) {
    cancel_request(m.body);
    return;
  }
  if (m.consumer_tag == kOverflowTag) {
    refuse_overflow(m);
    return;
  }
  if (m.consumer_tag.starts_with(kSubscriptionTag) && event_handler_) {
    const size_t index = std::strtoul(m.consumer_tag.c_str() + kSubscriptionTag.size(), nullptr, 10);
    if (index >= subscriptions_.size()) return;
    m.generation = generation_;
    in_flight_.fetch_add(1, std::memory_order_acq_rel);
    boost::fibers::fiber(std::allocator_arg, *stacks_, [this, index, msg = std::move(m)]() mutable {
      event_handler_(*this, std::move(msg), index);
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    }).detach();
    return;
  }
  if (m.consumer_tag == kRequestTag && handler_) {
    m.generation = generation_;
    in_flight_.fetch_add(1, std::memory_order_acq_rel);
    boost::fibers::fiber(std::allocator_arg, *stacks_, [this, msg = std::move(m)]() mutable {
      handler_(*this, std::move(msg));
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    }).detach();
  }
}

void Loop::complete(PendingCall* pc) {
  pc->done = true;
  // At its deadline the waiter may already be ready (moved there by the
  // timer) without having run yet; it will see `done` when it does.
  if (pc->waiter != nullptr && !pc->waiter->ready_is_linked())
    boost::fibers::context::active()->schedule(pc->waiter);
}

void Loop::on_confirm(uint64_t tag, bool multiple, bool ack) {
  auto end = confirms_.upper_bound(tag);
  auto begin = multiple ? confirms_.begin() : confirms_.find(tag);
  if (begin == confirms_.end()) return;
  for (auto it = begin; it != end;) {
    PendingConfirm* pc = it->second;
    it = confirms_.erase(it);
    pc->ack = ack;
    pc->done = true;
    if (pc->waiter != nullptr && !pc->waiter->ready_is_linked())
      boost::fibers::context::active()->schedule(pc->waiter);
    if (!multiple) break;
  }
}

void Loop::fail_all_pending(const Error& error) {
  auto confirms = std::move(confirms_);
  confirms_.clear();
  for (auto& [tag, pc] : confirms) {
    pc->ack = false;
    pc->done = true;
    if (pc->waiter != nullptr && !pc->waiter->ready_is_linked())
      boost::fibers::context::active()->schedule(pc->waiter);
  }
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, pc] : pending) {
    pc->failed = true;
    pc->error = error;
    complete(pc);
  }
}

Result<std::string> Loop::call(const Context& ctx, std::string_view service,
                               std::string_view endpoint, std::string body,
                               const CallOptions& opts) {
  const SpanClock clock;
  Result<std::string> r = call_with_retries(ctx, service, endpoint, std::move(body), opts);
  metric::client_calls(name_, service, r.code()).inc();
  metric::client_latency(name_, service).observe_us(static_cast<uint64_t>(clock.elapsed_us()));
  return r;
}

Result<std::string> Loop::call_with_retries(const Context& ctx, std::string_view service,
                                            std::string_view endpoint, std::string body,
                                            const CallOptions& opts) {
  if (ctx.cancelled()) return Error{Code::kCancelled, "the caller's context was cancelled"};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = std::min(ctx.deadline(), start + opts.timeout);
  if (deadline <= start)
    return Error{Code::kDeadlineExceeded,
                 fmt::format("deadline passed before calling {}/{}", service, endpoint)};
  CircuitBreaker& breaker = breakers_.get(service, endpoint);
  retry_budget_.record_call(start);
  const int max_attempts = std::max(1, opts.max_attempts);
  for (int n = 1;; ++n) {
    auto now = std::chrono::steady_clock::now();
    if (!breaker.allow(now)) {
      log_transitions(breaker, service, endpoint);
      return Error{Code::kUnavailable, fmt::format("circuit open for {}/{}: failing fast", service, endpoint)}
          .with_param("circuit", "open")
          .with_param("attempts", std::to_string(n - 1));
    }
    log_transitions(breaker, service, endpoint);
    auto attempt_deadline = deadline;
    if (opts.attempt_timeout.count() > 0) attempt_deadline = std::min(deadline, now + opts.attempt_timeout);
    if (n > 1) metric::client_retries(name_, service).inc();
    const SpanClock clock;
    const std::string span_id = new_span_id();
    Result<std::string> r = attempt(ctx, service, endpoint, n < max_attempts ? body : std::move(body),
                                    attempt_deadline, static_cast<uint32_t>(n), opts.idempotency_key, span_id);
    if (tracing_) {
      v1::Span span = make_span(v1::Span::CLIENT, ctx.trace_id(), span_id, ctx.span_id(),
                                fmt::format("{}/{}", service, endpoint), clock, r.code(),
                                r.ok() ? std::string() : r.error().message);
      span.set_attempt(static_cast<uint32_t>(n));
      span.set_peer(std::string(service));
      record_span(std::move(span));
    }
    // The downstream is unhealthy if it cannot be reached, times out or
    // fails internally; our own lost broker connection says nothing about it.
    const Code code = r.code();
    const bool local = !r.ok() && r.error().params.count("cause") != 0;
    breaker.record(local || !(code == Code::kUnavailable || code == Code::kDeadlineExceeded ||
                              code == Code::kInternal),
                   std::chrono::steady_clock::now());
    log_transitions(breaker, service, endpoint);
    if (r.ok()) return r;
    const bool attempt_timed_out = code == Code::kDeadlineExceeded && attempt_deadline < deadline;
    const bool idempotent = opts.idempotent || !opts.idempotency_key.empty();
    const bool retryable = r.error().retryable || (idempotent && attempt_timed_out);
    auto finish = [&](std::string why) {
      Error e = std::move(r.error());
      if (!why.empty()) e.message += why;
      e.params["attempts"] = std::to_string(n);
      return e;
    };
    if (!retryable) return finish(n > 1 ? fmt::format(" (after {} attempts)", n) : "");
    if (n >= max_attempts) return finish(fmt::format(" (after {} attempts)", n));
    now = std::chrono::steady_clock::now();
    if (!retry_budget_.try_spend_retry(now))
      return finish(fmt::format(" (after {} attempts; retry budget exhausted)", n));
    auto delay = backoff_delay(Backoff{}, n, next_random_u64());
    if (now + delay >= deadline) return finish(fmt::format(" (after {} attempts; no time left to retry)", n));
    boost::this_fiber::sleep_for(delay);
    if (ctx.cancelled()) return Error{Code::kCancelled, "the caller's context was cancelled"};
  }
}

void Loop::log_transitions(CircuitBreaker& breaker, std::string_view service, std::string_view endpoint) {
  while (auto t = breaker.take_transition()) {
    if (t->from == CircuitBreaker::State::kClosed) metric::circuits_open(name_).add(1);
    if (t->to == CircuitBreaker::State::kClosed) metric::circuits_open(name_).add(-1);
    log::warn("{}: circuit for {}/{} went from {} to {}", name_, service, endpoint, state_name(t->from),
              state_name(t->to));
  }
}

Result<std::string> Loop::attempt(const Context& ctx, std::string_view service, std::string_view endpoint,
                                  std::string body, std::chrono::steady_clock::time_point deadline,
                                  uint32_t attempt_number, const std::string& idempotency_key,
                                  const std::string& span_id) {
  const auto now = std::chrono::steady_clock::now();
  const auto budget = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
  if (budget.count() <= 0)
    return Error{Code::kDeadlineExceeded,
                 fmt::format("deadline passed before calling {}/{}", service, endpoint)};
  if (broken_) return Error{Code::kUnavailable, broken_reason_}.with_param("cause", "connection");
  if (pending_.size() >= static_cast<size_t>(options_.max_in_flight))
    return Error{Code::kResourceExhausted,
                 fmt::format("{} calls already await replies (TERN_MAX_IN_FLIGHT)", pending_.size())};

  std::string wire;
  std::string id = new_trace_id();
  {
    tern::v1::Request req;
    req.set_id(id);
    req.set_service(std::string(service));
    req.set_endpoint(std::string(endpoint));
    req.set_body(std::move(body));
    req.set_deadline_unix_ms(to_unix_ms(deadline));
    req.set_trace_id(ctx.trace_id().empty() ? new_trace_id() : ctx.trace_id());
    req.set_span_id(span_id);
    req.set_parent_span_id(ctx.span_id());
    req.set_from(name_);
    for (const auto& [k, v] : ctx.metadata()) (*req.mutable_metadata())[k] = v;
    req.set_attempt(attempt_number);
    if (!idempotency_key.empty()) req.set_idempotency_key(idempotency_key);
    req.SerializeToString(&wire);
  }
  if (wire.size() > max_message_bytes())
    return Error{Code::kInvalidArgument,
                 fmt::format("request to {}/{} is {} bytes, over the {} byte limit", service, endpoint,
                             wire.size(), max_message_bytes())}
        .with_param("limit_bytes", std::to_string(max_message_bytes()));

  PendingCall pc;
  pending_.emplace(id, &pc);
  const std::string expiration = std::to_string(budget.count());
  AmqpConnection::Publish p;
  p.routing_key = service;
  p.body = wire;
  p.correlation_id = id;
  p.reply_to = kReplyTo;
  p.expiration_ms = expiration;
  p.type = endpoint;
  p.mandatory = true;
  if (!conn_->publish(p)) {
    pending_.erase(id);
    return Error{Code::kUnavailable, "broker connection lost: " + conn_->error()};
  }

  pc.waiter = boost::fibers::context::active();
  pc.ctx = &ctx;
  // An explicit cancel, from any thread, ends the wait with CANCELLED.
  const uint64_t hook = ctx.on_cancel([this, id] { post([this, id] { cancel_pending(id); }); });
  while (!pc.done && std::chrono::steady_clock::now() < deadline) pc.waiter->wait_until(deadline);
  ctx.remove_on_cancel(hook);
  if (!pc.done || pc.cancelled) {
    // The caller gives up: tell the service, so the handler's context
    // reports cancellation where the request still runs.
    pending_.erase(id);
    send_cancel(service, id);
    if (pc.cancelled) return std::move(pc.error);
    return Error{Code::kDeadlineExceeded,
                 fmt::format("no reply from {}/{} within {} ms", service, endpoint, budget.count())}
        .with_param("service", std::string(service))
        .with_param("endpoint", std::string(endpoint));
  }
  if (pc.failed) return std::move(pc.error);
  if (pc.reply.size() > max_message_bytes())
    return Error{Code::kInternal, fmt::format("reply from {}/{} is {} bytes, over the {} byte limit",
                                              service, endpoint, pc.reply.size(), max_message_bytes())};
  return decode_response(pc.reply, service, endpoint);
}

Error Loop::publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                    std::string body) {
  const SpanClock clock;
  const std::string span_id = new_span_id();
  Error e = publish_confirmed(ctx, type, routing_key, std::move(body), span_id);
  metric::events_published(name_, type, e.ok()).inc();
  if (tracing_) {
    v1::Span span = make_span(v1::Span::PUBLISH, ctx.trace_id(), span_id, ctx.span_id(), std::string(type),
                              clock, e.code, e.message);
    if (auto it = e.params.find("outcome"); it != e.params.end()) (*span.mutable_tags())["outcome"] = it->second;
    record_span(std::move(span));
  }
  return e;
}

Error Loop::publish_confirmed(const Context& ctx, std::string_view type, std::string_view routing_key,
                              std::string body, const std::string& span_id) {
  if (broken_) return Error{Code::kUnavailable, broken_reason_}.with_param("outcome", "not sent");
  if (ctx.expired())
    return Error{Code::kDeadlineExceeded, "deadline passed before publishing"}.with_param("outcome", "not sent");
  tern::v1::Event event;
  std::string id = new_trace_id();
  event.set_id(id);
  event.set_type(std::string(type));
  event.set_source(name_);
  event.set_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count());
  event.set_trace_id(ctx.trace_id());
  event.set_span_id(span_id);   // the publish span: the parent of each consumer's span
  event.set_body(std::move(body));
  for (const auto& [k, v] : ctx.metadata()) (*event.mutable_metadata())[k] = v;
  std::string wire = event.SerializeAsString();
  if (wire.size() > max_message_bytes())
    return Error{Code::kInvalidArgument, fmt::format("{} event is {} bytes, over the {} byte limit", type,
                                                     wire.size(), max_message_bytes())}
        .with_param("outcome", "not sent");

  AmqpConnection::Publish p;
  p.channel = AmqpConnection::kEventChannel;
  p.exchange = kEventExchange;
  p.routing_key = routing_key;
  p.body = wire;
  p.persistent = true;  // the envelope carries id and type: no AMQP properties for them
  uint64_t tag = conn_->publish(p);
  if (tag == 0) return Error{Code::kUnavailable, "broker connection lost: " + conn_->error()}.with_param("outcome", "unknown");

  PendingConfirm pc;
  confirms_.emplace(tag, &pc);
  pc.waiter = boost::fibers::context::active();
  const auto deadline = ctx.deadline();
  while (!pc.done && std::chrono::steady_clock::now() < deadline) pc.waiter->wait_until(deadline);
  if (!pc.done) {
    confirms_.erase(tag);
    return Error{Code::kDeadlineExceeded, fmt::format("no confirm for {} event {} by the deadline", type, id)}
        .with_param("outcome", "unknown");
  }
  if (!pc.ack)
    return Error{Code::kUnavailable,
                 broken_ ? broken_reason_ : fmt::format("the broker refused {} event {} (nack)", type, id)}
        .with_param("outcome", "unknown");
  return Error{Code::kOk, {}};
}

bool Loop::reply(const Message& request, const std::string& reply) {
  if (broken_ || request.reply_to.empty()) return false;
  AmqpConnection::Publish p;
  p.routing_key = request.reply_to;
  p.body = reply;
  p.correlation_id = request.correlation_id;
  return conn_->publish(p) != 0;
}

void Loop::reply_error(const Message& request, const Error& error) {
  tern::v1::Response resp;
  resp.set_request_id(request.correlation_id);
  to_wire(error, resp.mutable_error());
  reply(request, resp.SerializeAsString());
}

void Loop::reply_and_ack(const Message& request, const std::string& response) {
  if (!reply(request, response)) return;  // the broker redelivers the request
  // A delivery tag belongs to the connection it came on; after a reconnect
  // the broker has already requeued that delivery.
  if (request.generation == generation_ && consumer_) consumer_->ack(request.delivery_tag);
}

void Loop::send_cancel(std::string_view service, const std::string& request_id) {
  if (broken_) return;
  AmqpConnection::Publish p;
  p.exchange = kCancelExchange;
  p.routing_key = service;
  p.body = request_id;
  conn_->publish(p);
}

void Loop::cancel_request(const std::string& request_id) {
  auto it = running_.find(request_id);
  if (it == running_.end()) return;  // not here, or already finished
  // Its downstream calls still waiting end through their cancel hooks.
  it->second->cancel();
}

void Loop::cancel_pending(const std::string& id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // answered meanwhile
  PendingCall* pc = it->second;
  pc->cancelled = true;
  pc->failed = true;
  pc->error = Error{Code::kCancelled, "the call was cancelled by its caller"};
  complete(pc);  // its fiber erases it and passes the cancel on downstream
}

void Loop::track(const std::string& request_id, Context* ctx) { running_[request_id] = ctx; }
void Loop::untrack(const std::string& request_id) { running_.erase(request_id); }

void Loop::ack(const Message& request) {
  if (!broken_ && request.generation == generation_ && consumer_) consumer_->ack(request.delivery_tag);
}

void Loop::record_span(v1::Span&& span) {
  span.set_service(name_);
  span.set_instance(instance_);
  to_span_sink(span);
  if (!tracing_ || spans_.size() >= kMaxSpans) {
    if (tracing_) ++spans_dropped_;
    return;
  }
  spans_.push_back(std::move(span));
}

void Loop::flush_spans() {
  const auto now = std::chrono::steady_clock::now();
  if (spans_.size() < kSpanBatch && now - last_span_flush_ < kSpanFlushEvery) return;
  last_span_flush_ = now;
  // Batches wait behind nothing: with the broker pushing back (output not
  // draining), they are dropped rather than queued.
  if (conn_->output_bytes() > (1u << 20)) {
    spans_dropped_ += spans_.size();
    metric::spans_dropped(name_).inc(spans_.size());
    spans_.clear();
    return;
  }
  v1::SpanBatch batch;
  const size_t n = spans_.size();
  for (auto& s : spans_) *batch.add_spans() = std::move(s);
  spans_.clear();
  batch.set_dropped(spans_dropped_);
  if (spans_dropped_ > 0) metric::spans_dropped(name_).inc(spans_dropped_);
  spans_dropped_ = 0;
  v1::Event event;
  event.set_id(new_trace_id());
  event.set_type(v1::SpanBatch::descriptor()->full_name());
  event.set_source(name_);
  event.set_time_unix_ms(to_unix_ms(now));
  batch.SerializeToString(event.mutable_body());
  const std::string wire = event.SerializeAsString();
  AmqpConnection::Publish p;
  p.exchange = kTraceExchange;
  p.routing_key = "tern.v1.span_batch";
  p.body = wire;
  p.expiration_ms = kSpanTtlMs;
  if (conn_->publish(p)) metric::spans_sent(name_).inc(n);
  else metric::spans_dropped(name_).inc(n);
}

}  // namespace tern::detail
