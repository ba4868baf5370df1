#include "new_service.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string_view>
#include <system_error>
#include <utility>

extern char** environ;

namespace tern::cli {
namespace fs = std::filesystem;
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// The templates. @SERVICE@ is the service's name ("service.foo", "api.foo"),
// @DIR@ its folder and binary ("foo", "foo-api"), @PKG@ its proto package
// and C++ namespace ("foo", "foo_api"), @HANDLE@ the line registering ping,
// @ROUTE@ the README's note for an API service.

constexpr std::string_view kProto = R"(syntax = "proto3";

// @SERVICE@'s messages. Package names are unique across services/: the tern
// CLI links every service's messages.
package @PKG@;

message PingRequest {
  string message = 1;
}

message PingResponse {
  string message = 1;
}
)";

constexpr std::string_view kHandlersH =
    R"(// @SERVICE@'s logic: plain functions of a tern::Context and a request,
// which know nothing of the bus. main.cc registers them as endpoints;
// handlers_test.cc calls them directly, no broker needed.
#pragma once

#include <tern/tern.h>

#include "@PKG@.pb.h"

namespace @PKG@ {

// Answers with the request's message; INVALID_ARGUMENT if it is empty.
tern::Result<PingResponse> Ping(tern::Context& ctx, const PingRequest& req);

}  // namespace @PKG@
)";

constexpr std::string_view kHandlersCc = R"(#include "handlers.h"

namespace @PKG@ {

tern::Result<PingResponse> Ping(tern::Context&, const PingRequest& req) {
  if (req.message().empty())
    return tern::Error{tern::Code::kInvalidArgument, "message is required"};
  PingResponse rsp;
  rsp.set_message(req.message());
  return rsp;
}

}  // namespace @PKG@
)";

constexpr std::string_view kMainCc = R"(// @SERVICE@: the wiring. The logic is in handlers.cc.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"@SERVICE@"};
  @HANDLE@
  return svc.run(argc, argv);
}
)";

constexpr std::string_view kTestCc = R"(// @SERVICE@'s handlers, called directly: no broker.
#include <catch2/catch.hpp>

#include "handlers.h"

TEST_CASE("ping answers with the request's message") {
  auto ctx = tern::Context::with_timeout(std::chrono::seconds(1));
  @PKG@::PingRequest req;
  req.set_message("hello");
  auto rsp = @PKG@::Ping(ctx, req);
  REQUIRE(rsp.ok());
  CHECK(rsp->message() == "hello");
}

TEST_CASE("ping without a message is INVALID_ARGUMENT") {
  auto ctx = tern::Context::with_timeout(std::chrono::seconds(1));
  auto rsp = @PKG@::Ping(ctx, @PKG@::PingRequest{});
  REQUIRE_FALSE(rsp.ok());
  CHECK(rsp.error().code == tern::Code::kInvalidArgument);
}
)";

constexpr std::string_view kCMake =
    "tern_add_service(@DIR@ SOURCES main.cc handlers.cc PROTOS @PKG@.proto TESTS "
    "handlers_test.cc)\n";

constexpr std::string_view kReadme = R"(# @SERVICE@

Created by `tern new @SERVICE@`: `ping` answers with the message it is sent.@ROUTE@

| file | what |
|---|---|
| `@PKG@.proto` | the messages (package `@PKG@`) |
| `handlers.h`, `handlers.cc` | the logic: functions `Result<Resp>(tern::Context&, const Req&)` |
| `main.cc` | the wiring: the service's name and its endpoints |
| `handlers_test.cc` | the handlers' unit tests, no broker: `build/bin/@DIR@_test` |
| `CMakeLists.txt` | one `tern_add_service` line: builds `build/bin/@DIR@` |

```sh
cmake --build build -j2 && build/bin/@DIR@_test
scripts/up                                              # runs it with every service
build/bin/tern call @SERVICE@ ping '{"message":"hi"}'   # with scripts/up's TERN_AMQP_URL
```
)";

constexpr std::array kCppKeywords = {
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
    "case", "catch", "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept",
    "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "co_await",
    "co_return", "co_yield", "decltype", "default", "delete", "do", "double", "dynamic_cast",
    "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto", "if",
    "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq", "nullptr",
    "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
    "requires", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast",
    "struct", "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef",
    "typeid", "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t",
    "while", "xor", "xor_eq",
    // Namespaces a service's package must not reuse.
    "tern", "google", "std", "boost", "fmt"};

struct Names {
  std::string service;  // "service.foo" / "api.foo"
  std::string dir;      // "foo" / "foo-api"
  std::string pkg;      // "foo" / "foo_api"
  bool api = false;
};

std::string fill(std::string_view tmpl, const Names& n) {
  // An API service's endpoints are also HTTP routes, for the gateway.
  std::string handle = n.api ? "svc.post(\"/ping\", \"ping\", " + n.pkg + "::Ping);"
                             : "svc.handle(\"ping\", " + n.pkg + "::Ping);";
  std::string route =
      n.api ? "\nAn API service: main.cc also routes `POST /ping` to it, relative to where\n"
              "the gateway mounts the service, which learns its routes from `_describe`."
            : "";
  const std::pair<std::string_view, const std::string*> subs[] = {{"@SERVICE@", &n.service},
                                                                  {"@DIR@", &n.dir},
                                                                  {"@PKG@", &n.pkg},
                                                                  {"@HANDLE@", &handle},
                                                                  {"@ROUTE@", &route}};
  std::string out(tmpl);
  for (const auto& [token, value] : subs)
    for (size_t at = out.find(token); at != std::string::npos;
         at = out.find(token, at + value->size()))
      out.replace(at, token.size(), *value);
  return out;
}

// The proto file or package of another service that `pkg` would clash with,
// or "" if none.
std::string clash(const fs::path& services, const std::string& pkg) {
  const std::regex package_line("^\\s*package\\s+" + pkg + "\\s*;");
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(services, ec)) {
    if (!dir.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(dir.path(), ec)) {
      if (f.path().extension() != ".proto") continue;
      if (f.path().filename() == pkg + ".proto") return f.path().string();
      std::ifstream in(f.path());
      for (std::string line; std::getline(in, line);)
        if (std::regex_search(line, package_line)) return f.path().string();
    }
  }
  return "";
}

// Runs `script` (no shell) and returns its exit status, or -1 if it did not run.
int run_script(const fs::path& script) {
  std::string path = script.string();
  char* argv[] = {path.data(), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv, environ) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

int new_service(const std::string& what, const std::string& root_arg) {
  Names n;
  std::string name;
  if (what.starts_with("service.")) {
    name = what.substr(8);
    n = {what, name, name, false};
  } else if (what.starts_with("api.")) {
    name = what.substr(4);
    n = {what, name + "-api", name + "_api", true};
  } else {
    fmt::print(stderr, "tern new: '{}': say service.NAME or api.NAME\n", what);
    return kExitUsage;
  }
  static const std::regex kName("[a-z][a-z0-9_]*");
  if (!std::regex_match(name, kName)) {
    fmt::print(stderr, "tern new: bad name '{}': use [a-z][a-z0-9_]*, e.g. service.user_profile\n",
               name);
    return kExitUsage;
  }
  if (std::find(kCppKeywords.begin(), kCppKeywords.end(), n.pkg) != kCppKeywords.end()) {
    fmt::print(stderr,
               "tern new: '{}' cannot be a proto package and C++ namespace: pick another name\n",
               n.pkg);
    return kExitUsage;
  }

  // "" for the current directory, so that paths print as services/NAME.
  const fs::path root = root_arg == "." ? fs::path() : fs::path(root_arg);
  const fs::path services = root / "services";
  const fs::path dir = services / n.dir;
  std::error_code ec;
  if (!fs::is_directory(services, ec)) {
    fmt::print(stderr,
               "tern new: no services/ folder in {}: run it at the repository's root, or give "
               "--dir ROOT\n",
               (root.empty() ? fs::current_path(ec) : fs::absolute(root, ec)).string());
    return kExitFailed;
  }
  if (fs::exists(dir, ec)) {
    fmt::print(stderr, "tern new: {} exists already: nothing written\n", dir.string());
    return kExitFailed;
  }
  if (std::string other = clash(services, n.pkg); !other.empty()) {
    fmt::print(
        stderr,
        "tern new: {} already uses the proto name or package '{}', and the tern CLI links every "
        "service's messages: pick another name\n",
        other, n.pkg);
    return kExitFailed;
  }

  const std::pair<std::string, std::string_view> files[] = {
      {n.pkg + ".proto", kProto}, {"handlers.h", kHandlersH},    {"handlers.cc", kHandlersCc},
      {"main.cc", kMainCc},       {"handlers_test.cc", kTestCc}, {"CMakeLists.txt", kCMake},
      {"README.md", kReadme}};
  // Written aside, then renamed into place: no half-made service folder.
  const fs::path tmp = services / fmt::format(".{}.tern-new", n.dir);
  fs::remove_all(tmp, ec);
  bool ok = fs::create_directory(tmp, ec);
  for (const auto& [file, tmpl] : files) {
    if (!ok) break;
    std::ofstream out(tmp / file);
    out << fill(tmpl, n);
    ok = static_cast<bool>(out.flush());
  }
  if (ok) fs::rename(tmp, dir, ec);
  if (!ok || ec) {
    fs::remove_all(tmp, ec);
    fmt::print(stderr, "tern new: could not write {}\n", dir.string());
    return kExitFailed;
  }

  fmt::print("created {}/ ({}):\n", dir.string(), n.service);
  for (const auto& [file, tmpl] : files) fmt::print("  {}\n", file);
  const fs::path compose = root / "scripts" / "compose";
  if (fs::exists(compose, ec)) {
    std::fflush(stdout);  // before the script's own lines
    if (run_script(compose) != 0) {
      fmt::print(stderr,
                 "tern new: scripts/compose failed: docker-compose.yml does not list {} yet\n",
                 n.dir);
      return kExitFailed;
    }
  }
  const std::pair<std::string, std::string> next[] = {
      {"cmake --build build -j2",
       fmt::format("builds build/bin/{0} and build/bin/{0}_test", n.dir)},
      {fmt::format("build/bin/{}_test", n.dir), "its unit tests, no broker"},
      {"scripts/up", "runs it with every other service"},
      {fmt::format("build/bin/tern call {} ping '{{\"message\":\"hi\"}}'", n.service),
       "with the TERN_AMQP_URL scripts/up prints"}};
  fmt::print("next:\n");
  size_t width = 0;
  for (const auto& [command, what] : next) width = std::max(width, command.size());
  for (const auto& [command, what] : next) fmt::print("  {:<{}}  # {}\n", command, width, what);
  fmt::print("`docker compose up` runs it too: docker-compose.yml lists it.\n");
  return 0;
}

}  // namespace tern::cli
