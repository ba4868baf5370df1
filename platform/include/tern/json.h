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
// rather than strings: {"amount":1250}. Strings are written by quote(), so
// the JSON is valid UTF-8 even when a string field holds bytes that are not.
std::string to_json(const google::protobuf::Message& message);

// `s` as a JSON string literal, quotes included: "a\"b". The one JSON string
// escaper of tern (to_json, log lines, the gateway's error bodies, Zipkin
// JSON, the CLI use it): the result is valid UTF-8 JSON for any bytes.
// Quotes, backslashes and control characters (U+0000-U+001F and U+007F) are
// escaped; well-formed UTF-8 (RFC 3629) is copied as it is; every other byte
// (a lone continuation byte, each byte of a truncated sequence, an overlong
// form, a UTF-8-encoded surrogate, anything past U+10FFFF) becomes \ufffd,
// U+FFFD REPLACEMENT CHARACTER, one per byte.
std::string quote(std::string_view s);
// quote(s) appended to *out, for writers that build a document in a buffer.
void append_quoted(std::string_view s, std::string* out);

// Parses JSON into `message`, accepting both field names ("account_id")
// and JSON names ("accountId"). INVALID_ARGUMENT with the parser's reason
// on bad JSON, unknown fields or wrong types.
Error from_json(std::string_view json, google::protobuf::Message* message);

// Whether s is well-formed UTF-8 (RFC 3629), as protobuf string fields
// must be: check what comes from outside (a path, a query) before it
// becomes one.
bool valid_utf8(std::string_view s);

}  // namespace tern::json
