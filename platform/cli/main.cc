// The tern command line: call any service by hand.
//
//   tern call SERVICE ENDPOINT '<json>' [--timeout 2s]
//   tern describe SERVICE
//
// JSON is turned into the endpoint's request type using the service's
// _describe endpoint, so the CLI needs no generated code for the service.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "tern/envelope.pb.h"
#include "tern/tern.h"

namespace {

namespace pb = google::protobuf;

constexpr int kExitCallFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoBroker = 3;

constexpr const char* kUsage =
    "usage:\n"
    "  tern call SERVICE ENDPOINT ['<json>'] [--timeout 2s]   call an endpoint, print the reply as JSON\n"
    "  tern describe SERVICE [--timeout 2s]                   list a service's endpoints and types\n"
    "flags: --timeout DURATION (e.g. 500ms, 2s), --amqp-url URL (or TERN_AMQP_URL)\n"
    "exit status: 0 ok, 1 the call failed (CODE: message on stderr), 2 usage, 3 no broker\n";

struct Args {
  std::vector<std::string> positional;
  std::chrono::milliseconds timeout{2000};
  tern::Options options;
};

bool parse_duration(std::string_view s, std::chrono::milliseconds* out) {
  long long n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || n < 0) return false;
  std::string_view unit(end, s.data() + s.size() - end);
  if (unit == "ms") *out = std::chrono::milliseconds(n);
  else if (unit == "s" || unit.empty()) *out = std::chrono::seconds(n);
  else if (unit == "m") *out = std::chrono::minutes(n);
  else return false;
  return true;
}

int fail_usage(std::string_view why) {
  fmt::print(stderr, "tern: {}\n{}", why, kUsage);
  return kExitUsage;
}

int fail_call(const tern::Error& e) {
  fmt::print(stderr, "{}: {}\n", tern::code_name(e.code), e.message);
  return kExitCallFailed;
}

std::string to_json(const pb::Message& m) {
  std::string out;
  (void)pb::util::MessageToJsonString(m, &out);
  return out;
}

// Fetches the service's description, or an error.
tern::Result<tern::v1::DescribeResponse> describe(tern::Client& client, const std::string& service,
                                                  std::chrono::milliseconds timeout) {
  auto ctx = tern::Context::with_timeout(timeout);
  return client.call<tern::v1::DescribeResponse>(ctx, service, "_describe",
                                                 tern::v1::DescribeRequest{});
}

int cmd_describe(tern::Client& client, const Args& args) {
  if (args.positional.size() != 2) return fail_usage("describe takes SERVICE");
  auto d = describe(client, args.positional[1], args.timeout);
  if (!d.ok()) return fail_call(d.error());
  for (const auto& e : d->endpoints())
    fmt::print("{}  {} -> {}\n", e.name(), e.request_type(), e.response_type());
  return 0;
}

int cmd_call(tern::Client& client, const Args& args) {
  if (args.positional.size() < 3 || args.positional.size() > 4)
    return fail_usage("call takes SERVICE ENDPOINT ['<json>']");
  const std::string& service = args.positional[1];
  const std::string& endpoint = args.positional[2];
  const std::string json = args.positional.size() == 4 ? args.positional[3] : "{}";

  auto d = describe(client, service, args.timeout);
  if (!d.ok()) return fail_call(d.error());
  const tern::v1::DescribeResponse::Endpoint* ep = nullptr;
  for (const auto& e : d->endpoints())
    if (e.name() == endpoint) ep = &e;
  if (ep == nullptr)
    return fail_call(tern::Error{tern::Code::kUnimplemented,
                                 fmt::format("{} has no endpoint '{}'", service, endpoint)});

  pb::DescriptorPool pool;
  for (const auto& file : d->files().file()) {
    if (pool.BuildFile(file) == nullptr)
      return fail_call(tern::Error{tern::Code::kInternal,
                                   fmt::format("{} described an invalid file {}", service, file.name())});
  }
  const pb::Descriptor* in_type = pool.FindMessageTypeByName(ep->request_type());
  const pb::Descriptor* out_type = pool.FindMessageTypeByName(ep->response_type());
  if (in_type == nullptr || out_type == nullptr)
    return fail_call(tern::Error{tern::Code::kInternal, "the description lacks the endpoint's types"});
  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> req(factory.GetPrototype(in_type)->New());
  std::unique_ptr<pb::Message> resp(factory.GetPrototype(out_type)->New());
  auto status = pb::util::JsonStringToMessage(json, req.get());
  if (!status.ok())
    return fail_usage(fmt::format("the JSON is not a {}: {}", in_type->full_name(),
                                  std::string(status.message())));

  auto ctx = tern::Context::with_timeout(args.timeout);
  tern::CallOptions opts;
  opts.timeout = args.timeout;
  tern::Error err = client.run([&] {
    return tern::detail::call_message(ctx, service, endpoint, *req, resp.get(), opts);
  });
  if (err.code != tern::Code::kOk) return fail_call(err);
  fmt::print("{}\n", to_json(*resp));
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
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag) -> std::optional<std::string> {
      if (a == flag) {
        if (i + 1 < argc) return std::string(argv[++i]);
        return std::nullopt;
      }
      if (a.starts_with(flag) && a.size() > flag.size() && a[flag.size()] == '=')
        return std::string(a.substr(flag.size() + 1));
      return std::nullopt;
    };
    if (a == "--help" || a == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if (a.starts_with("--timeout")) {
      auto v = value("--timeout");
      if (!v || !parse_duration(*v, &args.timeout)) return fail_usage("bad --timeout");
    } else if (a.starts_with("--amqp-url")) {
      auto v = value("--amqp-url");
      if (!v) return fail_usage("--amqp-url needs a value");
      args.options.amqp_url = *v;
    } else if (a.starts_with("--") && a.size() > 2) {
      return fail_usage(fmt::format("unknown flag {}", a));
    } else {
      args.positional.emplace_back(a);
    }
  }
  if (args.positional.empty()) return fail_usage("no command");
  const std::string& cmd = args.positional[0];
  if (cmd != "call" && cmd != "describe") return fail_usage(fmt::format("unknown command '{}'", cmd));

  std::unique_ptr<tern::Client> client;
  try {
    client = std::make_unique<tern::Client>(args.options, "tern.cli");
  } catch (const std::exception& e) {
    fmt::print(stderr, "UNAVAILABLE: cannot reach the broker: {}\n", e.what());
    return kExitNoBroker;
  }
  return cmd == "call" ? cmd_call(*client, args) : cmd_describe(*client, args);
}
