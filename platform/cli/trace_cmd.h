// tern trace and tern traces: a trace's call tree and the recent traces, from
// service.trace. Built into the CLI when services/trace is (TERN_CLI_TRACE).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "exit_status.h"
#include "tern/client.h"

namespace tern::cli {

// Prints the call tree of `trace_id` (trace::render_text), or with `json`
// get_trace's reply as JSON (every span, ids included). Returns the exit
// status: 0, or fail_call's with the error on stderr as `how` says
// (NOT_FOUND: no such trace yet).
int print_trace(Client& client, const std::string& trace_id, bool json,
                std::chrono::milliseconds timeout, const Failure& how = {});

struct TracesOptions {
  uint32_t limit = 20;
  bool errors_only = false;   // --errors
  int64_t min_duration_ms = 0;  // --slow MS: at least this long, slowest first
};
// Prints the recent traces, a line each: start, duration, spans, error, id, root.
int print_traces(Client& client, const TracesOptions& options, std::chrono::milliseconds timeout,
                 const Failure& how = {});

}  // namespace tern::cli
