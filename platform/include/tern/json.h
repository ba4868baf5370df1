// Protobuf messages as JSON, for the gateway, the CLI and services that
// speak JSON to the outside (webhooks).
#pragma once

#include <string>
#include <string_view>

#include <google/protobuf/message.h>

#include "tern/error.h"

namespace tern::json {

// protobuf's JSON mapping (lowerCamelCase names, enums by name, bytes as
// base64, well-known types in their JSON forms, every field printed, even
// when it holds its default), except that 64-bit integers print as numbers
// rather than strings: {"amount":1250}.
std::string to_json(const google::protobuf::Message& message);

// `s` as a JSON string literal, quotes included: "a\"b".
std::string quote(std::string_view s);

// Parses JSON into `message`, accepting both field names ("account_id")
// and JSON names ("accountId"). INVALID_ARGUMENT with the parser's reason
// on bad JSON, unknown fields or wrong types.
Error from_json(std::string_view json, google::protobuf::Message* message);

}  // namespace tern::json
