#include "bench.h"

#include <algorithm>
#include <map>
#include <vector>

#include <boost/fiber/all.hpp>
#include <fmt/format.h>

#include "tern/call.h"
#include "tern/json.h"

namespace tern::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Tally {
  std::vector<uint32_t> latency_us;  // of successful calls
  std::map<std::string, int64_t> errors;
  double seconds = 0;
};

// Runs `calls` calls (or until `until`, if set) from `concurrency` fibers.
Tally load(const std::string& service, const std::string& endpoint, const std::string& body,
           int64_t calls, Clock::time_point until, const BenchOptions& opts) {
  Tally t;
  t.latency_us.reserve(static_cast<size_t>(std::min<int64_t>(calls, 10'000'000)));
  int64_t issued = 0;
  auto more = [&] {
    if (until != Clock::time_point{}) return Clock::now() < until;
    return issued < calls;
  };
  auto start = Clock::now();
  std::vector<boost::fibers::fiber> fibers;
  fibers.reserve(static_cast<size_t>(opts.concurrency));
  for (int i = 0; i < opts.concurrency; ++i) {
    fibers.emplace_back([&] {
      while (more()) {
        ++issued;
        auto ctx = Context::with_timeout(opts.timeout);
        for (const auto& [key, value] : opts.metadata) ctx.set_metadata(key, value);
        auto t0 = Clock::now();
        auto r = call_bytes(ctx, service, endpoint, body, CallOptions{.timeout = opts.timeout});
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
        if (r.ok()) {
          t.latency_us.push_back(static_cast<uint32_t>(us));
        } else {
          t.errors[std::string(code_name(r.code()))]++;
        }
      }
    });
  }
  for (auto& f : fibers) f.join();
  t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return t;
}

double percentile(const std::vector<uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  return sorted[i];
}

std::string ms(double us) { return us >= 1000 ? fmt::format("{:.2f} ms", us / 1000) : fmt::format("{:.0f} µs", us); }

}  // namespace

int run_bench(Client& client, const std::string& service, const std::string& endpoint,
              const std::string& body, const BenchOptions& opts) {
  Tally t = client.run([&] {
    // Warm-up: connections, caches and the broker's queue process settle.
    int64_t warm = opts.duration.count() > 0 ? 1000 : std::clamp<int64_t>(opts.requests / 10, 1, 1000);
    load(service, endpoint, body, warm, {}, opts);
    Clock::time_point until{};
    if (opts.duration.count() > 0) until = Clock::now() + opts.duration;
    return load(service, endpoint, body, opts.requests, until, opts);
  });
  std::sort(t.latency_us.begin(), t.latency_us.end());
  int64_t errors = 0;
  for (const auto& [code, n] : t.errors) errors += n;
  const int64_t done = static_cast<int64_t>(t.latency_us.size()) + errors;
  const double throughput = t.seconds > 0 ? static_cast<double>(done) / t.seconds : 0;
  const double p50 = percentile(t.latency_us, 0.50), p90 = percentile(t.latency_us, 0.90),
               p99 = percentile(t.latency_us, 0.99),
               max = t.latency_us.empty() ? 0 : t.latency_us.back();
  if (opts.json) {
    std::string errs;
    for (const auto& [code, n] : t.errors)
      errs += fmt::format("{}{}:{}", errs.empty() ? "" : ",", tern::json::quote(code), n);
    fmt::print("{{\"requests\":{},\"errors\":{{{}}},\"seconds\":{:.3f},\"throughput\":{:.1f},"
               "\"p50_us\":{:.0f},\"p90_us\":{:.0f},\"p99_us\":{:.0f},\"max_us\":{:.0f}}}\n",
               done, errs, t.seconds, throughput, p50, p90, p99, max);
  } else {
    fmt::print("{}/{}: {} calls, {} concurrent, {:.2f} s\n", service, endpoint, done,
               opts.concurrency, t.seconds);
    fmt::print("  throughput  {:.0f} calls/s\n", throughput);
    fmt::print("  latency     p50 {}  p90 {}  p99 {}  max {}\n", ms(p50), ms(p90), ms(p99), ms(max));
    if (t.errors.empty()) {
      fmt::print("  errors      none\n");
    } else {
      for (const auto& [code, n] : t.errors) fmt::print("  errors      {} {}\n", code, n);
    }
  }
  return errors == 0 ? 0 : 1;
}

}  // namespace tern::cli
