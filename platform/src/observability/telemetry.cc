#include "observability/telemetry.h"

#include "tern/testing.h"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>
#include <unordered_map>

namespace tern::detail {
namespace {

std::mutex& sink_mu() {
  static std::mutex mu;
  return mu;
}
std::function<void(const v1::Span&)>& sink() {
  static std::function<void(const v1::Span&)> fn;
  return fn;
}
std::atomic<bool> g_has_sink{false};


// The registry takes a lock to find a metric; each thread remembers what it
// found, so recording costs a hash lookup and an atomic add.
template <class M, class L>
M& cached(const char* name, std::string_view a, std::string_view b, std::string_view c,
          M& (*find)(const metrics::Labels&), L labels) {
  // Each metric function is its own instantiation (its own L): the labels
  // it was last asked for, on this thread, answer without a key or a hash
  // (a service's requests mostly repeat the endpoint and code).
  struct Last {
    std::string a, b, c;
    M* metric = nullptr;
  };
  thread_local Last last;
  if (last.metric != nullptr && last.a == a && last.b == b && last.c == c) return *last.metric;
  thread_local std::unordered_map<std::string, void*> cache;
  // The key is built in a buffer that keeps its capacity: no allocation
  // once the thread has seen this metric.
  thread_local std::string key;
  key.clear();
  key.append(name).append(1, '\0').append(a).append(1, '\0').append(b).append(1, '\0').append(c);
  auto it = cache.find(key);
  M* m = it != cache.end() ? static_cast<M*>(it->second) : &find(labels());
  if (it == cache.end()) cache.emplace(key, m);
  last.a.assign(a);
  last.b.assign(b);
  last.c.assign(c);
  last.metric = m;
  return *m;
}

}  // namespace

void set_span_sink(std::function<void(const v1::Span&)> fn) {
  std::lock_guard<std::mutex> lock(sink_mu());
  sink() = std::move(fn);
  g_has_sink.store(static_cast<bool>(sink()));
}

bool has_span_sink() { return g_has_sink.load(std::memory_order_relaxed); }

void to_span_sink(const v1::Span& span) {
  if (!g_has_sink.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(sink_mu());
  if (sink()) sink()(span);
}

namespace metric {
using metrics::registry;

metrics::Counter& server_requests(std::string_view service, std::string_view endpoint, Code code) {
  return cached<metrics::Counter>("tern_server_requests_total", service, endpoint, code_name(code),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_server_requests_total", "Requests handled, by endpoint and code", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"endpoint", std::string(endpoint)}, {"code", std::string(code_name(code))}}; });
}
metrics::Histogram& server_latency(std::string_view service, std::string_view endpoint) {
  return cached<metrics::Histogram>("tern_server_request_duration_seconds", service, endpoint, std::string(),
      +[](const metrics::Labels& l) -> metrics::Histogram& { return registry().histogram("tern_server_request_duration_seconds", "Time from delivery to reply", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"endpoint", std::string(endpoint)}}; });
}
metrics::Counter& client_calls(std::string_view service, std::string_view downstream, Code code) {
  return cached<metrics::Counter>("tern_client_calls_total", service, downstream, code_name(code),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_client_calls_total", "Calls made, by downstream service and code", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"downstream", std::string(downstream)}, {"code", std::string(code_name(code))}}; });
}
metrics::Histogram& client_latency(std::string_view service, std::string_view downstream) {
  return cached<metrics::Histogram>("tern_client_call_duration_seconds", service, downstream, std::string(),
      +[](const metrics::Labels& l) -> metrics::Histogram& { return registry().histogram("tern_client_call_duration_seconds", "Calls made, retries included", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"downstream", std::string(downstream)}}; });
}
metrics::Counter& client_retries(std::string_view service, std::string_view downstream) {
  return cached<metrics::Counter>("tern_client_retries_total", service, downstream, std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_client_retries_total", "Attempts after a call's first", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"downstream", std::string(downstream)}}; });
}
metrics::Gauge& circuits_open(std::string_view service) {
  return cached<metrics::Gauge>("tern_client_circuits_open", service, std::string(), std::string(),
      +[](const metrics::Labels& l) -> metrics::Gauge& { return registry().gauge("tern_client_circuits_open", "Circuit breakers now open or half-open", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}}; });
}
metrics::Counter& events_published(std::string_view service, std::string_view type, bool confirmed) {
  return cached<metrics::Counter>("tern_events_published_total", service, type, confirmed ? "confirmed" : "failed",
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_events_published_total", "Events published, by type and outcome", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"type", std::string(type)}, {"outcome", std::string(confirmed ? "confirmed" : "failed")}}; });
}
metrics::Counter& events_consumed(std::string_view service, std::string_view type, Code code) {
  return cached<metrics::Counter>("tern_events_consumed_total", service, type, code_name(code),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_events_consumed_total", "Events handled, by type and code", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"type", std::string(type)}, {"code", std::string(code_name(code))}}; });
}
metrics::Counter& events_retried(std::string_view service, std::string_view subscription) {
  return cached<metrics::Counter>("tern_events_retried_total", service, subscription, std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_events_retried_total", "Events sent to a retry queue", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"subscription", std::string(subscription)}}; });
}
metrics::Counter& events_dead_lettered(std::string_view service, std::string_view subscription) {
  return cached<metrics::Counter>("tern_events_dead_lettered_total", service, subscription, std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_events_dead_lettered_total", "Events given up on", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"subscription", std::string(subscription)}}; });
}
metrics::Counter& dead_letters_refused(std::string_view service, std::string_view queue) {
  return cached<metrics::Counter>("tern_dead_letters_refused_total", service, queue, std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_dead_letters_refused_total", "Copies a dead-letter queue refused (at its length limit)", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"queue", std::string(queue)}}; });
}
metrics::Counter& reconnects(std::string_view service) {
  return cached<metrics::Counter>("tern_broker_reconnects_total", service, std::string(), std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_broker_reconnects_total", "Broker connections re-established", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}}; });
}
metrics::Counter& spans_dropped(std::string_view service) {
  return cached<metrics::Counter>("tern_spans_dropped_total", service, std::string(), std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_spans_dropped_total", "Spans dropped under pressure or without a broker", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}}; });
}
metrics::Counter& spans_sent(std::string_view service) {
  return cached<metrics::Counter>("tern_spans_sent_total", service, std::string(), std::string(),
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_spans_sent_total", "Spans sent to tern.traces", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}}; });
}
metrics::Counter& http_requests(std::string_view service, std::string_view route, std::string_view method, int status) {
  // The method is one of a handful, or "other": a client cannot make labels.
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  std::string_view m = "other";
  for (std::string_view known : kMethods)
    if (method == known) m = known;
  char code[8];
  const auto n = fmt::format_to_n(code, sizeof code, "{}", status).size;
  const std::string_view status_text(code, std::min(n, sizeof code));
  const std::string_view r = route.empty() ? std::string_view("(unmatched)") : route;
  // The cache key holds route and method apart; the status goes third.
  thread_local std::string rm;
  rm.assign(r).append(1, ' ').append(m);
  return cached<metrics::Counter>("tern_http_requests_total", service, rm, status_text,
      +[](const metrics::Labels& l) -> metrics::Counter& { return registry().counter("tern_http_requests_total", "HTTP requests answered, by route template, method and status", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"route", std::string(r)}, {"method", std::string(m)}, {"status", std::string(status_text)}}; });
}
metrics::Histogram& http_latency(std::string_view service, std::string_view route) {
  const std::string_view r = route.empty() ? std::string_view("(unmatched)") : route;
  return cached<metrics::Histogram>("tern_http_request_duration_seconds", service, r, std::string(),
      +[](const metrics::Labels& l) -> metrics::Histogram& { return registry().histogram("tern_http_request_duration_seconds", "Time from a request's last byte to its response, by route template", l); },
      [&] { return metrics::Labels{{"service", std::string(service)}, {"route", std::string(r)}}; });
}
}  // namespace metric

}  // namespace tern::detail

namespace tern::testing {
void set_span_sink(std::function<void(const v1::Span&)> sink) { detail::set_span_sink(std::move(sink)); }
}  // namespace tern::testing
