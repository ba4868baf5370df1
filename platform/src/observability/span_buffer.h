// Spans waiting to leave, per reactor thread: recorded without locks into
// slots that are reused batch after batch (their strings keep their
// capacity, so recording allocates nothing once warm), encoded straight to
// protobuf's wire format only when a batch is sent, about once a second, as
// one tern.v1.SpanBatch.
// Past kMaxSpans waiting, with tracing off, or with the broker pushing back,
// spans are dropped and counted, never queued without bound. Head sampling:
// a span is kept if its trace id falls in the sampled fraction (the same
// choice in every process for one trace), or it failed, or it was slow.
// Reactor thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tern/error.h"
#include "tern/trace.pb.h"

namespace tern::detail {

// One span as the request path records it. The strings are assigned, never
// built: a slot's buffers are reused.
struct SpanRecord {
  v1::Span::Kind kind = v1::Span::KIND_UNSPECIFIED;
  Code code = Code::kOk;
  uint32_t attempt = 0;
  int http_status = 0;                       // HTTP: the response status
  std::chrono::steady_clock::time_point start;
  int64_t duration_us = 0;
  std::string trace_id, span_id, parent_span_id;
  std::string name;   // CLIENT "service/endpoint", SERVER endpoint, HTTP "METHOD /route/{template}"
  std::string peer;
  std::string error;  // the message, when code is not OK
  const char* tag_key = nullptr;             // one kind-specific tag (request_id, event_id, ...)
  std::string tag_value;
  std::string http_method, http_path, http_route;   // HTTP: method, raw path, route template
};

struct SamplingOptions {
  double rate = 1.0;                                 // TERN_TRACE_SAMPLE: fraction of traces kept
  std::chrono::microseconds slow{100'000};           // TERN_TRACE_SLOW_MS: kept whatever the rate
};

// True if the trace `trace_id` (hex) is in the sampled fraction `rate`:
// decided by its last 8 hex digits, so every process agrees.
bool trace_sampled(std::string_view trace_id, double rate);

class SpanBuffer {
 public:
  static constexpr size_t kBatch = 512;
  static constexpr size_t kMaxSpans = 8192;
  static constexpr size_t kKeptSlots = 2 * kBatch;   // slots kept warm between batches
  static constexpr auto kFlushEvery = std::chrono::seconds(1);

  // service: stamped on every span, with this process's instance id.
  SpanBuffer(std::string service, bool tracing, SamplingOptions sampling = {});

  bool tracing() const { return tracing_; }
  const std::string& service() const { return service_; }

  // The slot the next span goes into, to fill and then pass to commit()
  // with no fiber switch in between; null when tracing is off or kMaxSpans
  // wait (that span is counted as dropped). Never blocks, never allocates
  // once warm.
  SpanRecord* open(v1::Span::Kind kind, std::chrono::steady_clock::time_point start);
  // Ends the span opened last: its duration (one clock read) and whether
  // sampling keeps it.
  void commit(SpanRecord* span);

  // A batch is due: kBatch spans wait, or some have waited kFlushEvery.
  bool due(std::chrono::steady_clock::time_point now, bool busy) const;
  // Takes what waits as a serialized tern.v1.Event carrying a SpanBatch;
  // *count: the spans in it. Empty if nothing waits.
  std::string take_batch(std::chrono::steady_clock::time_point now, size_t* count);
  // Drops what waits (the link is backed up): counted as dropped.
  void drop_all();

  // `r` as a tern.v1.Span, into *out; `unix_offset_us`: wall clock minus
  // steady clock.
  void to_proto(const SpanRecord& r, int64_t unix_offset_us, v1::Span* out) const;

 private:
  static constexpr size_t kKeptBatchBytes = 256 * 1024;   // the encoding buffer kept between batches
  static void release_large(SpanRecord& r);
  void trim();
  // `r`'s strings mended to valid UTF-8, then `r` as the bytes of a
  // tern.v1.Span written to `out` (a pb::Counter or pb::Cursor).
  static void mend(SpanRecord& r);
  template <class Out>
  void encode(const SpanRecord& r, int64_t unix_offset_us, Out& out) const;

  const std::string service_;
  const bool tracing_;
  const SamplingOptions sampling_;
  std::vector<SpanRecord> slots_;  // [0, used_) wait; the rest are spare buffers
  size_t used_ = 0;
  std::string batch_;   // take_batch's buffer, reused
  uint64_t dropped_ = 0;   // since the last batch, reported in it
  std::chrono::steady_clock::time_point last_flush_{};
};

// Wall clock minus steady clock, in µs: a steady instant plus this is Unix
// time. Read once per batch, not per span.
int64_t unix_minus_steady_us();

}  // namespace tern::detail
