// Prometheus metrics: counters, gauges and histograms with labels, kept in
// a process-wide registry and rendered in Prometheus' text format. Updating
// a metric is one relaxed atomic add; finding one takes a lock, so hot paths
// keep the reference (metrics live as long as the process).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::metrics {

// Label pairs, in the order given: {{"endpoint", "hello"}, {"code", "OK"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Latency in seconds, buckets from 0.1 ms to 10 s: a call on one host
// takes about 0.35 ms, so the sub-millisecond range is resolved finely.
class Histogram {
 public:
  static constexpr std::array<double, 18> kBounds = {0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001,
                                                     0.0025, 0.005,  0.01,   0.025,  0.05,    0.1,
                                                     0.25,   0.5,    1,      2.5,    5,       10};
  void observe_us(uint64_t micros);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Cumulative count of observations <= kBounds[i].
  uint64_t bucket(size_t i) const;
  double sum_seconds() const { return static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6; }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size()> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_us_{0};
};

class Registry {
 public:
  // Label sets per metric name, at most; more share the series {overflow="true"}.
  static constexpr size_t kMaxSeries = 1000;

  // Finds or makes the metric `name` with these labels. `help` is kept from
  // the first call for a name. A name is one kind only: asking for another
  // kind throws std::logic_error. Thread-safe; references stay valid.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels = {});
  // A gauge read when rendered, e.g. a queue's length.
  void gauge_fn(std::string_view name, std::string_view help, const Labels& labels,
                std::function<double()> read);
  // A counter read when rendered, e.g. the CPU time the kernel counts.
  void counter_fn(std::string_view name, std::string_view help, const Labels& labels,
                  std::function<double()> read);

  // Everything, in Prometheus text exposition format 0.0.4.
  std::string render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    Kind kind;
    std::string help;
    std::map<std::string, Series> series;   // by rendered labels: {a="b",c="d"}
  };
  Series& find(std::string_view name, std::string_view help, Kind kind, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

// The process's registry: what the platform records and /metrics shows.
Registry& registry();

}  // namespace tern::metrics
