#include "observability/span_buffer.h"

#include "core/ids.h"
#include "core/utf8.h"
#include "core/wire.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"

namespace tern::detail {

SpanBuffer::SpanBuffer(std::string service, bool tracing) : service_(std::move(service)), tracing_(tracing) {}

void SpanBuffer::record(v1::Span&& span) {
  // What came from outside (an HTTP path in a name, an error text, a peer,
  // tags) may not be UTF-8, which would make the whole batch unparseable.
  utf8::make_valid(span.mutable_name());
  utf8::make_valid(span.mutable_error());
  utf8::make_valid(span.mutable_peer());
  for (auto& [k, v] : *span.mutable_tags()) utf8::make_valid(&v);
  span.set_service(service_);
  span.set_instance(instance_id());
  to_span_sink(span);
  if (!tracing_) return;
  if (spans_.size() >= kMaxSpans) {
    ++dropped_;
    return;
  }
  spans_.push_back(std::move(span));
}

bool SpanBuffer::due(std::chrono::steady_clock::time_point now, bool busy) const {
  if (spans_.empty()) return false;
  if (spans_.size() >= kBatch) return true;
  return !busy && now - last_flush_ >= kFlushEvery;
}

void SpanBuffer::drop_all() {
  dropped_ += spans_.size();
  metric::spans_dropped(service_).inc(spans_.size());
  spans_.clear();
}

std::string SpanBuffer::take_batch(std::chrono::steady_clock::time_point now, size_t* count) {
  last_flush_ = now;
  *count = spans_.size();
  if (spans_.empty()) return {};
  v1::SpanBatch batch;
  for (auto& s : spans_) *batch.add_spans() = std::move(s);
  spans_.clear();
  batch.set_dropped(dropped_);
  if (dropped_ > 0) metric::spans_dropped(service_).inc(dropped_);
  dropped_ = 0;
  v1::Event event;
  event.set_id(new_trace_id());
  event.set_type(v1::SpanBatch::descriptor()->full_name());
  event.set_source(service_);
  event.set_time_unix_ms(to_unix_ms(now));
  batch.SerializeToString(event.mutable_body());
  return event.SerializeAsString();
}

}  // namespace tern::detail
