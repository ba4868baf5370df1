#include "tern/context.h"

#include <boost/fiber/context.hpp>
#include <boost/fiber/properties.hpp>

#include "core/current.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <thread>

namespace tern {

Context::Context() : cancel_(std::make_shared<CancelState>()) {}

Context Context::with_deadline(Clock::time_point deadline) {
  Context c;
  c.deadline_ = deadline;
  c.trace_id_ = new_trace_id();
  c.span_id_ = new_span_id();
  return c;
}

Context Context::with_timeout(std::chrono::milliseconds timeout) {
  return with_deadline(Clock::now() + timeout);
}

Context Context::from_wire(int64_t deadline_unix_ms, std::string trace_id, std::string span_id,
                           std::string parent_span_id, std::string request_id,
                           std::string caller, Metadata metadata, uint32_t attempt) {
  Context c;
  c.deadline_ = from_unix_ms(deadline_unix_ms);
  c.trace_id_ = trace_id.empty() ? new_trace_id() : std::move(trace_id);
  c.span_id_ = span_id.empty() ? new_span_id() : std::move(span_id);
  c.parent_span_id_ = std::move(parent_span_id);
  c.request_id_ = std::move(request_id);
  c.caller_ = std::move(caller);
  c.metadata_ = std::move(metadata);
  for (auto it = c.metadata_.begin(); it != c.metadata_.end();) {
    if (!is_credential(it->first)) {
      ++it;
      continue;
    }
    c.credentials_.insert(c.metadata_.extract(it++));
  }
  c.attempt_ = attempt == 0 ? 1 : attempt;
  return c;
}

int64_t Context::deadline_unix_ms() const { return to_unix_ms(deadline_); }

std::chrono::milliseconds Context::remaining() const {
  auto left = deadline_ - Clock::now();
  if (left <= Clock::duration::zero()) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(left);
}

void Context::cancel() {
  // This state and every state derived from it that registered hooks: the
  // hooks were registered on each ancestor too, so this level's are enough.
  cancel_->cancelled.store(true, std::memory_order_relaxed);
  std::vector<std::pair<uint64_t, std::function<void()>>> hooks;
  {
    std::lock_guard<std::mutex> lock(cancel_->mu);
    hooks.swap(cancel_->hooks);
  }
  for (auto& [handle, fn] : hooks) fn();
}

namespace {
std::atomic<uint64_t> g_next_hook{1};

// The hook registered as `handle` (hooks are few: a linear search).
auto find_hook(std::vector<std::pair<uint64_t, std::function<void()>>>& hooks, uint64_t handle) {
  return std::find_if(hooks.begin(), hooks.end(), [handle](const auto& h) { return h.first == handle; });
}
}

uint64_t Context::on_cancel(std::function<void()> fn) const {
  const uint64_t handle = g_next_hook.fetch_add(1, std::memory_order_relaxed);
  if (cancel_->parent == nullptr) {
    // One level (a root context, or a handler's): its cancel takes the
    // hooks out once, so each runs once without a shared flag.
    {
      std::lock_guard<std::mutex> lock(cancel_->mu);
      cancel_->hooks.emplace_back(handle, std::move(fn));
    }
    if (cancelled()) {
      std::function<void()> run;
      {
        std::lock_guard<std::mutex> lock(cancel_->mu);
        auto it = find_hook(cancel_->hooks, handle);
        if (it != cancel_->hooks.end()) {
          run = std::move(it->second);
          cancel_->hooks.erase(it);
        }
      }
      if (run) run();
    }
    return handle;
  }
  // One state shared by every level the hook is registered on, so it runs
  // once even when several of them are cancelled.
  struct Once {
    std::atomic<bool> ran{false};
    std::function<void()> fn;
  };
  auto once = std::make_shared<Once>();
  once->fn = std::move(fn);
  auto run = [once] {
    if (!once->ran.exchange(true)) once->fn();
  };
  for (CancelState* s = cancel_.get(); s != nullptr; s = s->parent.get()) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->hooks.emplace_back(handle, run);
  }
  if (cancelled()) run();
  return handle;
}

void Context::remove_on_cancel(uint64_t handle) const {
  for (CancelState* s = cancel_.get(); s != nullptr; s = s->parent.get()) {
    std::lock_guard<std::mutex> lock(s->mu);
    if (auto it = find_hook(s->hooks, handle); it != s->hooks.end()) s->hooks.erase(it);
  }
}

bool Context::cancelled() const {
  for (const CancelState* s = cancel_.get(); s != nullptr; s = s->parent.get()) {
    if (s->cancelled.load(std::memory_order_relaxed)) return true;
  }
  return false;
}

Context Context::child(std::chrono::milliseconds timeout) const {
  Context c;
  c.deadline_ = std::min(deadline_, Clock::now() + timeout);
  c.trace_id_ = trace_id_;
  c.span_id_ = new_span_id();
  c.parent_span_id_ = span_id_;
  c.caller_ = caller_;
  c.verified_caller_ = verified_caller_;
  c.metadata_ = metadata_;
  c.cancel_->parent = cancel_;
  c.transport_ = transport_;
  return c;
}

namespace detail {

// splitmix64, seeded per thread from the OS.
uint64_t next_random_u64() {
  thread_local uint64_t state = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           std::hash<std::thread::id>{}(std::this_thread::get_id());
  }();
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace detail

namespace {

// The two lowercase hex digits of every byte value.
constexpr std::array<char, 512> kHexPairs = [] {
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = "0123456789abcdef"[b >> 4];
    t[2 * b + 1] = "0123456789abcdef"[b & 0xf];
  }
  return t;
}();

// 16 lowercase hex digits of v, most significant first, into out[0..16):
// a byte (two digits) at a time.
void write_hex(char* out, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) std::memcpy(out + 2 * i, &kHexPairs[2 * (v & 0xff)], 2);
}

}  // namespace

std::string new_trace_id() {
  std::string s(32, '\0');
  write_hex(s.data(), detail::next_random_u64());
  write_hex(s.data() + 16, detail::next_random_u64());
  return s;
}

std::string new_span_id() {
  std::string s(16, '\0');
  write_hex(s.data(), detail::next_random_u64());
  return s;
}

int64_t to_unix_ms(Context::Clock::time_point t) {
  auto from_now = t - Context::Clock::now();
  auto wall = std::chrono::system_clock::now() +
              std::chrono::duration_cast<std::chrono::system_clock::duration>(from_now);
  return std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
}

Context::Clock::time_point from_unix_ms(int64_t unix_ms) {
  // Any int64 may come from the wire; nanoseconds since the epoch overflow
  // past the year 2262, so the time is held to 1970-2200 first.
  constexpr int64_t kLatest = 7258118400000;   // 2200-01-01T00:00:00Z
  unix_ms = std::clamp<int64_t>(unix_ms, 0, kLatest);
  auto wall = std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms));
  auto from_now = wall - std::chrono::system_clock::now();
  return Context::Clock::now() + std::chrono::duration_cast<Context::Clock::duration>(from_now);
}

}  // namespace tern

namespace tern {
namespace detail {

// Each fiber's current context, kept in the fiber's own properties slot
// (Boost.Fiber's per-fiber pointer for scheduler data, which tern's
// scheduler does not use): made on a fiber's first ScopedCurrent, freed
// with the fiber. A plain field read, where a fiber_specific_ptr is a map
// lookup. Only fibers of a tern runtime have one: asking Boost.Fiber on any
// other thread would give that thread a scheduler of its own.
struct CurrentSlot final : boost::fibers::fiber_properties {
  using fiber_properties::fiber_properties;
  const Context* ctx = nullptr;
};

namespace {
CurrentSlot* current_slot(bool make) {
  boost::fibers::context* fiber = boost::fibers::context::active();
  auto* slot = static_cast<CurrentSlot*>(fiber->get_properties());
  if (slot == nullptr && make) {
    slot = new CurrentSlot(fiber);
    fiber->set_properties(slot);
  }
  return slot;
}
}  // namespace

ScopedCurrent::ScopedCurrent(const Context* ctx) {
  if (thread_transport() == nullptr) return;
  slot_ = current_slot(true);
  previous_ = slot_->ctx;
  slot_->ctx = ctx;
}

ScopedCurrent::~ScopedCurrent() {
  if (slot_ != nullptr) slot_->ctx = previous_;
}

}  // namespace detail

const Context* Context::current() {
  if (detail::thread_transport() == nullptr) return nullptr;
  const detail::CurrentSlot* slot = detail::current_slot(false);
  return slot == nullptr ? nullptr : slot->ctx;
}

}  // namespace tern
