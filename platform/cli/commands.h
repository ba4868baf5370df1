// The tern CLI's commands that call services: what each does once main.cc's
// parser has filled in Args.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "bench.h"
#include "broker_tools.h"
#include "exit_status.h"
#include "tern/client.h"
#include "trace_cmd.h"

namespace CLI {
class App;
}

namespace tern::cli {

// What the parser fills in; only the command that runs reads its part.
struct Args {
  const CLI::App* command = nullptr;    // the command that runs: which flags it was given
  std::string amqp_url;                 // --amqp-url (default: TERN_AMQP_URL)
  std::string timeout = "2s";           // --timeout
  std::string format_error = "text";    // --format-error text|json
  std::string exit_status = "generic";  // --exit-status generic|per-code
  // call, bench, publish: the request or event.
  std::string service, endpoint, json, data;
  std::vector<std::string> headers;  // -H key:value
  BenchOptions bench;
  std::string bench_duration = "0s";
  bool json_out = false;  // bench, trace: --json
  // list, tail, trace, dlq, new, help.
  std::vector<std::string> names;
  std::string pattern, subscription, what, dir = ".";
  long tail_count = 0;
  std::string tail_duration = "0s";
  TracesOptions traces;
  std::string help_topic;

  Failure failure() const;
};

// 500ms, 2s, 1m; a bare number is seconds. False if it is none of these.
bool parse_duration(const std::string& s, std::chrono::milliseconds* out);
// A duration the parser has already checked.
std::chrono::milliseconds to_ms(const std::string& s);

int cmd_call(Client& client, const Args& args);
int cmd_bench(Client& client, const Args& args);
int cmd_describe(Client& client, const Args& args);
int cmd_publish(Client& client, const Args& args);
int cmd_trace(Client& client, const Args& args);
int cmd_traces(Client& client, const Args& args);

// The names tern list asks the broker about: the services this tern was
// built with (TERN_CLI_SERVICES) and `extra`, once each.
std::vector<std::string> service_names(const std::vector<std::string>& extra);
// Prints the services whose request queue exists, or that were asked for
// by name, with their request queue's consumers (each instance's threads),
// queued requests and what _health answers (SERVING and the instance that
// answered). Returns the exit status (0).
int print_list(Client& client, const std::vector<QueueState>& queues,
               const std::vector<std::string>& asked, std::chrono::milliseconds timeout);

}  // namespace tern::cli
