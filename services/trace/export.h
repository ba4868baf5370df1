// service.trace pushes the spans it receives on to what people already run:
// a Zipkin v2 collector (POST /api/v2/spans) or an OpenTelemetry collector's
// OTLP/HTTP JSON endpoint (POST /v1/traces). Batched, bounded: past
// max_queued spans waiting, new ones are dropped and counted, never queued
// without bound and never holding up the tern.traces subscription.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <tern/context.h>
#include <tern/metrics.h>

#include "tern/trace.pb.h"

namespace trace {

enum class ExportFormat { kZipkin, kOtlp };

// TERN_TRACE_EXPORT_FORMAT ("zipkin", "otlp", or empty: OTLP if the URL's
// path ends in /v1/traces, else Zipkin). Throws tern::ConfigError.
ExportFormat export_format(std::string_view url, std::string_view format);

// Spans as OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest
// in its JSON mapping): one resourceSpans per service (resource attribute
// service.name), ids in hex, kinds SERVER (SERVER and HTTP), CLIENT,
// PRODUCER, CONSUMER, times in nanoseconds, the span's tags and tern.* as
// string attributes, status ERROR with the message when the code is not OK.
std::string to_otlp_json(const std::vector<tern::v1::Span>& spans);

class Exporter {
 public:
  struct Options {
    std::string url;                      // TERN_TRACE_EXPORT_URL
    ExportFormat format = ExportFormat::kZipkin;
    size_t max_queued = 20000;            // TERN_TRACE_EXPORT_MAX_QUEUED
    size_t batch = 1000;                  // spans per POST at most
    std::chrono::milliseconds timeout{5000};
  };
  explicit Exporter(Options options);

  // Queues the batch's spans. Thread-safe; never blocks on the network.
  void add(const tern::v1::SpanBatch& batch);
  // POSTs what waits, a batch at a time, until it is sent or a POST fails
  // (that batch is dropped and counted: the next flush starts afresh). One
  // flush at a time; a second caller returns at once. Call from a fiber.
  void flush(const tern::Context& ctx);

 private:
  const Options options_;
  std::mutex mu_;
  std::deque<tern::v1::Span> queue_;
  std::atomic<bool> flushing_{false};
  tern::metrics::Counter& sent_;
  tern::metrics::Counter& dropped_;
  tern::metrics::Counter& failed_;
};

}  // namespace trace
