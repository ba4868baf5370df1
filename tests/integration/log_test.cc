// Log lines written inside a handler carry that request's trace and request
// ids: a service in this process, a real broker, this process's stderr.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <boost/fiber/all.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/metrics.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

namespace {

// What this process writes to stderr (fd 2) while it lives, and in JSON.
class CapturedStderr {
 public:
  CapturedStderr() : format_(tern::log::format()) {
    REQUIRE(pipe(fds_) == 0);
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    REQUIRE(saved_ >= 0);
    REQUIRE(dup2(fds_[1], STDERR_FILENO) == STDERR_FILENO);
    close(fds_[1]);
    reader_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fds_[0], buf, sizeof buf)) > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        text_.append(buf, static_cast<size_t>(n));
      }
    });
    tern::log::set_format(tern::log::Format::kJson);
  }
  ~CapturedStderr() {
    tern::log::set_format(format_);
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);  // closes the pipe's last write end: the reader ends
    close(saved_);
    reader_.join();
    close(fds_[0]);
  }

  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }
  // The first whole line containing `needle`, or "".
  std::string line_with(const std::string& needle) {
    std::istringstream lines(text());
    for (std::string line; std::getline(lines, line);)
      if (line.find(needle) != std::string::npos) return line;
    return "";
  }

 private:
  tern::log::Format format_;
  int fds_[2] = {-1, -1};
  int saved_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::string text_;
};

google::protobuf::Struct parse_json(const std::string& line) {
  google::protobuf::Struct s;
  INFO(line);
  REQUIRE(google::protobuf::util::JsonStringToMessage(line, &s).ok());
  return s;
}

std::string string_field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "<absent>" : it->second.string_value();
}

}  // namespace

TEST_CASE("log lines carry the trace id of the request that caused them and the span they were logged in") {
  const std::string name = unique_service("logs");
  const std::string marker = "log-test-" + tern::new_span_id();
  std::string captured;
  std::string handler_line, serving_line, client_line;
  tern::Result<ProbeResponse> r = tern::Error{tern::Code::kUnknown, "not called"};
  std::string trace_id, client_span, handler_span;
  {
    CapturedStderr err;
    tern::Service svc(name);
    svc.handle("probe", [&handler_span](tern::Context& ctx, const ProbeRequest& req) {
      handler_span = ctx.span_id();
      tern::log::info("handling \"{}\"", req.payload());
      ProbeResponse out;
      out.set_payload(ctx.request_id());
      return tern::Result<ProbeResponse>(out);
    });
    svc.start(broker_options());
    tern::Client client(broker_options());
    auto ctx = tern::Context::with_timeout(5s);
    trace_id = ctx.trace_id();
    client_span = ctx.span_id();
    ProbeRequest req;
    req.set_payload(marker);
    r = client.call<ProbeResponse>(ctx, name, "probe", req);
    tern::log::info("{} answered outside any handler", marker);
    svc.stop();
    handler_line = err.line_with("handling \\\"" + marker + "\\\"");
    serving_line = err.line_with(name + " serving: ");
    client_line = err.line_with(marker + " answered");
    captured = err.text();
  }
  INFO("stderr:\n" << captured);
  REQUIRE(r.ok());
  REQUIRE(!r->payload().empty());

  REQUIRE(!handler_line.empty());
  auto line = parse_json(handler_line);
  CHECK(string_field(line, "trace_id") == trace_id);
  // The handler's own span, the server span the call made: not the caller's.
  CHECK(string_field(line, "span_id") == handler_span);
  CHECK(handler_span.size() == 16);
  CHECK(handler_span != client_span);
  CHECK(string_field(line, "request_id") == r->payload());
  CHECK(string_field(line, "level") == "info");
  CHECK(string_field(line, "msg") == "handling \"" + marker + "\"");
  CHECK(string_field(line, "service") != "<absent>");
  CHECK(string_field(line, "time").ends_with("Z"));

  // Lines from no request's fiber carry no trace.
  REQUIRE(!serving_line.empty());
  CHECK(parse_json(serving_line).fields().count("trace_id") == 0);
  CHECK(parse_json(serving_line).fields().count("span_id") == 0);
  REQUIRE(!client_line.empty());
  CHECK(parse_json(client_line).fields().count("trace_id") == 0);
}

TEST_CASE("a handler that blocks its loop thread is reported with its endpoint and trace, one that parks its fiber is not") {
  const std::string name = unique_service("watchdog");
  CapturedStderr err;
  tern::Service svc(name);
  svc.handle("park", [](tern::Context&, const ProbeRequest&) {
    boost::this_fiber::sleep_for(400ms);   // the thread runs other fibers meanwhile
    return tern::Result<ProbeResponse>(ProbeResponse{});
  });
  svc.handle("block", [](tern::Context&, const ProbeRequest&) {
    std::this_thread::sleep_for(400ms);    // the mistake: the whole thread waits
    return tern::Result<ProbeResponse>(ProbeResponse{});
  });
  tern::Options o = broker_options();
  o.threads = 1;
  o.watchdog_ms = 100;
  svc.start(o);
  tern::Client client(broker_options());
  const std::string series = "tern_loop_stalls_total{service=\"" + name + "\"} ";
  auto stalls = [&] {
    const std::string text = tern::metrics::registry().render();
    const size_t at = text.find(series);
    return at == std::string::npos ? -1 : std::stoi(text.substr(at + series.size()));
  };

  auto park = tern::Context::with_timeout(5s);
  REQUIRE(client.call<ProbeResponse>(park, name, "park", ProbeRequest{}).ok());
  CHECK(stalls() == 0);
  CHECK(err.line_with("has not switched fibers").empty());

  auto block = tern::Context::with_timeout(5s);
  REQUIRE(client.call<ProbeResponse>(block, name, "block", ProbeRequest{}).ok());
  std::string reported, released;
  for (auto give_up = std::chrono::steady_clock::now() + 5s;
       (reported.empty() || released.empty()) && std::chrono::steady_clock::now() < give_up;) {
    std::this_thread::sleep_for(10ms);
    reported = err.line_with("has not switched fibers");
    released = err.line_with("runs again after");
  }
  svc.stop();
  INFO(err.text());
  REQUIRE(!reported.empty());
  const std::string msg = string_field(parse_json(reported), "msg");
  CHECK(msg.find(name + ": loop thread 0 has not switched fibers for ") != std::string::npos);
  CHECK(msg.find("endpoint block blocks it, trace " + block.trace_id()) != std::string::npos);
  CHECK(string_field(parse_json(reported), "level") == "warn");
  CHECK(!released.empty());
  CHECK(stalls() == 1);
}
