#include "rpc/server/server_filters.h"

#include <fmt/format.h>

#include "observability/telemetry.h"

namespace tern::detail::server_filters {
namespace {
constexpr std::string_view kUnknownEndpoint = "(unknown)";
}  // namespace

ServerFilter observe(const ServiceDefinition& def, SpanBuffer& spans) {
  return [&def, &spans](Context& ctx, const IncomingRequest& req, const ServerNext& next) {
    const SpanClock clock;
    Result<std::string> r = next(ctx, req);
    // Requests to endpoints that do not exist are counted under one label.
    const std::string_view endpoint = def.endpoints.count(req.endpoint) != 0 ? req.endpoint : kUnknownEndpoint;
    const Code code = r.code();
    metric::server_requests(def.name, endpoint, code).inc();
    metric::server_latency(def.name, endpoint).observe_us(static_cast<uint64_t>(clock.elapsed_us()));
    if (SpanRecord* span = spans.open(v1::Span::SERVER, clock.start)) {
      span->trace_id = ctx.trace_id();
      span->span_id = ctx.span_id();
      span->parent_span_id = ctx.parent_span_id();
      span->name = endpoint;
      span->code = code;
      if (!r.ok()) span->error = r.error().message;
      span->attempt = ctx.attempt();
      span->peer = ctx.declared_caller();
      if (auto id = ctx.metadata().find("request_id"); id != ctx.metadata().end()) {
        span->tag_key = "request_id";
        span->tag_value = id->second;
      }
      spans.commit(span);
    }
    return r;
  };
}

ServerFilter deadline(const ServiceDefinition& def) {
  return [&def](Context& ctx, const IncomingRequest& req, const ServerNext& next) -> Result<std::string> {
    if (ctx.expired())
      return Error{Code::kDeadlineExceeded,
                   fmt::format("the deadline passed before {}/{} was handled", def.name, req.endpoint)};
    return next(ctx, req);
  };
}

ServerFilter known_endpoint(const ServiceDefinition& def) {
  return [&def](Context& ctx, const IncomingRequest& req, const ServerNext& next) -> Result<std::string> {
    if (def.endpoints.find(req.endpoint) == def.endpoints.end())
      return Error{Code::kUnimplemented, fmt::format("{} has no endpoint '{}'", def.name, req.endpoint)}
          .with_param("endpoint", std::string(req.endpoint));
    return next(ctx, req);
  };
}

ServerFilter rate_limit(const ServiceDefinition& def) {
  return [&def](Context& ctx, const IncomingRequest& req, const ServerNext& next) -> Result<std::string> {
    if (auto limit = def.limits.find(req.endpoint); limit != def.limits.end() && !limit->second->take())
      return Error{Code::kResourceExhausted, fmt::format("{}/{} is rate limited", def.name, req.endpoint)}
          .with_param("endpoint", std::string(req.endpoint));
    return next(ctx, req);
  };
}

ServerFilter allowed_callers(const ServiceDefinition& def) {
  return [&def](Context& ctx, const IncomingRequest& req, const ServerNext& next) -> Result<std::string> {
    auto allowed = def.allowed_callers.find(req.endpoint);
    if (allowed != def.allowed_callers.end() && allowed->second.count(ctx.caller()) == 0)
      return Error{Code::kPermissionDenied,
                   fmt::format("{}/{} may not be called by '{}'", def.name, req.endpoint, ctx.caller())}
          .with_param("endpoint", std::string(req.endpoint));
    return next(ctx, req);
  };
}

ServerFilter replay(Replay* replay) {
  return [replay](Context& ctx, const IncomingRequest& req, const ServerNext& next) -> Result<std::string> {
    if (replay == nullptr || req.idempotency_key.empty()) return next(ctx, req);
    return replay->run(ctx, req, next);
  };
}

}  // namespace tern::detail::server_filters
