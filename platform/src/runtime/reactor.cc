#include "runtime/reactor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace tern::detail {
namespace {
thread_local Reactor* t_current = nullptr;
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
    if (queue_.empty()) return nullptr;
    boost::fibers::context* ctx = &queue_.front();
    queue_.pop_front();
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
}

Reactor::~Reactor() {
  if (event_fd_ >= 0) close(event_fd_);
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
  add_fd_waits();
  if (posted_pending_.load(std::memory_order_acquire) || stopping()) wake_at = now;
  auto left = std::max(wake_at - Clock::now(), Clock::duration::zero());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  int rc = ppoll(pollfds_.data(), pollfds_.size(), &ts, nullptr);
  if (rc > 0 && pollfds_[0].revents != 0) {
    uint64_t drained;
    [[maybe_unused]] ssize_t r = read(event_fd_, &drained, sizeof drained);
  }
  if (rc > 0) wake_fd_waits(first_wait);
  if (source_ != nullptr) source_->polled(pollfds_.data() + 1, first_wait - 1, /*busy=*/false);
  if (posted_pending_.load(std::memory_order_acquire)) ready(std::exchange(parked_poster_, nullptr));
  if (stopping()) end_all_waits();
}

void Reactor::busy_check() noexcept {
  if (posted_pending_.load(std::memory_order_acquire)) ready(std::exchange(parked_poster_, nullptr));
  pollfds_.clear();
  if (source_ != nullptr) source_->while_busy(&pollfds_);
  const size_t first_wait = pollfds_.size();
  add_fd_waits();
  if (pollfds_.empty()) return;
  const bool any = poll(pollfds_.data(), pollfds_.size(), 0) > 0;
  if (any) wake_fd_waits(first_wait);
  if (source_ != nullptr) source_->polled(pollfds_.data(), first_wait, /*busy=*/true);
}

void Reactor::add_fd_waits() {
  for (FdWait* w : fd_waits_)
    if (!w->done) pollfds_.push_back(pollfd{w->fd, w->events, 0});
}

void Reactor::wake_fd_waits(size_t first) {
  size_t i = first;
  for (FdWait* w : fd_waits_) {
    if (w->done) continue;
    const short revents = pollfds_[i++].revents;
    if (revents == 0) continue;
    w->revents = revents;
    w->done = true;
    ready(w->waiter);
  }
}

void Reactor::end_all_waits() {
  for (FdWait* w : fd_waits_) {
    if (w->done) continue;
    w->done = true;
    ready(w->waiter);
  }
}

short Reactor::wait_fd(int fd, short events, Clock::time_point deadline) {
  if (stopping()) return 0;
  FdWait w{fd, events};
  w.waiter = boost::fibers::context::active();
  fd_waits_.push_back(&w);
  while (!w.done && !stopping() && Clock::now() < deadline) w.waiter->wait_until(deadline);
  fd_waits_.erase(std::find(fd_waits_.begin(), fd_waits_.end(), &w));
  return w.revents;
}

void Reactor::cancel_waits(int fd) {
  for (FdWait* w : fd_waits_) {
    if (w->fd != fd || w->done) continue;
    w->done = true;
    ready(w->waiter);
  }
}

}  // namespace tern::detail
