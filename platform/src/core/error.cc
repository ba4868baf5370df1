#include "tern/error.h"

#include <array>

#include <fmt/format.h>

namespace tern {
namespace {

constexpr std::array<std::string_view, 17> kNames = {
    "OK",          "CANCELLED",         "UNKNOWN",        "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED", "NOT_FOUND",   "ALREADY_EXISTS", "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",        "UNAVAILABLE",    "DATA_LOSS",
    "UNAUTHENTICATED",
};

// The one table from codes to HTTP statuses.
constexpr std::array<int, 17> kHttp = {
    200,  // OK
    499,  // CANCELLED (client closed request)
    500,  // UNKNOWN
    400,  // INVALID_ARGUMENT
    504,  // DEADLINE_EXCEEDED
    404,  // NOT_FOUND
    409,  // ALREADY_EXISTS
    403,  // PERMISSION_DENIED
    429,  // RESOURCE_EXHAUSTED
    400,  // FAILED_PRECONDITION
    409,  // ABORTED
    400,  // OUT_OF_RANGE
    501,  // UNIMPLEMENTED
    500,  // INTERNAL
    503,  // UNAVAILABLE
    500,  // DATA_LOSS
    401,  // UNAUTHENTICATED
};

size_t index_of(Code code) {
  auto i = static_cast<size_t>(code);
  return i < kNames.size() ? i : static_cast<size_t>(Code::kUnknown);
}

}  // namespace

std::string_view code_name(Code code) { return kNames[index_of(code)]; }

bool parse_code(std::string_view name, Code* out) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) {
      *out = static_cast<Code>(i);
      return true;
    }
  }
  return false;
}

bool retryable_by_default(Code code) { return code == Code::kUnavailable; }

int http_status(Code code) { return kHttp[index_of(code)]; }

std::string Error::to_string() const {
  return fmt::format("{}: {}", code_name(code), message);
}

}  // namespace tern
