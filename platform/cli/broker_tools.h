// CLI commands that work on the broker directly: tern tail, tern dlq.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::cli {

// Each command connects to the first of `urls` (Options::amqp_urls()) that
// answers.

// Prints events matching `pattern` as JSON lines until `count` were printed
// (none: no limit) or `duration` passed (0: no limit). Returns the exit code.
int tail_events(const std::vector<std::string>& urls, const std::string& pattern, std::optional<long> count,
                std::chrono::milliseconds duration);
// What a passive queue.declare says of a queue: whether it exists, its
// ready messages and consumers (a service's request queue: its instances).
struct QueueState {
  std::string name;
  bool exists = false;
  uint32_t messages = 0;
  uint32_t consumers = 0;
  std::string error;   // the broker refused to say (e.g. 403); exists is false
};
// Asks the broker about each of `names`, on one connection; throws if no
// node answers. AMQP 0-9-1 has no way to list queues: only named ones can
// be asked about.
std::vector<QueueState> probe_queues(const std::vector<std::string>& urls, const std::vector<std::string>& names);
// Lists the events in <subscription>.dead-letter without removing them.
int dlq_list(const std::vector<std::string>& urls, const std::string& subscription);
// Moves every event in <subscription>.dead-letter back to the subscription.
int dlq_replay(const std::vector<std::string>& urls, const std::string& subscription);

}  // namespace tern::cli
