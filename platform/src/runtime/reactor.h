// The reactor: one OS thread's fiber scheduler and poller. Fibers of the
// thread run round-robin; when none is ready the thread sleeps in ppoll() on
// an eventfd (cross-thread wake-ups), the sockets of its IoSource (the broker
// link) and one epoll instance holding the fds fibers wait on (HTTP), never
// longer than the next fiber timer. A wake costs the same with ten thousand
// idle connections as with none. It knows nothing of AMQP or RPC.
//
// Threads: post() and stop() are thread-safe; everything else is for the
// reactor's own thread, from its fibers.
#pragma once

#include <poll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <mutex>
#include <vector>

#include <boost/fiber/all.hpp>

namespace tern::detail {

using Clock = std::chrono::steady_clock;

// Sockets the reactor polls for someone else. The hooks run inside the
// scheduler: they must not switch fibers (no waits, no fiber creation); they
// may make fibers ready (context::schedule).
class IoSource {
 public:
  virtual ~IoSource() = default;
  // No fiber is ready: the thread is about to sleep until *wake_at. Flush
  // output, append the fds to watch, lower *wake_at if something is due.
  virtual void before_sleep(std::vector<pollfd>* fds, Clock::time_point* wake_at) noexcept = 0;
  // Fibers keep the thread busy: append the fds to look at without waiting.
  virtual void while_busy(std::vector<pollfd>* fds) noexcept = 0;
  // After the poll: `fds` are the ones this source appended, with revents.
  virtual void polled(const pollfd* fds, size_t n, bool busy) noexcept = 0;
};

class Reactor {
 public:
  // What the calling fiber is handling, for the watchdog to name if the
  // thread stops switching fibers meanwhile: on the fiber's stack, after
  // (so destroyed before) what `what` and `trace_id` point into. A no-op
  // off a reactor thread.
  class Holding {
   public:
    Holding(std::string_view kind, std::string_view what, std::string_view trace_id);
    ~Holding();
    Holding(const Holding&) = delete;
    Holding& operator=(const Holding&) = delete;

   private:
    friend class Reactor;
    Reactor* reactor_;
    boost::fibers::context* fiber_;
    std::string_view kind_, what_, trace_id_;
    Holding* next_ = nullptr;
    Holding* prev_ = nullptr;
  };
  // For the watchdog, from any thread: fiber switches so far, whether the
  // thread is asleep waiting for something to do, and what the fiber
  // running now holds ("kind what", trace id), empty if nothing.
  uint64_t turns() const { return turns_.load(std::memory_order_relaxed); }
  bool idle() const { return idle_.load(std::memory_order_relaxed); }
  std::pair<std::string, std::string> holding_now() const;

  // stack_bytes: each fiber's stack (pooled).
  explicit Reactor(size_t stack_bytes);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // On the thread that will run the fibers, before any: installs the
  // scheduler and starts the fiber that runs posted work.
  void attach();
  // At the end of that thread: ends the waits and lets fibers still
  // running finish (spawned fibers must end on their own).
  void detach();

  // The reactor of the calling thread, or null.
  static Reactor* current();

  // Thread-safe. Runs fn in a new fiber on this reactor.
  void post(std::function<void()> fn);
  // Runs fn (a callable taking nothing) in a new fiber. Reactor thread only.
  template <class F>
  void spawn(F&& fn) {
    boost::fibers::fiber(std::allocator_arg, *stacks_, std::forward<F>(fn)).detach();
  }

  // Thread-safe. From now on stopping() is true: fd waits end, and the
  // parts built on the reactor wind down.
  void stop();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // Parks the calling fiber until `fd` is ready for `events` (POLLIN,
  // POLLOUT), `deadline` passes, cancel_waits(fd) is called or the reactor
  // stops. Returns poll()'s revents, 0 if the fd did not become ready.
  short wait_fd(int fd, short events, Clock::time_point deadline);
  // Ends every wait_fd on `fd` (they return 0).
  void cancel_waits(int fd);

  // At most one source (the broker link); null for none.
  void set_source(IoSource* source) { source_ = source; }
  // Makes `fiber` ready unless it already is. Reactor thread only.
  static void ready(boost::fibers::context* fiber) noexcept;

 private:
  class Scheduler;
  struct FdWait;
  // The waits on one fd number, and its one-shot epoll registration.
  struct Watched {
    std::vector<FdWait*> waits;
    uint32_t armed = 0;         // events the registration is enabled for; 0: disabled or unknown
    uint32_t generation = 0;    // of the registration: events of an older one are ignored
    bool registered = false;    // an ADD was done (the fd may have been closed since)
  };

  void sleep_until(Clock::time_point until) noexcept;   // scheduler: nothing ready
  void busy_check() noexcept;                           // scheduler: busy for a while
  void wake() noexcept;                                 // scheduler: notify()
  void posted_fiber();
  void arm(int fd) noexcept;
  void take_fd_events() noexcept;                       // epoll_wait without waiting
  void end_all_waits();

  int event_fd_ = -1;
  std::unique_ptr<boost::fibers::pooled_fixedsize_stack> stacks_;
  IoSource* source_ = nullptr;
  // The longest the thread sleeps with nothing due: a bound, not a timer
  // anyone relies on (the source lowers wake_at for what it needs, the
  // broker link for its heartbeats).
  static constexpr std::chrono::milliseconds kIdleWait{1000};
  std::atomic<bool> stopping_{false};

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> posted_pending_{false};
  boost::fibers::context* parked_poster_ = nullptr;
  boost::fibers::fiber poster_;

  int epoll_fd_ = -1;
  std::vector<Watched> watched_;   // by fd number
  size_t fd_waits_ = 0;            // FdWaits in watched_, done or not
  std::vector<pollfd> pollfds_;

  // The watchdog's view. turns_ and running_ are written by this thread
  // only (plain stores, no read-modify-write on the switch path).
  std::atomic<uint64_t> turns_{0};
  std::atomic<bool> idle_{false};
  std::atomic<boost::fibers::context*> running_{nullptr};
  mutable std::mutex holding_mu_;
  Holding* holding_ = nullptr;   // a list of the fibers' Holdings
};

}  // namespace tern::detail
