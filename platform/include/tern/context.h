// Context: what a request carries through a service and into its downstream
// calls — the absolute deadline, the trace, metadata and cancellation.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include <string_view>

namespace tern {

class Transport;

// A Context is owned by one fiber at a time; it is not safe to use from two
// fibers or threads at once, except cancel()/cancelled(), which are.
class Context {
 public:
  using Clock = std::chrono::steady_clock;
  using Metadata = std::map<std::string, std::string>;

  // A root context: a new trace, the deadline `timeout` from now.
  static Context with_timeout(std::chrono::milliseconds timeout);
  static Context with_deadline(Clock::time_point deadline);

  // The absolute deadline (steady clock) and the same instant as Unix
  // milliseconds, the form it takes on the wire.
  Clock::time_point deadline() const { return deadline_; }
  int64_t deadline_unix_ms() const;
  // Time left before the deadline; zero once it has passed.
  std::chrono::milliseconds remaining() const;
  bool expired() const { return Clock::now() >= deadline_; }

  const std::string& trace_id() const { return trace_id_; }
  const std::string& span_id() const { return span_id_; }
  const std::string& parent_span_id() const { return parent_span_id_; }
  // In a handler: the request's id.
  const std::string& request_id() const { return request_id_; }
  // In a handler: who sent the request or event, as the broker verified it
  // (the AMQP user_id of the publisher's connection, which RabbitMQ checks
  // against its login). The one to base decisions on. Empty where nothing
  // verified it (a context made in-process, a fake transport).
  const std::string& caller() const { return verified_caller_; }
  void set_caller(std::string verified) { verified_caller_ = std::move(verified); }
  // The name the caller declared in the envelope ("from"): for logs and
  // spans only, never for decisions: anyone can write it.
  const std::string& declared_caller() const { return caller_; }
  // Which attempt of the caller's this request is: 1, then 2 for a retry...
  uint32_t attempt() const { return attempt_; }
  // In a handler: the idempotency key the caller sent with this request
  // (CallOptions::idempotency_key), or empty. It does not travel on by
  // itself: a handler passes it (or a key made from it) to the calls that
  // must happen once per key, as tern::Inbox does with its transaction.
  const std::string& idempotency_key() const { return idempotency_key_; }
  // For the platform, and for tests of handlers that read the key.
  void set_idempotency_key(std::string key) { idempotency_key_ = std::move(key); }

  // Metadata travels to every downstream call made with this context.
  const Metadata& metadata() const { return metadata_; }
  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  // Stops `key` from travelling further, e.g. credentials once checked.
  void erase_metadata(const std::string& key) { metadata_.erase(key); }

  // Credentials among the metadata a request arrived with (the keys
  // is_credential names: authorization, cookie, proxy-authorization): for
  // this service to check, never passed on. from_wire keeps them here, out
  // of metadata(), so no downstream call, event, span or log made from
  // this context carries them. Null if the request had none.
  const std::string* credential(const std::string& key) const {
    auto it = credentials_.find(key);
    return it == credentials_.end() ? nullptr : &it->second;
  }
  static bool is_credential(std::string_view key) {
    return key == "authorization" || key == "cookie" || key == "proxy-authorization";
  }

  // Cancelling a context cancels every context derived from it, and ends
  // the calls waiting on it (and on those) with CANCELLED. Thread-safe.
  void cancel();
  bool cancelled() const;

  // Runs `fn` once if this context (or one it derives from) is cancelled
  // while the hook is registered; `fn` runs on the cancelling thread and
  // must only hand work off (e.g. post it to a loop). Returns a handle for
  // remove_on_cancel. For the platform; thread-safe.
  uint64_t on_cancel(std::function<void()> fn) const;
  void remove_on_cancel(uint64_t handle) const;

  // The context of an outgoing call made from this one: same trace, a new
  // span whose parent is this context's span, and a deadline of
  // min(this deadline, now + timeout) — never later than this one's.
  Context child(std::chrono::milliseconds timeout) const;

  // Where tern::call sends requests made with this context. Null means the
  // tern runtime of the current thread (a service's or a Client's fibers).
  Transport* transport() const { return transport_; }
  void set_transport(Transport* t) { transport_ = t; }

  // The context of the request, event or HTTP request the calling fiber is
  // handling (the platform sets it around handlers), or null: for logs and
  // tracing. Valid until the handler returns.
  static const Context* current();

  // Builds a server-side context from what arrived on the wire. For the
  // platform and for tests; handlers receive theirs ready-made.
  static Context from_wire(int64_t deadline_unix_ms, std::string trace_id, std::string span_id,
                           std::string parent_span_id, std::string request_id,
                           std::string caller, Metadata metadata, uint32_t attempt = 1);

 private:
  struct CancelState {
    std::atomic<bool> cancelled{false};
    std::shared_ptr<CancelState> parent;
    std::mutex mu;
    std::vector<std::pair<uint64_t, std::function<void()>>> hooks;   // in the order registered
  };
  Context();

  Clock::time_point deadline_;
  std::string trace_id_;
  std::string span_id_;
  std::string parent_span_id_;
  std::string request_id_;
  std::string caller_;            // declared
  std::string verified_caller_;
  std::string idempotency_key_;
  Metadata metadata_;
  Metadata credentials_;
  uint32_t attempt_ = 1;
  std::shared_ptr<CancelState> cancel_;
  Transport* transport_ = nullptr;
};

// Random lowercase-hex identifiers, as the platform makes them: 32 characters
// for trace ids and request ids (new_trace_id), 16 for span ids
// (new_span_id). Unique enough for ids and unguessable by accident, but not
// cryptographic: never use one as a secret or a token. Thread-safe (each
// thread has its own generator) and cheap; call them from anywhere.
std::string new_trace_id();
std::string new_span_id();

// The steady-clock instant `t` as Unix milliseconds (the form deadlines take
// on the wire: Context::from_wire, deadline_unix_ms), and back. Each reads
// both clocks now, so a round trip is exact only to a millisecond or so and
// follows any step of the wall clock in between. from_unix_ms takes any
// int64 (a caller's deadline_unix_ms) and holds it to 1970-2200: no
// overflow. Thread-safe.
int64_t to_unix_ms(Context::Clock::time_point t);
Context::Clock::time_point from_unix_ms(int64_t unix_ms);

namespace detail {
// A fast per-thread pseudo-random number (not cryptographic).
uint64_t next_random_u64();
struct CurrentSlot;   // a fiber's current context (core/context.cc)
// Makes `ctx` the calling fiber's Context::current() until destroyed.
class ScopedCurrent {
 public:
  explicit ScopedCurrent(const Context* ctx);
  ~ScopedCurrent();
  ScopedCurrent(const ScopedCurrent&) = delete;
  ScopedCurrent& operator=(const ScopedCurrent&) = delete;

 private:
  CurrentSlot* slot_ = nullptr;   // null off a runtime's fibers
  const Context* previous_ = nullptr;
};
}  // namespace detail

}  // namespace tern
