#include "core/wire.h"

#include <fmt/format.h>

#include "core/envelope_codec.h"
#include "core/utf8.h"

namespace tern::detail {

void to_wire(const Error& error, tern::v1::Error* out) {
  out->set_code(static_cast<tern::v1::Code>(error.code));
  out->set_message(error.message);
  utf8::make_valid(out->mutable_message());
  out->set_retryable(error.retryable);
  for (const auto& [k, v] : error.params) {
    std::string key = k;
    utf8::make_valid(&key);
    std::string& value = (*out->mutable_params())[key];
    value = v;
    utf8::make_valid(&value);
  }
}

tern::v1::Response response_for(std::string_view correlation_id) {
  tern::v1::Response resp;
  resp.set_request_id(std::string(correlation_id));
  utf8::make_valid(resp.mutable_request_id());
  return resp;
}

Context request_context(const envelope::RequestView& req, const std::string& correlation_id) {
  Context::Metadata metadata;
  for (const auto& [k, v] : req.metadata) metadata[std::string(k)] = std::string(v);
  Context ctx = Context::from_wire(req.deadline_unix_ms, std::string(req.trace_id), new_span_id(),
                                   std::string(req.span_id), req.id.empty() ? correlation_id : std::string(req.id),
                                   std::string(req.from), std::move(metadata), req.attempt);
  ctx.set_idempotency_key(std::string(req.idempotency_key));
  return ctx;
}

Error from_wire(const tern::v1::Error& error) {
  Error e;
  e.code = tern::v1::Code_IsValid(error.code()) ? static_cast<Code>(error.code()) : Code::kUnknown;
  e.message = error.message();
  e.retryable = error.retryable();
  for (const auto& [k, v] : error.params()) e.params[k] = v;
  return e;
}

Result<std::string> decode_response(std::string bytes, std::string_view service, std::string_view endpoint) {
  const auto not_a_response = [&] {
    return Error{Code::kInternal, fmt::format("{}/{} sent a reply that is not a tern.v1.Response", service, endpoint)};
  };
  envelope::ResponseView resp;
  if (!envelope::parse_response(bytes, &resp)) return not_a_response();
  if (!resp.error.empty()) {
    // Parts given apart are merged: parsing them back to back does that.
    std::string parts;
    for (std::string_view part : resp.error) parts.append(part);
    tern::v1::Error error;
    if (!error.ParseFromString(parts)) return not_a_response();
    if (error.code() != tern::v1::OK) return from_wire(error);
  }
  if (resp.body.empty()) return std::string();
  // The body, moved to the front of the reply's own buffer: no copy made.
  const size_t at = static_cast<size_t>(resp.body.data() - bytes.data()), n = resp.body.size();
  bytes.erase(0, at);
  bytes.resize(n);
  return bytes;
}

}  // namespace tern::detail
