// Spans waiting to leave, per reactor thread: kept without locks and sent
// about once a second as one tern.v1.SpanBatch. Past kMaxSpans waiting, with
// tracing off, or with the broker pushing back, spans are dropped and
// counted, never queued without bound. Reactor thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tern/trace.pb.h"

namespace tern::detail {

class SpanBuffer {
 public:
  static constexpr size_t kBatch = 512;
  static constexpr size_t kMaxSpans = 8192;
  static constexpr auto kFlushEvery = std::chrono::seconds(1);

  // service: stamped on every span, with this process's instance id.
  SpanBuffer(std::string service, bool tracing);

  bool tracing() const { return tracing_; }
  // Keeps `span` for the next batch. Never blocks.
  void record(v1::Span&& span);

  // A batch is due: kBatch spans wait, or some have waited kFlushEvery.
  bool due(std::chrono::steady_clock::time_point now, bool busy) const;
  // Takes what waits as a serialized tern.v1.Event carrying a SpanBatch;
  // *count: the spans in it. Empty if nothing waits.
  std::string take_batch(std::chrono::steady_clock::time_point now, size_t* count);
  // Drops what waits (the link is backed up): counted as dropped.
  void drop_all();

 private:
  const std::string service_;
  const bool tracing_;
  std::vector<v1::Span> spans_;
  uint64_t dropped_ = 0;   // since the last batch, reported in it
  std::chrono::steady_clock::time_point last_flush_{};
};

}  // namespace tern::detail
