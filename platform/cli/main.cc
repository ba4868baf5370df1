// The tern command line: call, load and inspect any service on the bus by
// hand, or create one. `tern --help` and `tern COMMAND --help` list it all;
// docs/cli.md is the reference.
//
// The parser (CLI11) is the one table of commands and flags: each flag
// belongs to the commands that use it and any other command refuses it
// (exit 2), and `tern completion bash` is made from the same table.
//
// JSON is turned into the endpoint's request type using the service's
// _describe endpoint, so the CLI needs no generated code for the service.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker_tools.h"
#include "commands.h"
#include "completion.h"
#include "exit_status.h"
#include "new_service.h"
#include "tern/tern.h"

#ifndef TERN_VERSION
#define TERN_VERSION "unknown"
#endif

namespace {

using tern::cli::Args;
using tern::cli::Failure;

constexpr const char* kLogin =
    "login: TERN_AMQP_USER and TERN_AMQP_PASSWORD_FILE (or TERN_AMQP_PASSWORD) from the "
    "environment,\n"
    "       never a flag (scripts/up writes .tern/cli.env, for user tern-cli)\n";

// Checks a duration flag's value at parse time (a usage error, exit 2).
CLI::Validator duration(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& s) -> std::string {
        std::chrono::milliseconds d{};
        if (!tern::cli::parse_duration(s, &d)) return "not a duration (e.g. 500ms, 2s, 1m): " + s;
        if (!zero_ok && d.count() == 0) return "must be more than 0";
        return {};
      },
      "DURATION");
}

void add_amqp_url(CLI::App* cmd, Args* f) {
  cmd->add_option("--amqp-url", f->amqp_url,
                  "the broker, URL[,URL...] a cluster's nodes (default: TERN_AMQP_URL)");
}

void add_timeout(CLI::App* cmd, Args* f) {
  cmd->add_option("--timeout", f->timeout, "per call, e.g. 500ms, 2s, 1m")
      ->check(duration(false))
      ->capture_default_str();
}

void add_errors(CLI::App* cmd, Args* f) {
  cmd->add_option("--format-error", f->format_error,
                  "a failed call's error on stderr: text (CODE: message) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option(
         "--exit-status", f->exit_status,
         "a failed call exits 1 (generic) or 64 + its code (per-code; tern help exit-codes)")
      ->check(CLI::IsMember({"generic", "per-code"}))
      ->capture_default_str();
}

// The request of call and bench, the event of publish: JSON as the last
// argument, or -d JSON|@FILE|@- (stdin).
void add_body(CLI::App* cmd, Args* f) {
  auto* json = cmd->add_option("json", f->json, "the request as JSON (default {})");
  cmd->add_option("-d,--data", f->data, "the request: JSON, @FILE, or @- for stdin")
      ->excludes(json);
}

// -H key:value, repeatable; each takes one value (CLI11 lets a list flag
// take every word after it, so -H k:v SERVICE ENDPOINT would eat both).
void add_headers(CLI::App* cmd, Args* f) {
  cmd->add_option("-H,--header", f->headers, "call metadata key:value (repeatable)")
      ->allow_extra_args(false);
}

// The broker connection settings: the environment (TERN_AMQP_*), then --amqp-url.
tern::Result<tern::Options> broker_options(const Args& f) {
  try {
    tern::Options options = tern::Options::from_env();
    options.threads = 1;
    if (!f.amqp_url.empty()) options.amqp_url = f.amqp_url;
    (void)options.amqp_urls();
    return options;
  } catch (const tern::ConfigError& e) {
    return tern::Error{tern::Code::kInvalidArgument, e.what()};
  }
}

// Builds the parser: every command, its arguments and flags, and what it
// runs once parsed (into *run).
void define(CLI::App& app, Args& f, std::function<int()>* run) {
  using namespace tern::cli;
  // Runs `fn` with a client connected as tern.cli; exit 3 if no node answers.
  auto with_client = [&f](std::function<int(tern::Client&, const Args&)> fn) {
    return [&f, fn] {
      auto options = broker_options(f);
      if (!options.ok()) return fail_usage(options.error().message, f.failure());
      std::unique_ptr<tern::Client> client;
      try {
        client = std::make_unique<tern::Client>(*options, "tern.cli");
      } catch (const std::exception& e) {
        return fail_no_broker(fmt::format("cannot reach the broker: {}", e.what()), f.failure());
      }
      return fn(*client, f);
    };
  };
  // Runs `fn` with the broker's URLs, for the commands that speak AMQP
  // themselves; exit 3 if no node answers.
  auto with_urls = [&f](std::function<int(const std::vector<std::string>&)> fn) {
    return [&f, fn] {
      auto options = broker_options(f);
      if (!options.ok()) return fail_usage(options.error().message, f.failure());
      try {
        return fn(options->amqp_urls());
      } catch (const std::exception& e) {
        return fail_no_broker(e.what(), f.failure());
      }
    };
  };
  // What `cmd` runs, once parsed; args.command is then `cmd`.
  auto on = [&f, run](CLI::App* cmd, std::function<int()> fn) {
    cmd->callback([&f, run, cmd, fn] {
      f.command = cmd;
      *run = fn;
    });
  };

  auto* call = app.add_subcommand("call", "call an endpoint, print the reply as JSON");
  call->add_option("service", f.service, "the service, e.g. service.greeter")->required();
  call->add_option("endpoint", f.endpoint, "its endpoint, e.g. hello")->required();
  add_body(call, &f);
  add_headers(call, &f);
  add_timeout(call, &f);
  add_errors(call, &f);
  add_amqp_url(call, &f);
  on(call, with_client(cmd_call));

  auto* bench = app.add_subcommand("bench", "load an endpoint, print throughput and latency");
  bench->add_option("service", f.service, "the service")->required();
  bench->add_option("endpoint", f.endpoint, "its endpoint")->required();
  add_body(bench, &f);
  add_headers(bench, &f);
  bench->add_option("-n", f.bench.requests, "calls to make")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench->add_option("-c", f.bench.concurrency, "fibers calling at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench->add_option("--duration", f.bench_duration, "run this long instead of -n calls")
      ->check(duration(true));
  bench->add_flag("--json", f.json_out, "the report as one line of JSON");
  add_timeout(bench, &f);
  add_amqp_url(bench, &f);
  on(bench, with_client(cmd_bench));

  auto* describe =
      app.add_subcommand("describe", "a service's endpoints and HTTP routes; an endpoint's types");
  describe->add_option("service", f.service, "the service")->required();
  describe->add_option("endpoint", f.endpoint,
                       "print this endpoint's request and reply types (.proto)");
  add_timeout(describe, &f);
  add_errors(describe, &f);
  add_amqp_url(describe, &f);
  on(describe, with_client(cmd_describe));

  auto* list = app.add_subcommand(
      "list",
      "the services on the bus: instances, queued requests, health (the built-in names, or these)");
  list->add_option("services", f.names,
                   "services to ask about besides the ones tern was built with");
  add_timeout(list, &f);
  add_amqp_url(list, &f);
  on(list, [&f, with_urls, with_client] {
    std::vector<QueueState> queues;
    int rc = with_urls([&](const std::vector<std::string>& urls) {
      queues = probe_queues(urls, service_names(f.names));
      return 0;
    })();
    if (rc != 0) return rc;
    return with_client([&queues](tern::Client& client, const Args& fl) {
      return print_list(client, queues, fl.names, to_ms(fl.timeout));
    })();
  });

  auto* publish =
      app.add_subcommand("publish", "publish an event of a message type the services define");
  publish->add_option("type", f.what, "the message type, e.g. greeter.HelloRequest")->required();
  add_body(publish, &f);
  add_timeout(publish, &f);
  add_errors(publish, &f);
  add_amqp_url(publish, &f);
  on(publish, with_client(cmd_publish));

  auto* tail = app.add_subcommand("tail", "print events matching PATTERN as JSON lines");
  tail->add_option("pattern", f.pattern, "a topic pattern, e.g. 'transaction.#'")->required();
  tail->add_option("-n", f.tail_count, "stop after N events (default: no limit)")
      ->check(CLI::PositiveNumber);
  tail->add_option("--duration", f.tail_duration, "stop after this long (default: no limit)")
      ->check(duration(true));
  add_amqp_url(tail, &f);
  on(tail, with_urls([&f](const std::vector<std::string>& urls) {
       std::optional<long> count;
       if (f.command->count("-n") > 0) count = f.tail_count;
       return tail_events(urls, f.pattern, count, to_ms(f.tail_duration));
     }));

  auto* trace = app.add_subcommand(
      "trace",
      "a trace's call tree from service.trace: start and duration (ms), kind, name, service, code");
  trace->add_option("trace_id", f.what, "the trace's id (X-Trace-Id)")->required();
  trace->add_flag("--json", f.json_out, "get_trace's reply as JSON, every span with its ids");
  add_timeout(trace, &f);
  add_errors(trace, &f);
  add_amqp_url(trace, &f);
  on(trace, with_client(cmd_trace));

  auto* traces = app.add_subcommand("traces", "recent traces from service.trace");
  traces->add_flag("--errors", f.traces.errors_only, "only failed ones");
  traces
      ->add_option("--slow", f.traces.min_duration_ms, "only ones at least MS long, slowest first")
      ->check(CLI::PositiveNumber);
  traces->add_option("-n", f.traces.limit, "how many")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_timeout(traces, &f);
  add_errors(traces, &f);
  add_amqp_url(traces, &f);
  on(traces, with_client(cmd_traces));

  auto* dlq = app.add_subcommand("dlq", "a subscription's dead-letter queue");
  dlq->require_subcommand(1);
  auto* dlq_ls =
      dlq->add_subcommand("list", "the events in SUBSCRIPTION's dead-letter queue, left there");
  auto* dlq_re = dlq->add_subcommand("replay", "move them back to SUBSCRIPTION");
  for (auto* sub : {dlq_ls, dlq_re}) {
    sub->add_option("subscription", f.subscription, "e.g. service.balance.on.transaction.created")
        ->required();
    add_amqp_url(sub, &f);
  }
  on(dlq_ls, with_urls([&f](const auto& urls) { return dlq_list(urls, f.subscription); }));
  on(dlq_re, with_urls([&f](const auto& urls) { return dlq_replay(urls, f.subscription); }));

  auto* create = app.add_subcommand(
      "new",
      "create services/NAME/ (api.: NAME-api/) with a proto, handlers, main, test and CMake line");
  create->add_option("name", f.what, "service.NAME or api.NAME")->required();
  create->add_option("--dir", f.dir, "the repository root")->capture_default_str();
  on(create, [&f] { return new_service(f.what, f.dir); });

  auto* completion = app.add_subcommand("completion", "a shell completion script");
  completion->require_subcommand(1);
  on(completion->add_subcommand("bash", "for bash: source <(tern completion bash)"), [&app] {
    fmt::print("{}", bash_completion(app));
    return 0;
  });

  auto* help =
      app.add_subcommand("help", "this text; help COMMAND: the command's; help exit-codes");
  help->add_option("topic", f.help_topic, "a command, or exit-codes");
  on(help, [&app, &f] {
    if (f.help_topic == "exit-codes") {
      fmt::print("exit status:\n{}", exit_status_table());
      return 0;
    }
    if (f.help_topic.empty()) {
      fmt::print("{}", app.help());
      return 0;
    }
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      if (sub->get_name() == f.help_topic && f.help_topic != "help") {
        fmt::print("{}", sub->help(app.get_name()));
        return 0;
      }
    return fail_usage(fmt::format("no command '{}' (tern help lists them)", f.help_topic),
                      Failure{});
  });
}

}  // namespace

int main(int argc, char** argv) {
  tern::log::set_process_name("tern");
  CLI::App app{"tern: call, load and inspect the services on the bus, or create one", "tern"};
  app.set_version_flag("--version", "tern " TERN_VERSION, "print the version and exit");
  app.require_subcommand(1);
  app.footer(fmt::format(
      "{}exit status (tern help exit-codes for every code):\n  0 ok, 1 the call failed, "
      "2 usage, 3 no broker\n",
      kLogin));
  Args flags;
  std::function<int()> run;
  define(app, flags, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success))
      return app.exit(e);  // --help, --version
    std::string where;
    for (const CLI::App* sub = &app; sub != nullptr;) {
      auto selected = sub->get_subcommands();
      if (selected.empty()) break;
      sub = selected.front();
      where += " " + sub->get_name();
    }
    fmt::print(stderr, "tern{}: {}\nrun 'tern{} --help' for usage\n", where, e.what(), where);
    return tern::cli::kExitUsage;
  }
  return run ? run() : tern::cli::kExitUsage;
}
