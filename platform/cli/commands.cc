#include "commands.h"

#include <fmt/format.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/fiber/all.hpp>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "describe_cmd.h"
#include "dynamic.h"
#include "tern/json.h"
#include "tern/tern.h"

namespace tern::cli {

Failure Args::failure() const {
  return Failure{.format = format_error == "json" ? ErrorFormat::kJson : ErrorFormat::kText,
                 .status = exit_status == "per-code" ? ExitStatus::kPerCode : ExitStatus::kGeneric};
}

bool parse_duration(const std::string& s, std::chrono::milliseconds* out) {
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  long long n = 0;
  size_t used = 0;
  try {
    n = std::stoll(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  const std::string unit = s.substr(used);
  if (unit == "ms")
    *out = std::chrono::milliseconds(n);
  else if (unit == "s" || unit.empty())
    *out = std::chrono::seconds(n);
  else if (unit == "m")
    *out = std::chrono::minutes(n);
  else
    return false;
  return true;
}

std::chrono::milliseconds to_ms(const std::string& s) {
  std::chrono::milliseconds d{};
  (void)parse_duration(s, &d);
  return d;
}

namespace {

bool given(const Args& args, const char* name) {
  return args.command != nullptr && args.command->count(name) > 0;
}

// The request (or event) as JSON: the JSON argument, -d JSON, -d @FILE or
// -d @- (all of stdin); `fallback` if neither was given. INVALID_ARGUMENT
// if a file cannot be read.
Result<std::string> body(const Args& args, const char* fallback) {
  std::string text = args.json;
  if (given(args, "--data"))
    text = args.data;
  else if (!given(args, "json"))
    return std::string(fallback);
  if (!text.starts_with('@')) return text;
  const std::string path = text.substr(1);
  std::ostringstream all;
  if (path == "-") {
    all << std::cin.rdbuf();
    return all.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Code::kInvalidArgument, fmt::format("cannot read {}", path)};
  all << in.rdbuf();
  return all.str();
}

// -H key:value as call metadata: keys lowercased (as HTTP's, and as the
// gateway passes them on), spaces after the colon dropped, "key:" an empty value.
Result<Context::Metadata> metadata(const Args& args) {
  Context::Metadata out;
  for (const std::string& h : args.headers) {
    auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0)
      return Error{Code::kInvalidArgument, fmt::format("-H takes key:value, not '{}'", h)};
    std::string key = h.substr(0, colon);
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    std::string value = h.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    out[key] = value;
  }
  return out;
}

// The endpoint's types and the request built from the body, or the exit
// status of what went wrong.
struct Prepared {
  std::unique_ptr<DynamicEndpoint> endpoint;
  std::unique_ptr<google::protobuf::Message> request;
  Context::Metadata metadata;
};
std::variant<Prepared, int> prepare(Client& client, const Args& args) {
  const Failure how = args.failure();
  auto md = metadata(args);
  if (!md.ok()) return fail_usage(md.error().message, how);
  auto json = body(args, "{}");
  if (!json.ok()) return fail_usage(json.error().message, how);
  auto ep = DynamicEndpoint::resolve(client, args.service, args.endpoint, to_ms(args.timeout));
  if (!ep.ok()) return fail_call(ep.error(), how);
  auto req = (*ep)->request_from_json(*json);
  if (!req.ok()) return fail_usage(req.error().message, how);
  return Prepared{std::move(*ep), std::move(*req), std::move(*md)};
}

}  // namespace

int cmd_call(Client& client, const Args& args) {
  auto prepared = prepare(client, args);
  if (auto* rc = std::get_if<int>(&prepared)) return *rc;
  auto& p = std::get<Prepared>(prepared);
  const auto timeout = to_ms(args.timeout);
  auto resp = p.endpoint->new_response();
  auto ctx = Context::with_timeout(timeout);
  for (const auto& [key, value] : p.metadata) ctx.set_metadata(key, value);
  Error err = client.run([&] {
    return call_message(ctx, args.service, args.endpoint, *p.request, resp.get(),
                        CallOptions{.timeout = timeout});
  });
  if (!err.ok()) return fail_call(err, args.failure());
  fmt::print("{}\n", json::to_json(*resp));
  return kExitOk;
}

int cmd_bench(Client& client, const Args& args) {
  auto prepared = prepare(client, args);
  if (auto* rc = std::get_if<int>(&prepared)) return *rc;
  auto& p = std::get<Prepared>(prepared);
  BenchOptions opts = args.bench;
  opts.timeout = to_ms(args.timeout);
  opts.duration = to_ms(args.bench_duration);
  opts.json = args.json_out;
  opts.metadata = p.metadata;
  return run_bench(client, args.service, args.endpoint, p.request->SerializeAsString(), opts);
}

int cmd_describe(Client& client, const Args& args) {
  const auto timeout = to_ms(args.timeout);
  auto described = client.run([&] {
    return DescribedService::fetch(Context::with_timeout(timeout), args.service, timeout);
  });
  if (!described.ok()) return fail_call(described.error(), args.failure());
  if (args.endpoint.empty()) {
    fmt::print("{}", render_endpoints(**described));
    return kExitOk;
  }
  auto text = render_endpoint(**described, args.endpoint);
  if (!text.ok()) return fail_call(text.error(), args.failure());
  fmt::print("{}", *text);
  return kExitOk;
}

// publish TYPE '<json>': the type must be one the services under services/
// define (the CLI links their messages).
int cmd_publish(Client& client, const Args& args) {
  const Failure how = args.failure();
  const auto* type =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(args.what);
  if (type == nullptr)
    return fail_usage(
        fmt::format("unknown message type '{}' (the CLI knows the services' .proto types)",
                    args.what),
        how);
  if (!given(args, "json") && !given(args, "--data"))
    return fail_usage("publish takes the event as JSON or -d", how);
  auto json = body(args, "{}");
  if (!json.ok()) return fail_usage(json.error().message, how);
  std::unique_ptr<google::protobuf::Message> event(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
  auto status = google::protobuf::util::JsonStringToMessage(*json, event.get());
  if (!status.ok())
    return fail_usage(
        fmt::format("the JSON is not a {}: {}", type->full_name(), std::string(status.message())),
        how);
  auto ctx = Context::with_timeout(to_ms(args.timeout));
  Error e = client.run([&] { return publish(ctx, *event); });
  if (!e.ok()) return fail_call(e, how);
  fmt::print("published {} with routing key {}\n", type->full_name(), event_routing_key(type));
  return kExitOk;
}

#ifdef TERN_CLI_TRACE
int cmd_trace(Client& client, const Args& args) {
  return print_trace(client, args.what, args.json_out, to_ms(args.timeout), args.failure());
}
int cmd_traces(Client& client, const Args& args) {
  return print_traces(client, args.traces, to_ms(args.timeout), args.failure());
}
#else
int cmd_trace(Client&, const Args& args) {
  return fail_usage("this tern was built without services/trace", args.failure());
}
int cmd_traces(Client&, const Args& args) {
  return fail_usage("this tern was built without services/trace", args.failure());
}
#endif

std::vector<std::string> service_names(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
#ifdef TERN_CLI_SERVICES
  std::string_view built = TERN_CLI_SERVICES;
  while (!built.empty()) {
    auto comma = built.find(',');
    out.emplace_back(built.substr(0, comma));
    built = comma == std::string_view::npos ? std::string_view() : built.substr(comma + 1);
  }
#endif
  for (const auto& name : extra)
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  return out;
}

int print_list(Client& client, const std::vector<QueueState>& queues,
               const std::vector<std::string>& asked, std::chrono::milliseconds timeout) {
  std::vector<const QueueState*> shown;
  for (const auto& q : queues)
    if (q.exists || std::find(asked.begin(), asked.end(), q.name) != asked.end())
      shown.push_back(&q);
  // Each service with instances is asked for its _health, all at once.
  std::vector<std::string> health(shown.size());
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (size_t i = 0; i < shown.size(); ++i) {
      if (shown[i]->consumers == 0) continue;
      fibers.emplace_back([&, i] {
        auto ctx = Context::with_timeout(timeout);
        auto r = call<v1::HealthResponse>(ctx, shown[i]->name, "_health", v1::HealthRequest{},
                                          CallOptions{.timeout = timeout, .max_attempts = 1});
        health[i] = r.ok() ? fmt::format("{} ({})", r->status(), r->instance())
                           : std::string(code_name(r.code()));
      });
    }
    for (auto& f : fibers) f.join();
  });
  size_t width = 7;
  for (const auto* q : shown) width = std::max(width, q->name.size());
  // A service instance consumes its request queue on each of its threads:
  // consumers count those, not instances.
  fmt::print("{:<{}}  {:>9}  {:>6}  {}\n", "service", width, "consumers", "queued", "health");
  for (size_t i = 0; i < shown.size(); ++i) {
    const QueueState& q = *shown[i];
    std::string state = !q.error.empty()   ? "broker refused: " + q.error
                        : !q.exists        ? "no request queue"
                        : q.consumers == 0 ? "no instance consuming"
                                           : health[i];
    fmt::print("{:<{}}  {:>9}  {:>6}  {}\n", q.name, width, q.consumers, q.messages, state);
  }
  fmt::print(stderr,
             "(asked the broker about {} name(s): the services tern was built with and any named; "
             "AMQP cannot "
             "list queues, so name others: tern list service.x)\n",
             queues.size());
  return kExitOk;
}

}  // namespace tern::cli
