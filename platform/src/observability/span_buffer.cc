#include "observability/span_buffer.h"

#include <charconv>

#include "core/ids.h"
#include "core/pb_wire.h"
#include "core/utf8.h"
#include "core/wire.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"

namespace tern::detail {

using std::chrono::steady_clock;

bool trace_sampled(std::string_view trace_id, double rate) {
  if (rate >= 1.0) return true;
  if (rate <= 0.0) return false;
  uint32_t v = 0;
  const std::string_view tail = trace_id.substr(trace_id.size() > 8 ? trace_id.size() - 8 : 0);
  for (char c : tail) {
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
    else d = static_cast<uint32_t>(static_cast<unsigned char>(c)) & 0xf;
    v = (v << 4) | d;
  }
  return static_cast<double>(v) < rate * 4294967296.0;
}

int64_t unix_minus_steady_us() {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  const auto wall = duration_cast<microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto mono = duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
  return wall - mono;
}

namespace {
// Protobuf's wire format, written directly (core/pb_wire.h): a batch's
// spans go from their slots to bytes with no protobuf objects in between
// (building, then freeing, a v1::Span and its tag map cost more than
// recording the span). Field numbers are tern/trace.proto's and
// tern/envelope.proto's; proto3 leaves fields at their defaults out, as
// protobuf's serializer does.

// A slot keeps its strings' capacity from batch to batch, but not past
// kKeptCapacity: one long error or path must not stay resident in every
// slot it ever passed through.
constexpr size_t kKeptCapacity = 256;
void release(std::string& s) {
  if (s.capacity() > kKeptCapacity) std::string().swap(s);
}
}  // namespace

void SpanBuffer::release_large(SpanRecord& r) {
  for (std::string* s : {&r.trace_id, &r.span_id, &r.parent_span_id, &r.name, &r.peer, &r.error, &r.tag_value,
                         &r.http_method, &r.http_path, &r.http_route})
    release(*s);
}

SpanBuffer::SpanBuffer(std::string service, bool tracing, SamplingOptions sampling)
    : service_(std::move(service)), tracing_(tracing), sampling_(sampling) {}

SpanRecord* SpanBuffer::open(v1::Span::Kind kind, steady_clock::time_point start) {
  if (!tracing_) return nullptr;
  if (used_ >= kMaxSpans) {
    ++dropped_;
    return nullptr;
  }
  if (used_ == slots_.size()) slots_.emplace_back();
  SpanRecord* r = &slots_[used_];
  r->kind = kind;
  r->start = start;
  r->code = Code::kOk;
  r->attempt = 0;
  r->http_status = 0;
  r->tag_key = nullptr;
  r->error.clear();
  r->peer.clear();
  r->parent_span_id.clear();
  return r;
}

void SpanBuffer::commit(SpanRecord* r) {
  r->duration_us =
      std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - r->start).count();
  const bool keep = r->code != Code::kOk || r->duration_us >= sampling_.slow.count() ||
                    trace_sampled(r->trace_id, sampling_.rate);
  if (!keep) return;
  if (has_span_sink()) {
    v1::Span s;
    to_proto(*r, unix_minus_steady_us(), &s);
    to_span_sink(s);
  }
  ++used_;
}

bool SpanBuffer::due(steady_clock::time_point now, bool busy) const {
  if (used_ == 0) return false;
  if (used_ >= kBatch) return true;
  return !busy && now - last_flush_ >= kFlushEvery;
}

void SpanBuffer::drop_all() {
  for (size_t i = 0; i < used_; ++i) release_large(slots_[i]);
  dropped_ += used_;
  metric::spans_dropped(service_).inc(used_);
  used_ = 0;
  trim();
}

void SpanBuffer::trim() {
  // A burst's slots beyond kKeptSlots go: what a thread keeps warm is what
  // a batch holds, not the most that ever waited.
  if (slots_.size() <= kKeptSlots) return;
  slots_.resize(kKeptSlots);
  slots_.shrink_to_fit();
}

void SpanBuffer::to_proto(const SpanRecord& r, int64_t unix_offset_us, v1::Span* out) const {
  v1::Span& s = *out;
  s.set_kind(r.kind);
  s.set_trace_id(r.trace_id);
  s.set_span_id(r.span_id);
  s.set_parent_span_id(r.parent_span_id);
  s.set_name(r.name);
  s.set_start_unix_us(
      std::chrono::duration_cast<std::chrono::microseconds>(r.start.time_since_epoch()).count() + unix_offset_us);
  s.set_duration_us(r.duration_us);
  s.set_code(static_cast<v1::Code>(r.code));
  if (r.code != Code::kOk) s.set_error(r.error);
  s.set_attempt(r.attempt);
  s.set_peer(r.peer);
  s.set_service(service_);
  s.set_instance(instance_id());
  auto& tags = *s.mutable_tags();
  if (r.tag_key != nullptr) tags[r.tag_key] = r.tag_value;
  if (r.kind == v1::Span::HTTP) {
    // The names Zipkin and OpenTelemetry both use.
    tags["http.method"] = r.http_method;
    tags["http.path"] = r.http_path;
    if (!r.http_route.empty()) tags["http.route"] = r.http_route;
    tags["http.status_code"] = std::to_string(r.http_status);
  }
  // What came from outside (an HTTP path, an error text, a peer, tags) may
  // not be UTF-8, which would make the whole batch unparseable.
  utf8::make_valid(s.mutable_name());
  utf8::make_valid(s.mutable_error());
  utf8::make_valid(s.mutable_peer());
  for (auto& [k, v] : tags) utf8::make_valid(&v);
}

void SpanBuffer::mend(SpanRecord& r) {
  // What came from outside (an HTTP path, an error text, a peer, tags) may
  // not be UTF-8, which would make the whole batch unparseable: mended in
  // the slot, which is done with.
  // (One look at each when all is ASCII, as nearly always.)
  for (std::string* s : {&r.trace_id, &r.span_id, &r.parent_span_id, &r.name, &r.peer, &r.error, &r.tag_value,
                         &r.http_method, &r.http_path, &r.http_route})
    if (!utf8::ascii(*s)) utf8::make_valid(s);
}

template <class Out>
void SpanBuffer::encode(const SpanRecord& r, int64_t unix_offset_us, Out& o) const {
  pb::string(o, 1, r.trace_id);
  pb::string(o, 2, r.span_id);
  pb::string(o, 3, r.parent_span_id);
  pb::string(o, 4, service_);
  pb::string(o, 5, r.name);
  pb::number(o, 6, static_cast<uint64_t>(r.kind));
  const int64_t start_us =
      std::chrono::duration_cast<std::chrono::microseconds>(r.start.time_since_epoch()).count() + unix_offset_us;
  pb::number(o, 7, static_cast<uint64_t>(start_us));
  pb::number(o, 8, static_cast<uint64_t>(r.duration_us));
  pb::number(o, 9, static_cast<uint64_t>(r.code));
  if (r.code != Code::kOk) pb::string(o, 10, r.error);
  pb::number(o, 11, r.attempt);
  pb::string(o, 12, r.peer);
  pb::string(o, 13, instance_id());
  if (r.tag_key != nullptr) pb::map_entry(o, 14, r.tag_key, r.tag_value);
  if (r.kind == v1::Span::HTTP) {
    pb::map_entry(o, 14, "http.method", r.http_method);
    pb::map_entry(o, 14, "http.path", r.http_path);
    if (!r.http_route.empty()) pb::map_entry(o, 14, "http.route", r.http_route);
    char status[12];
    const auto end = std::to_chars(status, status + sizeof status, r.http_status).ptr;
    pb::map_entry(o, 14, "http.status_code", std::string_view(status, static_cast<size_t>(end - status)));
  }
}

std::string SpanBuffer::take_batch(steady_clock::time_point now, size_t* count) {
  last_flush_ = now;
  *count = used_;
  if (used_ == 0) return {};
  const int64_t offset = unix_minus_steady_us();
  // tern.v1.SpanBatch: each span (field 1) measured, then written in place
  // behind its key and length.
  batch_.clear();
  for (size_t i = 0; i < used_; ++i) {
    SpanRecord& r = slots_[i];
    mend(r);
    pb::Counter size;
    encode(r, offset, size);
    const size_t at = batch_.size();
    batch_.resize(at + 1 + pb::varint_size(size.n) + size.n);
    pb::Cursor w{batch_.data() + at};
    pb::key(w, 1, pb::kBytes);
    pb::varint(w, size.n);
    encode(r, offset, w);
    release_large(r);
  }
  used_ = 0;
  trim();
  pb::number(batch_, 2, dropped_);
  if (dropped_ > 0) metric::spans_dropped(service_).inc(dropped_);
  dropped_ = 0;
  // The tern.v1.Event it travels in.
  std::string event;
  event.reserve(batch_.size() + 128);
  pb::string(event, 1, new_trace_id());
  pb::string(event, 2, v1::SpanBatch::descriptor()->full_name());
  pb::string(event, 3, service_);
  pb::number(event, 4, static_cast<uint64_t>(to_unix_ms(now)));
  pb::bytes(event, 7, batch_);
  if (batch_.capacity() > kKeptBatchBytes) std::string().swap(batch_);
  return event;
}

}  // namespace tern::detail
