#include "load.h"

#include <random>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <thread>

#include "probe.pb.h"

namespace {

// A fair coin, per thread.
bool coin() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return (rng() & 1) == 0;
}


using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Whether an attempt's error says its request was not processed: the broker
// returned it (no queue), the service refused it unprocessed (a full queue,
// an invalid request) or it was never sent (the deadline had passed, the
// client's in-flight bound, or its link was down: `outcome=not sent`).
// Anything else (a timeout after the publish, a connection lost after it,
// CANCELLED, INTERNAL) leaves the outcome unknown. Only this process's own
// flags (Error::local) count: params come from downstreams too.
bool not_processed(const tern::Error& e) {
  if (e.local.no_route) return true;
  if (e.local.link_failed && !e.local.outcome_unknown) return true;
  switch (e.code) {
    case tern::Code::kResourceExhausted:
    case tern::Code::kInvalidArgument:
      return true;
    case tern::Code::kDeadlineExceeded:
      return e.message.starts_with("deadline passed before calling");
    case tern::Code::kUnavailable:   // refused before publishing: the broker blocked the connection
      return e.message.starts_with("the broker blocked publishing") && e.params.count("outcome") &&
             e.params.at("outcome") == "not sent";
    default:
      return false;
  }
}

}  // namespace

tern::ClientFilter Attempts::filter() {
  return [this](const tern::Context& ctx, tern::OutgoingCall& call,
                const tern::ClientNext& next) -> tern::Result<std::string> {
    probe::ProbeRequest req;
    const std::string key = req.ParseFromString(call.body) ? req.payload() : std::string();
    tern::Result<std::string> r = next(ctx, call);
    bool slow = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!r.ok() && r.error().local.link_failed) {
        ++link_failures_;
        // The newest 10,000: a scenario asks about failures since its fault.
        if (link_failed_.size() >= 10000) link_failed_.pop_front();
        link_failed_.emplace_back(Clock::now(), r.error().message);
      }
      if (r.ok() || !not_processed(r.error())) maybe_processed_.insert(key);
      slow = late_break_ && call.attempt == 1 && ++first_attempts_ % 5 == 0;
    }
    if (slow) boost::this_fiber::sleep_until(ctx.deadline() + 200ms);
    return r;
  };
}

bool Attempts::maybe_processed(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return maybe_processed_.count(key) > 0;
}

int Attempts::link_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return link_failures_;
}

std::optional<Clock::time_point> Attempts::link_failed(const std::string& text, Clock::time_point since) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [at, message] : link_failed_)
    if (at >= since && message.find(text) != std::string::npos) return at;
  return std::nullopt;
}

void Attempts::set_late_break(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  late_break_ = on;
}

Calls run_load(tern::Client& client, const Attempts& attempts, const Load& load) {
  static std::atomic<int> loads{0};
  Calls out;
  // Unique across runs too: requests a run left queued on the same broker
  // must not count as this run's calls.
  out.tag = "L" + std::to_string(++loads) + "." + tern::new_span_id() + "-";
  std::atomic<int> issued{0};
  // The load lasts until the fault has returned, however long its commands
  // take on a slow machine (rabbitmqctl alone takes seconds there): a load
  // that ended first would leave the fault untested. Bounded all the same.
  std::atomic<bool> fault_running{false};
  const int cap = load.calls * 20;
  std::thread faulter;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int c = 0; c < load.concurrency; ++c) {
      fibers.emplace_back([&] {
        while (issued < load.calls || (fault_running && issued < cap)) {
          const int n = ++issued;
          if (n == load.calls / 3 && load.fault) {
            fault_running = true;
            faulter = std::thread([&] {
              load.fault();
              fault_running = false;
            });
          }
          // At random: strictly alternating calls meet a broker that
          // alternates between two instances, and all keyed calls would go
          // to one of them.
          const bool keyed = coin();
          const std::string key = out.tag + kind_prefix(keyed) + tern::new_trace_id();
          probe::ProbeRequest req;
          req.set_sleep_ms(load.sleep_ms);
          req.set_payload(key);
          if (load.pad_bytes > 0) req.set_pad(std::string(load.pad_bytes, 'p'));
          tern::CallOptions opts{.timeout = load.timeout, .max_attempts = 6, .attempt_timeout = 1500ms};
          if (keyed) opts.idempotency_key = key;
          auto ctx = tern::Context::with_timeout(load.timeout);
          const auto start = Clock::now();
          auto r = tern::call<probe::ProbeResponse>(ctx, load.service, "work", req, opts);
          ledger::Outcome o;
          o.key = key;
          o.keyed = keyed;
          o.late = Clock::now() - start > load.timeout + 100ms;
          o.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
          o.code = r.ok() ? "OK" : std::string(tern::code_name(r.code()));
          if (!r.ok()) o.message = r.error().message;
          o.kind = r.ok()                           ? ledger::Outcome::kOk
                   : attempts.maybe_processed(key) ? ledger::Outcome::kIndeterminate
                                                    : ledger::Outcome::kRefused;
          const bool failed = o.kind != ledger::Outcome::kOk;
          out.outcomes.push_back(std::move(o));
          // Past the load's own calls, a link that is down must not turn
          // the fibers into a loop of calls failing fast.
          if (failed && n > load.calls) boost::this_fiber::sleep_for(50ms);
        }
      });
    }
    for (auto& fb : fibers) fb.join();
  });
  if (faulter.joinable()) faulter.join();
  return out;
}
