// The tern command line: call and load any service by hand, or create one.
//
//   tern call SERVICE ENDPOINT ['<json>'] [--timeout 2s]
//   tern bench SERVICE ENDPOINT ['<json>'] [-n N] [-c C] [--duration 10s] [--json]
//   tern describe SERVICE
//   tern trace TRACE_ID [--json] | tern traces [--errors] [--slow MS] [-n N]
//   tern new service.NAME|api.NAME [--dir ROOT]
//
// JSON is turned into the endpoint's request type using the service's
// _describe endpoint, so the CLI needs no generated code for the service.
#include <charconv>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include "bench.h"
#include "broker_tools.h"
#include "dynamic.h"
#include "new_service.h"
#include "tern/json.h"
#include "tern/tern.h"
#ifdef TERN_CLI_TRACE
#include "trace_cmd.h"
#endif

namespace {

using tern::cli::DynamicEndpoint;

constexpr int kExitCallFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoBroker = 3;

constexpr const char* kUsage =
    "usage:\n"
    "  tern call SERVICE ENDPOINT ['<json>']    call an endpoint, print the reply as JSON\n"
    "  tern bench SERVICE ENDPOINT ['<json>'] [-n N] [-c C] [--duration 10s] [--json]\n"
    "                                           load an endpoint, print throughput and latency\n"
    "  tern describe SERVICE                    list a service's endpoints and types\n"
    "  tern publish TYPE '<json>'               publish an event of a message type the services define\n"
    "  tern tail PATTERN [-n N] [--duration 10s]  print events matching PATTERN as JSON lines\n"
    "  tern trace TRACE_ID [--json]             a trace's call tree from service.trace: start and\n"
    "                                           duration (ms), kind, name, service and code per span\n"
    "  tern traces [--errors] [--slow MS] [-n N]  recent traces (failed ones; at least MS long)\n"
    "  tern dlq list SUBSCRIPTION               events in SUBSCRIPTION's dead-letter queue\n"
    "  tern dlq replay SUBSCRIPTION             move them back to SUBSCRIPTION\n"
    "  tern new service.NAME|api.NAME [--dir ROOT]\n"
    "                                           create services/NAME/ (api.: NAME-api/) with a\n"
    "                                           proto, handlers, main, test and CMake line\n"
    "  tern help                                this text\n"
    "flags: --timeout DURATION per call (default 2s; e.g. 500ms, 2s), --amqp-url URL[,URL...]\n"
    "       (default TERN_AMQP_URL; a cluster's nodes comma-separated), --dir ROOT (tern new; default: .)\n"
    "login: TERN_AMQP_USER and TERN_AMQP_PASSWORD_FILE (or TERN_AMQP_PASSWORD) from the environment,\n"
    "       never a flag (scripts/up writes .tern/cli.env, for user tern-cli)\n"
    "exit status: 0 ok, 1 the call failed (CODE: message on stderr), 2 usage, 3 no broker\n";

struct Args {
  std::vector<std::string> positional;
  std::chrono::milliseconds timeout{2000};
  tern::cli::BenchOptions bench;
  tern::Options options;
  std::string dir = ".";  // tern new: the repository root
  bool errors = false;    // tern traces --errors
  long long slow_ms = 0;  // tern traces --slow MS
};

bool parse_duration(std::string_view s, std::chrono::milliseconds* out) {
  long long n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || n < 0) return false;
  std::string_view unit(end, static_cast<size_t>(s.data() + s.size() - end));
  if (unit == "ms") *out = std::chrono::milliseconds(n);
  else if (unit == "s" || unit.empty()) *out = std::chrono::seconds(n);
  else if (unit == "m") *out = std::chrono::minutes(n);
  else return false;
  return true;
}

template <class T>
bool parse_number(std::string_view s, T* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && *out > 0;
}

int fail_usage(std::string_view why) {
  fmt::print(stderr, "tern: {}\n{}", why, kUsage);
  return kExitUsage;
}

int fail_call(const tern::Error& e) {
  fmt::print(stderr, "{}: {}\n", tern::code_name(e.code), e.message);
  return kExitCallFailed;
}

int cmd_describe(tern::Client& client, const Args& args) {
  if (args.positional.size() != 2) return fail_usage("describe takes SERVICE");
  auto d = tern::cli::describe(client, args.positional[1], args.timeout);
  if (!d.ok()) return fail_call(d.error());
  for (const auto& e : d->endpoints())
    fmt::print("{}  {} -> {}\n", e.name(), e.request_type(), e.response_type());
  return 0;
}

// call and bench: SERVICE ENDPOINT ['<json>'].
int cmd_endpoint(tern::Client& client, const Args& args) {
  const std::string& cmd = args.positional[0];
  if (args.positional.size() < 3 || args.positional.size() > 4)
    return fail_usage(fmt::format("{} takes SERVICE ENDPOINT ['<json>']", cmd));
  const std::string& service = args.positional[1];
  const std::string& endpoint = args.positional[2];
  const std::string json = args.positional.size() == 4 ? args.positional[3] : "{}";

  auto ep = DynamicEndpoint::resolve(client, service, endpoint, args.timeout);
  if (!ep.ok()) return fail_call(ep.error());
  auto req = (*ep)->request_from_json(json);
  if (!req.ok()) return fail_usage(req.error().message);

  if (cmd == "bench") {
    tern::cli::BenchOptions opts = args.bench;
    opts.timeout = args.timeout;
    return tern::cli::run_bench(client, service, endpoint, (*req)->SerializeAsString(), opts);
  }
  auto resp = (*ep)->new_response();
  auto ctx = tern::Context::with_timeout(args.timeout);
  tern::Error err = client.run([&] {
    return tern::call_message(ctx, service, endpoint, **req, resp.get(),
                              tern::CallOptions{.timeout = args.timeout});
  });
  if (err.code != tern::Code::kOk) return fail_call(err);
  fmt::print("{}\n", tern::json::to_json(*resp));
  return 0;
}

// publish TYPE '<json>': the type must be one the services under services/
// define (the CLI links their messages).
int cmd_publish(tern::Client& client, const Args& args) {
  if (args.positional.size() != 3) return fail_usage("publish takes TYPE '<json>'");
  const auto* type =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(args.positional[1]);
  if (type == nullptr)
    return fail_usage(fmt::format("unknown message type '{}' (the CLI knows the services' .proto types)",
                                  args.positional[1]));
  std::unique_ptr<google::protobuf::Message> event(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
  auto status = google::protobuf::util::JsonStringToMessage(args.positional[2], event.get());
  if (!status.ok())
    return fail_usage(fmt::format("the JSON is not a {}: {}", type->full_name(), std::string(status.message())));
  auto ctx = tern::Context::with_timeout(args.timeout);
  tern::Error e = client.run([&] { return tern::publish(ctx, *event); });
  if (!e.ok()) return fail_call(e);
  fmt::print("published {} with routing key {}\n", type->full_name(), tern::event_routing_key(type));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tern::log::set_process_name("tern");
  Args args;
  try {
    args.options = tern::Options::from_env();
  } catch (const tern::ConfigError& e) {
    return fail_usage(e.what());
  }
  args.options.threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    // The value of a flag given as "--flag value" or "--flag=value".
    auto value = [&](std::string_view flag) -> std::optional<std::string_view> {
      if (a == flag) {
        if (i + 1 < argc) return std::string_view(argv[++i]);
        return std::nullopt;
      }
      if (a.starts_with(flag) && a.size() > flag.size() && a[flag.size()] == '=')
        return a.substr(flag.size() + 1);
      return std::nullopt;
    };
    auto is = [&](std::string_view flag) {
      return a == flag || (a.starts_with(flag) && a.size() > flag.size() && a[flag.size()] == '=');
    };
    if (a == "--help" || a == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (a == "--errors") {
      args.errors = true;
    } else if (is("--slow")) {
      auto v = value("--slow");
      if (!v || !parse_number(*v, &args.slow_ms)) return fail_usage("bad --slow");
    } else if (a == "--json") {
      args.bench.json = true;
    } else if (is("--timeout")) {
      auto v = value("--timeout");
      if (!v || !parse_duration(*v, &args.timeout) || args.timeout.count() == 0)
        return fail_usage("bad --timeout");
    } else if (is("--duration")) {
      auto v = value("--duration");
      if (!v || !parse_duration(*v, &args.bench.duration)) return fail_usage("bad --duration");
    } else if (is("-n")) {
      auto v = value("-n");
      if (!v || !parse_number(*v, &args.bench.requests)) return fail_usage("bad -n");
    } else if (is("-c")) {
      auto v = value("-c");
      if (!v || !parse_number(*v, &args.bench.concurrency)) return fail_usage("bad -c");
    } else if (is("--amqp-url")) {
      auto v = value("--amqp-url");
      if (!v) return fail_usage("--amqp-url needs a value");
      args.options.amqp_url = std::string(*v);
    } else if (is("--dir")) {
      auto v = value("--dir");
      if (!v) return fail_usage("--dir needs a value");
      args.dir = std::string(*v);
    } else if (a.starts_with("-") && a.size() > 1) {
      return fail_usage(fmt::format("unknown flag {}", a));
    } else {
      args.positional.emplace_back(a);
    }
  }
  try {
    (void)args.options.amqp_urls();
  } catch (const tern::ConfigError& e) {
    return fail_usage(e.what());
  }
  if (args.positional.empty()) return fail_usage("no command");
  const std::string& cmd = args.positional[0];
  if (cmd == "help") {
    fmt::print("{}", kUsage);
    return 0;
  }
  if (cmd == "new") {
    if (args.positional.size() != 2) return fail_usage("new takes service.NAME or api.NAME");
    return tern::cli::new_service(args.positional[1], args.dir);
  }
  if (cmd != "call" && cmd != "describe" && cmd != "bench" && cmd != "tail" && cmd != "dlq" &&
      cmd != "publish" && cmd != "trace" && cmd != "traces")
    return fail_usage(fmt::format("unknown command '{}'", cmd));
  try {
    if (cmd == "tail") {
      if (args.positional.size() != 2) return fail_usage("tail takes PATTERN");
      long count = args.bench.requests == 1000 ? 0 : static_cast<long>(args.bench.requests);
      return tern::cli::tail_events(args.options.amqp_urls(), args.positional[1], count,
                                    args.bench.duration);
    }
    if (cmd == "dlq") {
      if (args.positional.size() != 3 || (args.positional[1] != "list" && args.positional[1] != "replay"))
        return fail_usage("dlq takes list|replay SUBSCRIPTION");
      const auto urls = args.options.amqp_urls();
      return args.positional[1] == "list" ? tern::cli::dlq_list(urls, args.positional[2])
                                          : tern::cli::dlq_replay(urls, args.positional[2]);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "UNAVAILABLE: {}\n", e.what());
    return kExitNoBroker;
  }

  std::unique_ptr<tern::Client> client;
  try {
    client = std::make_unique<tern::Client>(args.options, "tern.cli");
  } catch (const std::exception& e) {
    fmt::print(stderr, "UNAVAILABLE: cannot reach the broker: {}\n", e.what());
    return kExitNoBroker;
  }
  if (cmd == "publish") return cmd_publish(*client, args);
  if (cmd == "trace" || cmd == "traces") {
#ifdef TERN_CLI_TRACE
    if (cmd == "trace") {
      if (args.positional.size() != 2) return fail_usage("trace takes TRACE_ID");
      return tern::cli::print_trace(*client, args.positional[1], args.bench.json, args.timeout);
    }
    if (args.positional.size() != 1) return fail_usage("traces takes no arguments");
    tern::cli::TracesOptions opts;
    if (args.bench.requests != tern::cli::BenchOptions{}.requests)
      opts.limit = static_cast<uint32_t>(args.bench.requests);
    opts.errors_only = args.errors;
    opts.min_duration_ms = args.slow_ms;
    return tern::cli::print_traces(*client, opts, args.timeout);
#else
    return fail_usage("this tern was built without services/trace");
#endif
  }
  return cmd == "describe" ? cmd_describe(*client, args) : cmd_endpoint(*client, args);
}
