// tern describe: a service's endpoints, their HTTP routes, and with an
// endpoint its request and reply types as .proto source, from _describe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "tern/described.h"

namespace tern::cli {

// One line per endpoint, "NAME  REQUEST_TYPE -> RESPONSE_TYPE", each
// followed by its routes indented ("  http: POST /hello").
std::string render_endpoints(const DescribedService& service);
// The endpoint's line and routes, then its request and response messages
// and every message they use (fields, types, numbers) as .proto source.
// UNIMPLEMENTED if the service has no such endpoint.
Result<std::string> render_endpoint(const DescribedService& service, const std::string& endpoint);

}  // namespace tern::cli
