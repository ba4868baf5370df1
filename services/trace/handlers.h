// service.trace's endpoints, its subscription to tern.traces and its HTTP
// pages, over a Store. No broker needed: tests call these directly.
#pragma once

#include <tern/context.h>
#include <tern/error.h>
#include <tern/http.h>

#include "export.h"
#include "store.h"
#include "trace.pb.h"

namespace trace {

// Safe from every fiber and thread of the service, as the Store is.
class Collector {
 public:
  // exporter: where kept batches are pushed on to (TERN_TRACE_EXPORT_URL); may be null.
  explicit Collector(Store& store, Exporter* exporter = nullptr) : store_(store), exporter_(exporter) {}

  // Endpoint get_trace: the trace's spans by start; INVALID_ARGUMENT
  // without a trace id, NOT_FOUND if none are kept.
  tern::Result<GetTraceResponse> get_trace(tern::Context& ctx, const GetTraceRequest& req);
  // Endpoint recent: summaries (see RecentRequest).
  tern::Result<RecentResponse> recent(tern::Context& ctx, const RecentRequest& req);
  // A batch from tern.traces: kept (and queued for the exporter), then acked. A database error is
  // returned as UNAVAILABLE, so the event is retried.
  tern::Error on_batch(tern::Context& ctx, const tern::v1::SpanBatch& batch);

  // HTTP: GET / (recent traces), /trace/<id> (waterfall),
  // /api/v2/trace/<id> (Zipkin v2 JSON), /api/v2/traces?limit=N (the
  // newest traces, an array of Zipkin traces), /healthz.
  tern::http::Response http(tern::Context& ctx, tern::http::Request& req);

 private:
  Store& store_;
  Exporter* exporter_;
};

}  // namespace trace
