#include "tern/metrics.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace tern::metrics {
namespace {

// Label values escape backslash, double quote and newline.
std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k;
    out += "=\"";
    for (char c : v) {
      if (c == '\\') out += "\\\\";
      else if (c == '"') out += "\\\"";
      else if (c == '\n') out += "\\n";
      else out += c;
    }
    out += '"';
  }
  return out + "}";
}

// {a="b"} plus le="0.5" -> {a="b",le="0.5"}
std::string with_le(const std::string& labels, std::string_view le) {
  if (labels.empty()) return fmt::format("{{le=\"{}\"}}", le);
  return fmt::format("{},le=\"{}\"}}", std::string_view(labels).substr(0, labels.size() - 1), le);
}

std::string number(double v) { return fmt::format("{}", v); }

}  // namespace

void Histogram::observe_us(uint64_t micros) {
  const double seconds = static_cast<double>(micros) / 1e6;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(micros, std::memory_order_relaxed);
}

uint64_t Histogram::bucket(size_t i) const {
  uint64_t n = 0;
  for (size_t j = 0; j <= i && j < kBounds.size(); ++j) n += buckets_[j].load(std::memory_order_relaxed);
  return n;
}

Registry::Series& Registry::find(std::string_view name, std::string_view help, Kind kind,
                                 const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), Family{kind, std::string(help), {}}).first;
  if (it->second.kind != kind)
    throw std::logic_error(fmt::format("metric {} is already registered as another kind", name));
  auto& series = it->second.series;
  std::string rendered = render_labels(labels);
  // Label values can come from outside (a service name a gateway request
  // named): past kMaxSeries label sets, new ones share one series
  // {overflow="true"}, so memory and /metrics stay bounded.
  if (series.size() >= kMaxSeries && series.find(rendered) == series.end()) rendered = "{overflow=\"true\"}";
  return series[rendered];
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  Series& s = find(name, help, Kind::kCounter, labels);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  Series& s = find(name, help, Kind::kGauge, labels);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.gauge && !s.read) s.gauge = std::make_unique<Gauge>();
  if (!s.gauge) throw std::logic_error(fmt::format("metric {} is read by a function", name));
  return *s.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, const Labels& labels) {
  Series& s = find(name, help, Kind::kHistogram, labels);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>();
  return *s.histogram;
}

void Registry::gauge_fn(std::string_view name, std::string_view help, const Labels& labels,
                        std::function<double()> read) {
  Series& s = find(name, help, Kind::kGauge, labels);
  std::lock_guard<std::mutex> lock(mu_);
  s.gauge.reset();
  s.read = std::move(read);
}

void Registry::counter_fn(std::string_view name, std::string_view help, const Labels& labels,
                          std::function<double()> read) {
  Series& s = find(name, help, Kind::kCounter, labels);
  std::lock_guard<std::mutex> lock(mu_);
  s.counter.reset();
  s.read = std::move(read);
}

std::string Registry::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    static constexpr std::string_view kTypes[] = {"counter", "gauge", "histogram"};
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name,
                       kTypes[static_cast<int>(family.kind)]);
    for (const auto& [labels, s] : family.series) {
      switch (family.kind) {
        case Kind::kCounter:
          if (s.read) out += fmt::format("{}{} {}\n", name, labels, number(s.read()));
          else out += fmt::format("{}{} {}\n", name, labels, s.counter ? s.counter->value() : 0);
          break;
        case Kind::kGauge:
          out += fmt::format("{}{} {}\n", name, labels,
                             s.read ? number(s.read()) : number(s.gauge ? double(s.gauge->value()) : 0.0));
          break;
        case Kind::kHistogram: {
          const Histogram& h = *s.histogram;
          for (size_t i = 0; i < Histogram::kBounds.size(); ++i)
            out += fmt::format("{}_bucket{} {}\n", name, with_le(labels, number(Histogram::kBounds[i])), h.bucket(i));
          const uint64_t count = std::max(h.count(), h.bucket(Histogram::kBounds.size() - 1));
          out += fmt::format("{}_bucket{} {}\n", name, with_le(labels, "+Inf"), count);
          out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, labels, number(h.sum_seconds()), name, labels, count);
          break;
        }
      }
    }
  }
  return out;
}

Registry& registry() {
  static Registry* r = new Registry();   // never destroyed: threads may still count at exit
  return *r;
}

}  // namespace tern::metrics
