// CLI commands that work on the broker directly: tern tail, tern dlq.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace tern::cli {

// Each command connects to the first of `urls` (Options::amqp_urls()) that
// answers.

// Prints events matching `pattern` as JSON lines until `count` were printed
// (0: no limit) or `duration` passed (0: no limit). Returns the exit code.
int tail_events(const std::vector<std::string>& urls, const std::string& pattern, long count,
                std::chrono::milliseconds duration);
// Lists the events in <subscription>.dead-letter without removing them.
int dlq_list(const std::vector<std::string>& urls, const std::string& subscription);
// Moves every event in <subscription>.dead-letter back to the subscription.
int dlq_replay(const std::vector<std::string>& urls, const std::string& subscription);

}  // namespace tern::cli
