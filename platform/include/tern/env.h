// Configuration from the environment, read once at start-up into typed
// fields: the one parser for TERN_* variables (Options, the gateway and the
// example services all use it).
//
//   http.port = static_cast<int>(tern::env::integer("TERN_GATEWAY_PORT", 8080, 1, 65535));
//
// Each function reads one variable; unset or empty gives the default. A value
// that is there but malformed throws ConfigError naming the variable and the
// value, never a silent default: "TERN_GATEWAY_PORT='abc' is not a number",
// "TERN_GATEWAY_PORT='70000' is out of range 1..65535". Service::run turns a
// ConfigError into exit code 2; a main() reading its own variables before
// run() should do the same. Not thread-safe against setenv (getenv is not).
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include <string_view>

namespace tern {

// A malformed configuration value; what() says which and why.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace env {

// The variable's value, or `fallback` when it is unset or empty.
std::string string(const char* name, std::string fallback);

// The variable as a decimal integer in [min, max] (optional '-', digits,
// nothing else: no spaces, no '+', no suffix), or `fallback` when unset or
// empty. `fallback` itself is not checked against the range.
int64_t integer(const char* name, int64_t fallback, int64_t min, int64_t max);

// The variable as a whole number of milliseconds in [min, max] (the same
// syntax as integer: "1500", not "1.5s"), for variables named *_MS.
std::chrono::milliseconds duration_ms(const char* name, std::chrono::milliseconds fallback,
                                      std::chrono::milliseconds min, std::chrono::milliseconds max);

// Every variable string/integer/duration_ms have been asked for so far, in
// order, each once, with the fallback it was given (as text): what a
// process's --help lists as read by it.
struct Variable {
  std::string name;
  std::string fallback;
};
std::vector<Variable> read_so_far();

// The parser behind integer(), for text from elsewhere (a flag): `source`
// names it in the message, as "--threads" in "--threads='x' is not a number".
int64_t parse_integer(std::string_view source, std::string_view text, int64_t min, int64_t max);

}  // namespace env
}  // namespace tern
