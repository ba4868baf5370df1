// A transactional inbox next to the outbox (MassTransit's inbox, in
// SQLite): a request's idempotency key and its answer are written in the
// same local transaction as the handler's own rows and the events they
// cause, so a key is recorded exactly when its effect is, and a repeat of
// the key (a redelivery, a client's retry, on any instance that shares the
// database file) gets the stored answer without running the handler.
//
//   tern::Inbox inbox(common::data_file(dir, "service.transaction"));
//   svc.handle("create", inbox.handler("create",
//       [](tern::Context& ctx, const CreateRequest& req, tern::InboxTransaction& tx)
//           -> tern::Result<Transaction> {
//         insert(tx.db(), ...);                  // the service's own rows
//         tx.publish(ctx, created);              // an event, through the outbox
//         return transaction;                    // kept with the key
//       }));
//   svc.subscribe<Created>("transaction.created",
//                          inbox.on_event<Created>("balance", OnCreated));   // once per event id
//   svc.every(1s, [&](tern::Context& ctx) { inbox.relay(ctx); });
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <boost/fiber/mutex.hpp>
#include <google/protobuf/message.h>

#include "tern/context.h"
#include "tern/error.h"
#include "tern/outbox.h"

struct sqlite3;

namespace tern {

struct InboxOptions {
  // How long an answer is kept and replayed; expire() removes older ones.
  std::chrono::milliseconds keep{std::chrono::hours(24 * 7)};
  // How long a transaction waits for another process's write lock before
  // the request is answered UNAVAILABLE (retryable), never past its
  // deadline. Only the waiting fiber sleeps.
  std::chrono::milliseconds busy_timeout{5000};
};

// The open transaction a function passed to Inbox::run writes through.
// Valid only during that call, on its fiber.
class InboxTransaction {
 public:
  // The connection, for the service's own statements (same transaction).
  sqlite3* db() const { return outbox_.db(); }
  // Queues `event` in the outbox, in this transaction: it is published
  // (Inbox::relay) only if the transaction commits.
  void publish(const Context& ctx, const google::protobuf::Message& event) { outbox_.add(ctx, event); }
  // The key this transaction records; empty for a request without one.
  const std::string& key() const { return key_; }

  InboxTransaction(Outbox& outbox, std::string key) : outbox_(outbox), key_(std::move(key)) {}

 private:
  Outbox& outbox_;
  const std::string key_;
};

namespace detail {
// Deduces Req and Resp from `Result<Resp>(Context&, const Req&, InboxTransaction&)`.
template <class F>
struct inbox_handler_traits : inbox_handler_traits<decltype(&std::remove_cvref_t<F>::operator())> {};
template <class R, class Req>
struct inbox_handler_traits<R (*)(Context&, const Req&, InboxTransaction&)> {
  using Request = Req;
  using Response = typename R::value_type;
};
template <class R, class Req>
struct inbox_handler_traits<R(Context&, const Req&, InboxTransaction&)>
    : inbox_handler_traits<R (*)(Context&, const Req&, InboxTransaction&)> {};
template <class C, class R, class Req>
struct inbox_handler_traits<R (C::*)(Context&, const Req&, InboxTransaction&) const>
    : inbox_handler_traits<R (*)(Context&, const Req&, InboxTransaction&)> {};
template <class C, class R, class Req>
struct inbox_handler_traits<R (C::*)(Context&, const Req&, InboxTransaction&)>
    : inbox_handler_traits<R (*)(Context&, const Req&, InboxTransaction&)> {};
}  // namespace detail

// Thread-safe: one fiber mutex serializes every use of its connection
// (a waiting fiber parks; the thread runs others). Across processes
// sharing the file, SQLite's write lock (BEGIN IMMEDIATE, WAL journal)
// serializes transactions: a repeat of a key still running elsewhere waits
// for its commit, then replays it. Run functions hold the write lock: they
// should write, not call other services or wait.
class Inbox {
 public:
  // Opens or creates the database at `path`, with tables tern_inbox and
  // tern_outbox next to the service's own. Throws std::runtime_error.
  explicit Inbox(const std::string& path, InboxOptions options = {});
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // Runs fn (Result<Resp>(InboxTransaction&)) in one transaction with the
  // key ctx.idempotency_key() in `scope` (say, the endpoint's name: keys of
  // different scopes never meet):
  // - the key was committed before: fn does not run; the stored answer
  //   (the reply, or the error) comes back, whichever instance stored it;
  // - fn returns a value: its rows, its events, the key and the reply
  //   commit together, or (a crash, a throw, a failed commit) none do;
  // - fn returns an error that is not retryable: its rows and events are
  //   rolled back, the key is kept with the error, repeats get the error;
  // - fn returns a retryable error or throws: nothing is kept; a repeat
  //   runs fn again (a throw is rethrown);
  // - another process held the write lock past options.busy_timeout or the
  //   deadline: UNAVAILABLE, retryable, fn did not run, nothing is kept;
  // - `fingerprint` (say, the serialized request), when given, is kept with
  //   the key; a repeat with another one is INVALID_ARGUMENT
  //   (param idempotency_key=reused), fn does not run.
  // Without a key fn still runs in one transaction, and nothing is kept.
  template <class Resp, class F>
  Result<Resp> run(const Context& ctx, std::string_view scope, F&& fn, std::string_view fingerprint = {}) {
    Result<std::string> r = run_bytes(
        ctx, scope, ctx.idempotency_key(), fingerprint, true, [&](InboxTransaction& tx) -> Result<std::string> {
          Result<Resp> out = fn(tx);
          if (!out.ok()) return std::move(out.error());
          return out->SerializeAsString();
        });
    if (!r.ok()) return std::move(r.error());
    Resp resp;
    if (!resp.ParseFromString(*r))
      return Error{Code::kInternal, "the inbox holds an answer that is not a " + Resp::descriptor()->full_name()};
    return resp;
  }

  // A handler for Service::handle: fn is
  // Result<Resp>(Context&, const Req&, InboxTransaction&), run as run()
  // does with the request as its fingerprint.
  template <class F>
  auto handler(std::string scope, F fn) {
    using Req = typename detail::inbox_handler_traits<F>::Request;
    using Resp = typename detail::inbox_handler_traits<F>::Response;
    return [this, scope = std::move(scope), fn = std::move(fn)](Context& ctx, const Req& req) -> Result<Resp> {
      return run<Resp>(
          ctx, scope, [&](InboxTransaction& tx) { return fn(ctx, req, tx); }, req.SerializeAsString());
    };
  }

  // A subscriber for Service::subscribe: fn is
  // Error(Context&, const Event&, InboxTransaction&), run once per event id
  // (the envelope's, which an outbox keeps across relays) in `scope`: the
  // id commits with fn's rows when fn returns ok; a duplicate is acked
  // without running fn; an error keeps nothing, so the platform's retries
  // and a replay from the dead-letter queue run fn again.
  template <class Event, class F>
  auto on_event(std::string scope, F fn) {
    return [this, scope = std::move(scope), fn = std::move(fn)](Context& ctx, const Event& event) -> Error {
      return run_event(ctx, scope, [&](InboxTransaction& tx) { return fn(ctx, event, tx); });
    };
  }
  // What on_event runs: fn (Error(InboxTransaction&)) once per event id,
  // ctx.request_id() in a subscriber (none: fn runs, nothing is kept).
  // kOk for a duplicate; UNAVAILABLE as run() for a busy database.
  Error run_event(const Context& ctx, std::string_view scope, const std::function<Error(InboxTransaction&)>& fn) {
    Result<std::string> r = run_bytes(ctx, scope, ctx.request_id(), {}, false,
                                      [&](InboxTransaction& tx) -> Result<std::string> {
                                        Error e = fn(tx);
                                        if (!e.ok()) return e;
                                        return std::string();
                                      });
    return r.ok() ? ok() : std::move(r.error());
  }

  // Runs fn(sqlite3*) under the inbox's lock, outside any transaction: for
  // the service's reads. Returns what fn returns.
  template <class F>
  auto read(F&& fn) {
    std::lock_guard<boost::fibers::mutex> lock(mu_);
    return fn(outbox_.db());
  }

  // The outbox's relay (Outbox::relay) and pending count, under the lock.
  int relay(const Context& ctx);
  int pending();

  // Removes answers older than options.keep; returns how many. Call it now
  // and then (Service::every).
  int expire();
  // Answers served from the inbox without running fn, by this object.
  int64_t replayed() const { return replayed_.load(std::memory_order_relaxed); }

  // The non-template core of run() and on_event(): `record_errors` keeps
  // non-retryable errors with the key (requests) or not (events).
  Result<std::string> run_bytes(const Context& ctx, std::string_view scope, std::string_view key,
                                std::string_view fingerprint, bool record_errors,
                                const std::function<Result<std::string>(InboxTransaction&)>& fn);

 private:
  const InboxOptions options_;
  boost::fibers::mutex mu_;
  Outbox outbox_;
  std::atomic<int64_t> replayed_{0};
};

}  // namespace tern
