// service.trace's SQLite database: spans by trace, and a summary per trace.
#pragma once

#include <boost/fiber/mutex.hpp>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/sqlite.h"
#include "tern/trace.pb.h"
#include "trace.pb.h"

namespace trace {

// How long spans are kept. Defaults are the service's (TERN_TRACE_RETENTION_S,
// TERN_TRACE_MAX_SPANS).
struct Retention {
  int64_t max_age_s = 3600;      // spans that started longer ago go
  int64_t max_spans = 1000000;   // past this many, the oldest go
};

// Safe from every fiber and thread of the service: a fiber mutex serializes
// use of the connection; nothing under it suspends.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests). Throws
  // std::runtime_error if it cannot.
  explicit Store(const std::string& path);

  // Keeps the batch's spans in one transaction and counts its `dropped`. A
  // span already kept (same trace and span id: a redelivered batch) is
  // skipped. Returns how many spans were new. Throws std::runtime_error on a
  // database error.
  int add(const tern::v1::SpanBatch& batch);

  // The trace's spans, by start; empty if none are kept.
  std::vector<tern::v1::Span> get(std::string_view trace_id);

  // Summaries of the traces matching `req` (see trace.proto).
  RecentResponse recent(const RecentRequest& req);

  // Deletes spans older than retention.max_age_s before `now_unix_us`, then
  // the oldest ones past retention.max_spans, and the summaries of traces
  // left with no spans. Returns how many spans went.
  int64_t prune(const Retention& retention, int64_t now_unix_us);

  int64_t span_count();
  // Spans the senders said they dropped, since this Store was opened.
  uint64_t dropped() const { return dropped_.load(); }

 private:
  boost::fibers::mutex mu_;
  common::Database db_;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace trace
