#include "runtime/reactor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include <fmt/format.h>

namespace tern::detail {
namespace {
thread_local Reactor* t_current = nullptr;

// poll(2)'s bits are epoll's on Linux: waits speak poll, epoll gets them as they are.
static_assert(POLLIN == EPOLLIN && POLLOUT == EPOLLOUT && POLLERR == EPOLLERR && POLLHUP == EPOLLHUP &&
              POLLPRI == EPOLLPRI);
constexpr short kAlways = POLLERR | POLLHUP;   // reported whether asked for or not

uint64_t tag(int fd, uint32_t generation) { return uint64_t{generation} << 32 | uint32_t(fd); }
}  // namespace

// Round-robin over this thread's fibers; with none ready it sleeps in the
// reactor's ppoll() instead of on a condition variable.
class Reactor::Scheduler final : public boost::fibers::algo::algorithm {
 public:
  explicit Scheduler(Reactor* reactor) : reactor_(reactor) {}

  void awakened(boost::fibers::context* ctx) noexcept override { ctx->ready_link(queue_); }
  boost::fibers::context* pick_next() noexcept override {
    // While other fibers keep the thread busy, still look at the sockets
    // every so often, so replies and heartbeats are not starved.
    if (++picks_ >= kPicksBetweenChecks) {
      picks_ = 0;
      reactor_->busy_check();
    }
    reactor_->turns_.store(reactor_->turns_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (queue_.empty()) return nullptr;
    boost::fibers::context* ctx = &queue_.front();
    queue_.pop_front();
    reactor_->running_.store(ctx, std::memory_order_relaxed);
    return ctx;
  }
  bool has_ready_fibers() const noexcept override { return !queue_.empty(); }
  void suspend_until(Clock::time_point const& t) noexcept override { reactor_->sleep_until(t); }
  void notify() noexcept override { reactor_->wake(); }

 private:
  static constexpr int kPicksBetweenChecks = 64;
  Reactor* reactor_;
  int picks_ = 0;
  boost::fibers::scheduler::ready_queue_type queue_;
};

// A fiber waiting for a socket of its own; lives on that fiber's stack.
struct Reactor::FdWait {
  int fd;
  short events;
  short revents = 0;
  bool done = false;
  boost::fibers::context* waiter = nullptr;
};

Reactor::Reactor(size_t stack_bytes)
    : stacks_(std::make_unique<boost::fibers::pooled_fixedsize_stack>(std::max<size_t>(stack_bytes, 16 * 1024))) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::runtime_error("eventfd failed");
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    close(event_fd_);
    throw std::runtime_error("epoll_create1 failed");
  }
}

Reactor::~Reactor() {
  close(epoll_fd_);
  close(event_fd_);
}

Reactor* Reactor::current() { return t_current; }

void Reactor::attach() {
  t_current = this;
  boost::fibers::use_scheduling_algorithm<Scheduler>(this);
  poster_ = boost::fibers::fiber(std::allocator_arg, *stacks_, [this] { posted_fiber(); });
}

void Reactor::detach() {
  stop();
  end_all_waits();
  if (poster_.joinable()) {
    if (parked_poster_ != nullptr) ready(std::exchange(parked_poster_, nullptr));
    poster_.join();
  }
  t_current = nullptr;
}

void Reactor::ready(boost::fibers::context* fiber) noexcept {
  if (fiber != nullptr && !fiber->ready_is_linked()) boost::fibers::context::active()->schedule(fiber);
}

void Reactor::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  posted_pending_.store(true, std::memory_order_release);
  wake();
}

void Reactor::posted_fiber() {
  std::vector<std::function<void()>> batch;
  for (;;) {
    posted_pending_.store(false, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(posted_mu_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) spawn(std::move(fn));
    batch.clear();
    if (stopping() && !posted_pending_.load(std::memory_order_acquire)) return;
    if (posted_pending_.load(std::memory_order_acquire)) continue;
    parked_poster_ = boost::fibers::context::active();
    parked_poster_->suspend();
  }
}

void Reactor::stop() {
  stopping_.store(true, std::memory_order_release);
  wake();
}

void Reactor::wake() noexcept {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof one);
}

void Reactor::sleep_until(Clock::time_point until) noexcept {
  const auto now = Clock::now();
  auto wake_at = std::min(until, now + kIdleWait);
  pollfds_.clear();
  pollfds_.push_back(pollfd{event_fd_, POLLIN, 0});
  if (source_ != nullptr) source_->before_sleep(&pollfds_, &wake_at);
  const size_t first_wait = pollfds_.size();
  if (fd_waits_ > 0) pollfds_.push_back(pollfd{epoll_fd_, POLLIN, 0});
  if (posted_pending_.load(std::memory_order_acquire) || stopping()) wake_at = now;
  auto left = std::max(wake_at - Clock::now(), Clock::duration::zero());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  idle_.store(true, std::memory_order_relaxed);
  int rc = ppoll(pollfds_.data(), pollfds_.size(), &ts, nullptr);
  idle_.store(false, std::memory_order_relaxed);
  if (rc > 0 && pollfds_[0].revents != 0) {
    uint64_t drained;
    [[maybe_unused]] ssize_t r = read(event_fd_, &drained, sizeof drained);
  }
  if (rc > 0 && pollfds_.size() > first_wait && pollfds_[first_wait].revents != 0) take_fd_events();
  if (source_ != nullptr) source_->polled(pollfds_.data() + 1, first_wait - 1, /*busy=*/false);
  if (posted_pending_.load(std::memory_order_acquire)) ready(std::exchange(parked_poster_, nullptr));
  if (stopping()) end_all_waits();
}

void Reactor::busy_check() noexcept {
  if (posted_pending_.load(std::memory_order_acquire)) ready(std::exchange(parked_poster_, nullptr));
  if (fd_waits_ > 0) take_fd_events();
  if (source_ == nullptr) return;
  pollfds_.clear();
  source_->while_busy(&pollfds_);
  if (pollfds_.empty()) return;
  poll(pollfds_.data(), pollfds_.size(), 0);
  source_->polled(pollfds_.data(), pollfds_.size(), /*busy=*/true);
}

Reactor::Holding::Holding(std::string_view kind, std::string_view what, std::string_view trace_id)
    : reactor_(t_current), fiber_(boost::fibers::context::active()), kind_(kind), what_(what), trace_id_(trace_id) {
  if (reactor_ == nullptr) return;
  std::lock_guard<std::mutex> lock(reactor_->holding_mu_);
  next_ = reactor_->holding_;
  if (next_ != nullptr) next_->prev_ = this;
  reactor_->holding_ = this;
}

Reactor::Holding::~Holding() {
  if (reactor_ == nullptr) return;
  std::lock_guard<std::mutex> lock(reactor_->holding_mu_);
  if (prev_ != nullptr) prev_->next_ = next_;
  else reactor_->holding_ = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
}

std::pair<std::string, std::string> Reactor::holding_now() const {
  const boost::fibers::context* running = running_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(holding_mu_);
  for (const Holding* h = holding_; h != nullptr; h = h->next_)
    if (h->fiber_ == running) return {fmt::format("{} {}", h->kind_, h->what_), std::string(h->trace_id_)};
  return {};
}

// Enables the fd's one-shot registration for what its waits want, unless
// it already is: one epoll_ctl per wait that has to sleep.
void Reactor::arm(int fd) noexcept {
  Watched& w = watched_[fd];
  uint32_t want = 0;
  for (const FdWait* x : w.waits)
    if (!x->done) want |= uint32_t(x->events);
  if (want == 0 || (w.armed & want) == want) return;
  epoll_event ev{want | EPOLLONESHOT, {}};
  ev.data.u64 = tag(fd, w.generation);
  int rc = w.registered ? epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) : -1;
  if (rc != 0) {
    // New, or closed since (which removed it): a registration of its own,
    // so events still queued for the old one are told apart.
    ev.data.u64 = tag(fd, ++w.generation);
    rc = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == EEXIST) rc = epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
  }
  if (rc == 0) {
    w.registered = true;
    w.armed = want;
    return;
  }
  // Not pollable by epoll: a regular file is always ready (as poll says),
  // a bad fd is POLLNVAL.
  const short revents = errno == EPERM ? short(want) : short(POLLNVAL);
  for (FdWait* x : w.waits) {
    if (x->done) continue;
    x->revents = short(revents & (x->events | kAlways | POLLNVAL));
    x->done = true;
    ready(x->waiter);
  }
}

void Reactor::take_fd_events() noexcept {
  epoll_event events[64];
  int n;
  do {
    n = epoll_wait(epoll_fd_, events, 64, 0);
    for (int i = 0; i < n; ++i) {
      const int fd = int(uint32_t(events[i].data.u64));
      if (size_t(fd) >= watched_.size()) continue;
      Watched& w = watched_[fd];
      if (w.generation != uint32_t(events[i].data.u64 >> 32)) continue;
      w.armed = 0;   // one shot: disabled until armed again
      const short revents = short(events[i].events);
      bool left = false;
      for (FdWait* x : w.waits) {
        if (x->done) continue;
        if ((revents & (x->events | kAlways)) == 0) {
          left = true;
          continue;
        }
        x->revents = short(revents & (x->events | kAlways));
        x->done = true;
        ready(x->waiter);
      }
      if (left) arm(fd);
    }
  } while (n == 64);
}

void Reactor::end_all_waits() {
  if (fd_waits_ == 0) return;
  for (Watched& w : watched_)
    for (FdWait* x : w.waits) {
      if (x->done) continue;
      x->done = true;
      ready(x->waiter);
    }
}

short Reactor::wait_fd(int fd, short events, Clock::time_point deadline) {
  if (stopping()) return 0;
  if (fd < 0) return POLLNVAL;
  if (size_t(fd) >= watched_.size()) watched_.resize(size_t(fd) + 1);
  FdWait w{fd, events};
  w.waiter = boost::fibers::context::active();
  watched_[fd].waits.push_back(&w);
  ++fd_waits_;
  arm(fd);
  while (!w.done && !stopping() && Clock::now() < deadline) w.waiter->wait_until(deadline);
  // watched_ may have grown meanwhile: index it again.
  std::vector<FdWait*>& waits = watched_[fd].waits;
  waits.erase(std::find(waits.begin(), waits.end(), &w));
  --fd_waits_;
  // What it is armed for is known only while someone waits: the fd may be
  // closed and its number reused before the next wait.
  if (waits.empty()) watched_[fd].armed = 0;
  return w.revents;
}

void Reactor::cancel_waits(int fd) {
  if (fd < 0 || size_t(fd) >= watched_.size()) return;
  Watched& w = watched_[fd];
  w.armed = 0;   // it is about to be closed, often
  for (FdWait* x : w.waits) {
    if (x->done) continue;
    x->done = true;
    ready(x->waiter);
  }
}

}  // namespace tern::detail
