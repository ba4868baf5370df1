// tern bench: load a service endpoint from many fibers, like hey or ghz.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "tern/client.h"

namespace tern::cli {

struct BenchOptions {
  int64_t requests = 1000;                    // -n: calls to make (unless duration is set)
  int concurrency = 1;                        // -c: fibers calling at once
  std::chrono::milliseconds duration{0};      // --duration: run this long instead of -n calls
  std::chrono::milliseconds timeout{2000};    // --timeout: per call
  bool json = false;                          // --json: one line of JSON
  std::map<std::string, std::string> metadata;  // -H: sent with every call
};

// Calls service/endpoint with the serialized request `body`, first a short
// warm-up, then the measured run; prints the report. Returns the exit code.
int run_bench(Client& client, const std::string& service, const std::string& endpoint,
              const std::string& body, const BenchOptions& opts);

}  // namespace tern::cli
