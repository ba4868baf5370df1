#include "store.h"

#include <algorithm>
#include <mutex>

#include "common/crypto.h"

namespace trace {

Store::Store(const std::string& path) : db_(path) {
  // spans.data is the whole tern.v1.Span, serialized, as hex; the other
  // columns are what queries need.
  common::exec(db_.get(),
               "CREATE TABLE IF NOT EXISTS spans ("
               " trace_id TEXT NOT NULL, span_id TEXT NOT NULL, start_us INTEGER NOT NULL,"
               " data TEXT NOT NULL, PRIMARY KEY (trace_id, span_id));"
               "CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_us);"
               "CREATE TABLE IF NOT EXISTS traces ("
               " trace_id TEXT PRIMARY KEY, root_name TEXT NOT NULL DEFAULT '',"
               " root_service TEXT NOT NULL DEFAULT '', start_us INTEGER NOT NULL,"
               " end_us INTEGER NOT NULL, span_count INTEGER NOT NULL, error INTEGER NOT NULL);"
               "CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_us);"
               "CREATE INDEX IF NOT EXISTS traces_by_duration ON traces (end_us - start_us)");
}

int Store::add(const tern::v1::SpanBatch& batch) {
  dropped_ += batch.dropped();
  if (batch.spans_size() == 0) return 0;
  std::lock_guard lock(mu_);
  int added = 0;
  db_.transaction([&] {
    for (const auto& span : batch.spans()) {
      if (span.trace_id().empty() || span.span_id().empty()) continue;
      common::Statement(db_.get(),
                        "INSERT OR IGNORE INTO spans (trace_id, span_id, start_us, data)"
                        " VALUES (?, ?, ?, ?)")
          .bind(1, span.trace_id())
          .bind(2, span.span_id())
          .bind(3, span.start_unix_us())
          .bind(4, common::to_hex(span.SerializeAsString()))
          .step();
      if (common::changes(db_.get()) == 0) continue;
      ++added;
      const bool root = span.parent_span_id().empty();
      common::Statement(
          db_.get(),
          "INSERT INTO traces (trace_id, root_name, root_service, start_us, end_us, span_count, error)"
          " VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6) ON CONFLICT (trace_id) DO UPDATE SET"
          " root_name = CASE WHEN ?7 THEN ?2 ELSE root_name END,"
          " root_service = CASE WHEN ?7 THEN ?3 ELSE root_service END,"
          " start_us = MIN(start_us, ?4), end_us = MAX(end_us, ?5),"
          " span_count = span_count + 1, error = MAX(error, ?6)")
          .bind(1, span.trace_id())
          .bind(2, root ? span.name() : std::string())
          .bind(3, root ? span.service() : std::string())
          .bind(4, span.start_unix_us())
          .bind(5, span.start_unix_us() + span.duration_us())
          .bind(6, int64_t{span.code() != tern::v1::OK})
          .bind(7, int64_t{root})
          .step();
    }
    return true;
  });
  return added;
}

std::vector<tern::v1::Span> Store::get(std::string_view trace_id) {
  std::lock_guard lock(mu_);
  std::vector<tern::v1::Span> spans;
  common::Statement q(db_.get(), "SELECT data FROM spans WHERE trace_id = ? ORDER BY start_us");
  q.bind(1, trace_id);
  while (q.step()) {
    auto bytes = common::from_hex(q.text(0));
    tern::v1::Span span;
    if (bytes && span.ParseFromString(*bytes)) spans.push_back(std::move(span));
  }
  return spans;
}

RecentResponse Store::recent(const RecentRequest& req) {
  const int64_t limit = req.limit() == 0 ? 20 : std::min<int64_t>(req.limit(), 1000);
  std::lock_guard lock(mu_);
  RecentResponse out;
  common::Statement q(
      db_.get(),
      req.slowest_first()
          ? "SELECT trace_id, root_name, root_service, start_us, end_us - start_us, span_count, error"
            " FROM traces WHERE end_us - start_us >= ?1 AND (?2 = 0 OR error = 1)"
            " ORDER BY end_us - start_us DESC LIMIT ?3"
          : "SELECT trace_id, root_name, root_service, start_us, end_us - start_us, span_count, error"
            " FROM traces WHERE end_us - start_us >= ?1 AND (?2 = 0 OR error = 1)"
            " ORDER BY start_us DESC LIMIT ?3");
  q.bind(1, req.min_duration_ms() * 1000).bind(2, int64_t{req.errors_only()}).bind(3, limit);
  while (q.step()) {
    auto* t = out.add_traces();
    t->set_trace_id(q.text(0));
    t->set_root_name(q.text(1));
    t->set_root_service(q.text(2));
    t->set_start_unix_us(q.int64(3));
    t->set_duration_us(q.int64(4));
    t->set_span_count(static_cast<uint32_t>(q.int64(5)));
    t->set_error(q.int64(6) != 0);
  }
  out.set_dropped(dropped_.load());
  return out;
}

int64_t Store::prune(const Retention& retention, int64_t now_unix_us) {
  std::lock_guard lock(mu_);
  int64_t removed = 0;
  db_.transaction([&] {
    common::Statement(db_.get(), "DELETE FROM spans WHERE start_us < ?")
        .bind(1, now_unix_us - retention.max_age_s * 1000000)
        .step();
    removed += common::changes(db_.get());
    common::Statement count(db_.get(), "SELECT COUNT(*) FROM spans");
    count.step();
    if (const int64_t over = count.int64(0) - retention.max_spans; over > 0) {
      common::Statement(db_.get(),
                        "DELETE FROM spans WHERE rowid IN"
                        " (SELECT rowid FROM spans ORDER BY start_us LIMIT ?)")
          .bind(1, over)
          .step();
      removed += common::changes(db_.get());
    }
    if (removed > 0)
      common::exec(db_.get(),
                   "DELETE FROM traces WHERE NOT EXISTS"
                   " (SELECT 1 FROM spans WHERE spans.trace_id = traces.trace_id)");
    return true;
  });
  return removed;
}

int64_t Store::span_count() {
  std::lock_guard lock(mu_);
  common::Statement count(db_.get(), "SELECT COUNT(*) FROM spans");
  count.step();
  return count.int64(0);
}

}  // namespace trace
