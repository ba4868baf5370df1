// Spans and metrics the platform records about calls, requests and events.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "tern/error.h"
#include "tern/metrics.h"
#include "tern/trace.pb.h"

namespace tern::detail {

// When something started, on the steady clock: one clock read at each end.
struct SpanClock {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int64_t elapsed_us() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
        .count();
  }
};

// For tests: every span any loop records also goes to `sink` (null: none).
void set_span_sink(std::function<void(const v1::Span&)> sink);
void to_span_sink(const v1::Span& span);
bool has_span_sink();

// The platform's own metrics, in metrics::registry().
namespace metric {
metrics::Counter& server_requests(std::string_view service, std::string_view endpoint, Code code);
metrics::Histogram& server_latency(std::string_view service, std::string_view endpoint);
metrics::Counter& client_calls(std::string_view service, std::string_view downstream, Code code);
metrics::Histogram& client_latency(std::string_view service, std::string_view downstream);
metrics::Counter& client_retries(std::string_view service, std::string_view downstream);
metrics::Gauge& circuits_open(std::string_view service);
metrics::Counter& events_published(std::string_view service, std::string_view type, bool confirmed);
metrics::Counter& events_consumed(std::string_view service, std::string_view type, Code code);
metrics::Counter& events_retried(std::string_view service, std::string_view subscription);
metrics::Counter& events_dead_lettered(std::string_view service, std::string_view subscription);
// A dead-letter queue said no to a copy: the message was held or dropped
// (docs/reliability.md).
metrics::Counter& dead_letters_refused(std::string_view service, std::string_view queue);
metrics::Counter& reconnects(std::string_view service);
metrics::Counter& spans_dropped(std::string_view service);
metrics::Counter& spans_sent(std::string_view service);
// HTTP requests a service answered (serve_http), by route template ("" is
// counted as "(unmatched)"), method and status.
metrics::Counter& http_requests(std::string_view service, std::string_view route, std::string_view method, int status);
metrics::Histogram& http_latency(std::string_view service, std::string_view route);
}  // namespace metric

}  // namespace tern::detail
