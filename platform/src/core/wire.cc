#include "core/wire.h"

#include <fmt/format.h>

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

Error from_wire(const tern::v1::Error& error) {
  Error e;
  e.code = tern::v1::Code_IsValid(error.code()) ? static_cast<Code>(error.code()) : Code::kUnknown;
  e.message = error.message();
  e.retryable = error.retryable();
  for (const auto& [k, v] : error.params()) e.params[k] = v;
  return e;
}

Result<std::string> decode_response(const std::string& bytes, std::string_view service,
                                    std::string_view endpoint) {
  tern::v1::Response resp;
  if (!resp.ParseFromString(bytes))
    return Error{Code::kInternal,
                 fmt::format("{}/{} sent a reply that is not a tern.v1.Response", service, endpoint)};
  if (resp.has_error() && resp.error().code() != tern::v1::OK) return from_wire(resp.error());
  return std::move(*resp.mutable_body());
}

}  // namespace tern::detail
