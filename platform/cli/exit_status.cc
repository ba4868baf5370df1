#include "exit_status.h"

#include <fmt/format.h>

#include <cstdio>

#include "tern/json.h"

namespace tern::cli {

int exit_status(Code code, ExitStatus status) {
  if (status == ExitStatus::kGeneric) return kExitCallFailed;
  return kExitCodeBase + static_cast<int>(code);
}

std::string exit_status_table() {
  std::string out = fmt::format(
      "  {:<3} ok\n"
      "  {:<3} the call failed, CODE: message on stderr (--exit-status generic, the default)\n"
      "  {:<3} usage: bad arguments, a flag the command does not take, JSON that does not fit\n"
      "  {:<3} no broker: no node of --amqp-url answered\n"
      "  with --exit-status per-code a failed call exits {} + its code instead of 1:\n",
      kExitOk, kExitCallFailed, kExitUsage, kExitNoBroker, kExitCodeBase);
  for (int c = static_cast<int>(Code::kCancelled); c <= static_cast<int>(Code::kUnauthenticated);
       ++c)
    out += fmt::format("  {:<3} {}\n", exit_status(static_cast<Code>(c), ExitStatus::kPerCode),
                       code_name(static_cast<Code>(c)));
  return out;
}

std::string error_json(const Error& e) {
  std::string out = "{\"code\":";
  json::append_quoted(code_name(e.code), &out);
  out += ",\"message\":";
  json::append_quoted(e.message, &out);
  out += ",\"params\":{";
  bool first = true;
  for (const auto& [key, value] : e.params) {
    if (!first) out += ',';
    first = false;
    json::append_quoted(key, &out);
    out += ':';
    json::append_quoted(value, &out);
  }
  out += fmt::format("}},\"retryable\":{}}}", e.retryable ? "true" : "false");
  return out;
}

namespace {

void print(const Error& e, ErrorFormat format) {
  if (format == ErrorFormat::kJson)
    fmt::print(stderr, "{}\n", error_json(e));
  else
    fmt::print(stderr, "{}: {}\n", code_name(e.code), e.message);
}

}  // namespace

int fail_call(const Error& e, const Failure& how) {
  print(e, how.format);
  return exit_status(e.code, how.status);
}

int fail_usage(std::string_view why, const Failure& how) {
  if (how.format == ErrorFormat::kJson)
    print(Error{Code::kInvalidArgument, std::string(why)}, how.format);
  else
    fmt::print(stderr, "tern: {}\n", why);
  return kExitUsage;
}

int fail_no_broker(std::string_view why, const Failure& how) {
  print(Error{Code::kUnavailable, std::string(why)}, how.format);
  return kExitNoBroker;
}

}  // namespace tern::cli
