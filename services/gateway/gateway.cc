#include "gateway.h"

#include <algorithm>

#include <charconv>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>

#include "auth/authenticate.h"
#include "common/crypto.h"
#include "tern/call.h"
#include "tern/described.h"
#include "tern/json.h"
#include "tern/log.h"
#include "tern/metrics.h"

namespace gateway {
namespace {

namespace pb = google::protobuf;
using tern::Code;
using tern::Error;
using tern::http::Response;


// Sets (or, for a repeated field, adds) a scalar field from its text form,
// as path and query parameters arrive.
Error set_from_text(pb::Message* m, const pb::FieldDescriptor* f, const std::string& text) {
  const pb::Reflection* r = m->GetReflection();
  const bool rep = f->is_repeated();
  auto bad = [&] {
    return Error{Code::kInvalidArgument, fmt::format("'{}' is not a valid {}", text, f->name())}
        .with_param("field", f->name());
  };
  auto parse_int = [&](auto* out) {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc{} && p == text.data() + text.size();
  };
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      // Not echoed: the bytes are what is wrong.
      if (f->type() == pb::FieldDescriptor::TYPE_STRING && !tern::json::valid_utf8(text))
        return Error{Code::kInvalidArgument, fmt::format("{} is not valid UTF-8", f->name())}
            .with_param("field", f->name());
      rep ? r->AddString(m, f, text) : r->SetString(m, f, text);
      return tern::ok();
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!parse_int(&v)) return bad();
      rep ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!parse_int(&v)) return bad();
      rep ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!parse_int(&v)) return bad();
      rep ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!parse_int(&v)) return bad();
      rep ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      if (text != "true" && text != "false") return bad();
      rep ? r->AddBool(m, f, text == "true") : r->SetBool(m, f, text == "true");
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0') return bad();
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE) rep ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v);
      else rep ? r->AddFloat(m, f, static_cast<float>(v)) : r->SetFloat(m, f, static_cast<float>(v));
      return tern::ok();
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByName(text);
      if (e == nullptr) return bad();
      rep ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
      return tern::ok();
    }
    default:
      return Error{Code::kInvalidArgument, fmt::format("{} cannot be set from the URL", f->name())};
  }
}

const pb::FieldDescriptor* find_field(const pb::Descriptor* d, const std::string& name) {
  const pb::FieldDescriptor* f = d->FindFieldByName(name);
  if (f == nullptr) f = d->FindFieldByCamelcaseName(name);
  return f;
}

// "ip" of the server's "ip:port" peer: the socket's, never a header's.
std::string client_address(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  return colon != std::string::npos && colon > 0 ? peer.substr(0, colon) : peer;
}

tern::metrics::Counter& rate_limited_counter(const char* scope) {
  return tern::metrics::registry().counter("tern_gateway_rate_limited_total",
                                           "Requests the gateway refused with 429 by its rate limits",
                                           {{"scope", scope}});
}

// 429 RESOURCE_EXHAUSTED, and when to come back.
Response rate_limited(const char* scope, tern::Context::Clock::duration wait) {
  Response r = error_response(
      Error{Code::kResourceExhausted, fmt::format("too many requests from this {}", scope)}.with_param("scope", scope));
  r.headers.push_back({"Retry-After", std::to_string(retry_after_seconds(wait))});
  return r;
}

bool valid_request_id(const std::string& id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

tern::Result<std::string> idempotency_key(const std::string& header, const std::string& account) {
  if (header.empty() || header.size() > kMaxIdempotencyKeyBytes ||
      !std::all_of(header.begin(), header.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
    return Error{Code::kInvalidArgument,
                 fmt::format("Idempotency-Key must be 1 to {} printable ASCII characters", kMaxIdempotencyKeyBytes)}
        .with_param("header", "Idempotency-Key");
  // Scoped by the caller's account (none: anonymous): another account's
  // same key is another key, here and in every answer a service keeps for
  // it; the same account's retry with a fresh token is the same key.
  const std::string who = common::to_hex(common::sha256("account:" + account));
  return who.substr(0, 32) + ":" + header;
}

// {"error":{"code":"NOT_FOUND","message":"...","params":{...}}} with the
// status from tern's one code-to-HTTP table.
Response error_response(const Error& e) {
  std::string params;
  for (const auto& [k, v] : e.params) params += fmt::format("{}{}:{}", params.empty() ? "" : ",", tern::json::quote(k), tern::json::quote(v));
  int status = tern::http_status(e.code);
  // Decided here (the router), never read from a downstream's params.
  if (!e.local.allow.empty()) status = 405;
  Response r = Response::json(
      status, fmt::format(R"({{"error":{{"code":"{}","message":{},"params":{{{}}}}}}})",
                          tern::code_name(e.code), tern::json::quote(e.message), params));
  if (status == 405) r.headers.push_back({"Allow", e.local.allow});
  return r;
}

// A service's description and when it was fetched.
struct Gateway::Described {
  std::shared_ptr<const tern::DescribedService> service;
  EndpointRoutes routes;
  std::chrono::steady_clock::time_point fetched;
};

Gateway::Gateway(RouteTable table, Config config)
    : table_(std::move(table)),
      config_(config),
      per_address_(config.per_address),
      per_account_(config.per_account),
      limited_address_(rate_limited_counter("address")),
      limited_account_(rate_limited_counter("account")) {}
Gateway::~Gateway() = default;

tern::Result<std::shared_ptr<const Gateway::Described>> Gateway::describe(const tern::Context& ctx,
                                                                          const std::string& service,
                                                                          bool refresh) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(service);
    if (it != cache_.end() && now - it->second->fetched < config_.describe_ttl &&
        !(refresh && now - it->second->fetched > std::chrono::seconds(1)))
      return it->second;
  }
  auto d = tern::DescribedService::fetch(
      ctx, service, std::min<std::chrono::milliseconds>(ctx.remaining(), std::chrono::seconds(3)));
  if (!d.ok()) return std::move(d.error());
  auto out = std::make_shared<Described>(Described{*d, EndpointRoutes((*d)->description().routes()), now});
  std::lock_guard<std::mutex> lock(mu_);
  cache_[service] = out;
  return std::shared_ptr<const Described>(std::move(out));
}

Response Gateway::handle(tern::Context& ctx, tern::http::Request& req) {
  const std::string* given = req.header("X-Request-Id");
  const std::string request_id = given != nullptr && valid_request_id(*given) ? *given : tern::new_trace_id();
  ctx.set_metadata("request_id", request_id);   // for the gateway's own log lines
  Response r;
  // First, before any parsing, call or log line of its own.
  const std::string address = client_address(req.peer);
  if (auto wait = per_address_.take(address, tern::Context::Clock::now()); wait.count() > 0) {
    limited_address_.inc();
    r = rate_limited("address", wait);
  } else if (req.path == "/healthz") {
    r = Response::json(200, R"({"status":"SERVING"})");
    r.route = "/healthz";
  } else {
    std::string route_template;
    r = route(ctx, req, request_id, address, &route_template);
    r.route = std::move(route_template);
  }
  r.headers.push_back({"X-Request-Id", request_id});
  r.headers.push_back({"X-Trace-Id", ctx.trace_id()});
  tern::log::debug("{} {} -> {} ({})", req.method, req.path, r.status, request_id);
  return r;
}

Response Gateway::route(tern::Context& http_ctx, tern::http::Request& req, const std::string& request_id,
                        const std::string& address, std::string* route_template) {
  std::optional<Target> target = table_.resolve(req.path);
  if (!target) return error_response(Error{Code::kNotFound, fmt::format("no route for {}", req.path)});

  // The request's deadline, and what travels with every call it causes.
  auto timeout = config_.timeout;
  if (const std::string* t = req.header("X-Tern-Timeout-Ms")) {
    long ms = 0;
    auto [p, ec] = std::from_chars(t->data(), t->data() + t->size(), ms);
    if (ec != std::errc{} || ms <= 0)
      return error_response(Error{Code::kInvalidArgument, "X-Tern-Timeout-Ms must be a positive number"});
    timeout = std::min(timeout, std::chrono::milliseconds(ms));
  }
  // The HTTP request's own span is the parent of the calls it causes.
  tern::Context ctx = tern::Context::from_wire(
      tern::to_unix_ms(std::min(http_ctx.deadline(), tern::Context::Clock::now() + timeout)),
      http_ctx.trace_id(), http_ctx.span_id(), "", request_id, "", {});
  ctx.set_transport(http_ctx.transport());
  // The bearer token is exchanged here for the account it names, and goes
  // no further: the calls, events, dead letters, spans and logs the
  // request causes carry the account (auth::kAccountKey), never the token.
  std::string account;
  if (const std::string* credentials = req.header("Authorization")) {
    auto who = auth::account_of(ctx, *credentials);
    if (!who.ok()) return error_response(who.error());
    account = std::move(*who);
    if (auto wait = per_account_.take(account, tern::Context::Clock::now()); wait.count() > 0) {
      limited_account_.inc();
      return rate_limited("account", wait);
    }
    ctx.set_metadata(auth::kAccountKey, account);
  }
  ctx.set_metadata("request_id", request_id);
  // A W3C tracestate the HTTP server took from the request goes on too.
  if (auto state = http_ctx.metadata().find("tracestate"); state != http_ctx.metadata().end())
    ctx.set_metadata("tracestate", state->second);
  // The client's address, from the socket (never from a header a client
  // can write): service.auth counts failed logins per address.
  if (!address.empty()) ctx.set_metadata("client_address", address);

  auto described = describe(ctx, target->service, false);
  if (!described.ok()) {
    Error& e = described.error();
    // No queue of that name: the /{name} rule guessed a service that is not there.
    if (e.code == Code::kUnavailable && e.local.no_route && !target->listed)
      return error_response(Error{Code::kNotFound, fmt::format("no route for {}", req.path)});
    return error_response(e);
  }
  auto match = (*described)->routes.match(req.method, target->rest);
  if (!match.ok() && match.code() == Code::kNotFound) {
    // Perhaps the service gained the route since we asked.
    described = describe(ctx, target->service, true);
    if (!described.ok()) return error_response(described.error());
    match = (*described)->routes.match(req.method, target->rest);
  }
  if (!match.ok()) {
    if (match.code() == Code::kNotFound)
      return error_response(Error{Code::kNotFound, fmt::format("no route for {} {}", req.method, req.path)});
    return error_response(match.error());
  }
  // The route template names the request's span and labels its metrics:
  // "/webhooks/:id", one name however many ids.
  *route_template = match->route == "/" && !target->prefix.empty() ? target->prefix : target->prefix + match->route;
  const tern::DescribedService& svc = *(*described)->service;
  auto types = svc.endpoint(match->endpoint);
  if (!types.ok()) return error_response(types.error());

  // The request message: the JSON body, then query and path parameters.
  auto message = svc.make(types->request);
  if (!req.body.empty()) {
    // Bodies are JSON whatever Content-Type says (curl -d says form data).
    Error e = tern::json::from_json(req.body, message.get());
    if (!e.ok()) return error_response(e);
  }
  for (const auto& [name, value] : tern::http::parse_query(req.query)) {
    const pb::FieldDescriptor* f = find_field(message->GetDescriptor(), name);
    if (f == nullptr)
      return error_response(Error{Code::kInvalidArgument, fmt::format("unknown query parameter '{}'", name)});
    Error e = set_from_text(message.get(), f, value);
    if (!e.ok()) return error_response(e);
  }
  // Path captures last: they win over the body and the query, so
  // DELETE /webhooks/wh_a?id=wh_b deletes wh_a (the resource the path names).
  for (const auto& [name, value] : match->params) {
    if (const pb::FieldDescriptor* f = find_field(message->GetDescriptor(), name)) {
      if (f->is_repeated()) message->GetReflection()->ClearField(message.get(), f);
      Error e = set_from_text(message.get(), f, value);
      if (!e.ok()) return error_response(e);
    }
  }

  tern::CallOptions opts;
  opts.timeout = ctx.remaining();
  opts.idempotent = req.method == "GET" || req.method == "HEAD";
  if (const std::string* key = req.header("Idempotency-Key"); key != nullptr && !opts.idempotent) {
    auto scoped = idempotency_key(*key, account);
    if (!scoped.ok()) return error_response(scoped.error());
    opts.idempotency_key = std::move(*scoped);
  }
  auto reply = tern::call_bytes(ctx, target->service, match->endpoint, message->SerializeAsString(), opts);
  if (!reply.ok()) return error_response(reply.error());
  auto response = svc.make(types->response);
  if (!response->ParseFromString(*reply))
    return error_response(Error{Code::kInternal, fmt::format("{} sent a reply that is not a {}", target->service,
                                                             response->GetDescriptor()->full_name())});
  return Response::json(200, tern::json::to_json(*response));
}

}  // namespace gateway
