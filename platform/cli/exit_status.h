// How the tern CLI ends: its exit statuses (one table, also printed by
// `tern help exit-codes` and docs/cli.md) and how it reports a failed call.
#pragma once

#include <string>
#include <string_view>

#include "tern/error.h"

namespace tern::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCallFailed = 1;  // --exit-status generic (the default): any code
inline constexpr int kExitUsage = 2;       // bad arguments, JSON that does not fit the request type
inline constexpr int kExitNoBroker = 3;    // no node of --amqp-url answered
// --exit-status per-code: a failed call exits kExitCodeBase + its code's
// number (google.rpc numbering, as grpcurl does), so 67 INVALID_ARGUMENT,
// 69 NOT_FOUND, 78 UNAVAILABLE, 80 UNAUTHENTICATED.
inline constexpr int kExitCodeBase = 64;

enum class ErrorFormat { kText, kJson };       // --format-error
enum class ExitStatus { kGeneric, kPerCode };  // --exit-status

struct Failure {
  ErrorFormat format = ErrorFormat::kText;
  ExitStatus status = ExitStatus::kGeneric;
};

// The exit status of a call that failed with `code` (not kOk).
int exit_status(Code code, ExitStatus status);
// The table of every exit status with what it means, for --help and docs.
std::string exit_status_table();

// The error as one JSON object: {"code":"NOT_FOUND","message":...,
// "params":{...},"retryable":false}.
std::string error_json(const Error& e);
// Prints `e` to stderr (text: "CODE: message"; json: error_json) and
// returns the exit status of a failed call.
int fail_call(const Error& e, const Failure& how);
// The same for failures that are not the call's: usage (exit 2, reported as
// INVALID_ARGUMENT in JSON) and no broker (exit 3, UNAVAILABLE).
int fail_usage(std::string_view why, const Failure& how);
int fail_no_broker(std::string_view why, const Failure& how);

}  // namespace tern::cli
