// Spans and metrics, recorded by real services over a real broker.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/testing.h"
#include "tern/trace.pb.h"
#include "tern/http.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;
using tern::v1::Span;

namespace {

// Collects every span this process records, through the test sink.
struct Spans {
  Spans() {
    tern::testing::set_span_sink([this](const Span& s) {
      std::lock_guard<std::mutex> lock(mu);
      all.push_back(s);
    });
  }
  ~Spans() { tern::testing::set_span_sink(nullptr); }
  std::vector<Span> of_trace(const std::string& trace_id) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<Span> out;
    for (const auto& s : all)
      if (s.trace_id() == trace_id) out.push_back(s);
    return out;
  }
  // Waits (bounded) until the trace has n spans: a server span is recorded
  // just after its reply leaves.
  std::vector<Span> await(const std::string& trace_id, size_t n) {
    auto give_up = std::chrono::steady_clock::now() + 10s;
    while (of_trace(trace_id).size() < n && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(5ms);
    return of_trace(trace_id);
  }
  std::mutex mu;
  std::vector<Span> all;
};

// Forwards to the next service on the route, like rpc_test's probe.
struct ChainService {
  explicit ChainService(std::string name) : svc(name) {
    svc.handle("probe", [](tern::Context& ctx, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
      ProbeResponse out;
      if (req.route_size() == 0) return out;
      ProbeRequest next = req;
      next.mutable_route()->erase(next.mutable_route()->begin());
      return tern::call<ProbeResponse>(ctx, req.route(0), "probe", next);
    });
    svc.start(broker_options());
  }
  tern::Service svc;
};

const Span* find(const std::vector<Span>& spans, Span::Kind kind, const std::string& service) {
  for (const auto& s : spans)
    if (s.kind() == kind && s.service() == service) return &s;
  return nullptr;
}

// probe answers OK, or NOT_FOUND when asked to fail.
void handle_failable_probe(tern::Service& svc) {
  svc.handle("probe", [](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    if (req.fail()) return tern::Error{tern::Code::kNotFound, "asked to fail"};
    return ProbeResponse{};
  });
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

TEST_CASE("a call through three services is one trace of parent-linked spans nested in time") {
  Spans spans;
  const std::string a = unique_service("trace-a"), b = unique_service("trace-b"), c = unique_service("trace-c");
  ChainService sa(a), sb(b), sc(c);
  tern::Client client(broker_options(), "trace-client");
  auto ctx = tern::Context::with_timeout(5s);
  ProbeRequest req;
  req.add_route(b);
  req.add_route(c);
  REQUIRE(client.call<ProbeResponse>(ctx, a, "probe", req).ok());

  // client -> a, a -> b, b -> c: three client spans and three server spans.
  auto trace = spans.await(ctx.trace_id(), 6);
  REQUIRE(trace.size() == 6);
  const Span* call_a = find(trace, Span::CLIENT, "trace-client");
  const Span* serve_a = find(trace, Span::SERVER, a);
  const Span* call_b = find(trace, Span::CLIENT, a);
  const Span* serve_b = find(trace, Span::SERVER, b);
  const Span* call_c = find(trace, Span::CLIENT, b);
  const Span* serve_c = find(trace, Span::SERVER, c);
  REQUIRE(call_a);
  REQUIRE(serve_a);
  REQUIRE(call_b);
  REQUIRE(serve_b);
  REQUIRE(call_c);
  REQUIRE(serve_c);
  // Parent links, from the caller's own span down.
  CHECK(call_a->parent_span_id() == ctx.span_id());
  CHECK(serve_a->parent_span_id() == call_a->span_id());
  CHECK(call_b->parent_span_id() == serve_a->span_id());
  CHECK(serve_b->parent_span_id() == call_b->span_id());
  CHECK(call_c->parent_span_id() == serve_b->span_id());
  CHECK(serve_c->parent_span_id() == call_c->span_id());
  // Each child lies within its parent in time (same clock: one process).
  const std::vector<std::pair<const Span*, const Span*>> links = {
      {call_a, serve_a}, {serve_a, call_b}, {call_b, serve_b}, {serve_b, call_c}, {call_c, serve_c}};
  for (auto [parent, child] : links) {
    INFO(parent->name() << " > " << child->name());
    CHECK(child->start_unix_us() >= parent->start_unix_us());
    CHECK(child->start_unix_us() + child->duration_us() <= parent->start_unix_us() + parent->duration_us());
  }
  for (const auto& s : trace) {
    CHECK(s.code() == tern::v1::OK);
    CHECK(s.duration_us() > 0);
  }
  CHECK(call_b->name() == b + "/probe");
  CHECK(serve_b->name() == "probe");
  CHECK(serve_b->peer() == a);
}

TEST_CASE("a failed call's spans carry its code and each attempt is a span") {
  Spans spans;
  tern::Client client(broker_options(), "trace-client");
  auto ctx = tern::Context::with_timeout(3s);
  const std::string nobody = unique_service("nobody");
  auto r = client.call<ProbeResponse>(ctx, nobody, "probe", ProbeRequest{}, {.max_attempts = 2});
  REQUIRE(r.code() == tern::Code::kUnavailable);
  auto trace = spans.await(ctx.trace_id(), 2);
  REQUIRE(trace.size() == 2);
  CHECK(trace[0].attempt() == 1);
  CHECK(trace[1].attempt() == 2);
  for (const auto& s : trace) {
    CHECK(s.kind() == Span::CLIENT);
    CHECK(s.code() == tern::v1::UNAVAILABLE);
    CHECK_FALSE(s.error().empty());
  }
}

TEST_CASE("an event's publish and consume spans are in the publisher's trace") {
  Spans spans;
  const std::string name = unique_service("trace-events");
  tern::Service svc(name);
  svc.subscribe<probe::Hop>("probe.hop", [](tern::Context&, const probe::Hop&) { return tern::ok(); });
  svc.start(broker_options());
  tern::Client client(broker_options(), "trace-publisher");
  auto ctx = tern::Context::with_timeout(5s);
  probe::Hop hop;
  hop.set_service("x");
  REQUIRE(client.run([&] { return tern::publish(ctx, hop); }).ok());
  auto trace = spans.await(ctx.trace_id(), 2);
  svc.stop();
  const Span* pub = find(trace, Span::PUBLISH, "trace-publisher");
  const Span* con = find(trace, Span::CONSUME, name);
  REQUIRE(pub);
  REQUIRE(con);
  CHECK(pub->parent_span_id() == ctx.span_id());
  CHECK(con->parent_span_id() == pub->span_id());
  CHECK(con->name() == "probe.Hop");
  CHECK(con->peer() == "trace-publisher");
}

TEST_CASE("the metrics endpoint is Prometheus text whose counters match the calls made") {
  const std::string name = unique_service("metrics");
  tern::Service svc(name);
  handle_failable_probe(svc);
  tern::Options o = broker_options();
  o.metrics_port = free_port();
  svc.start(o);
  REQUIRE(svc.metrics_port() == o.metrics_port);
  tern::Client client(broker_options(), "metrics-client");
  ProbeRequest fail;
  fail.set_fail(true);
  for (int i = 0; i < 3; ++i) REQUIRE(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
  for (int i = 0; i < 2; ++i)
    REQUIRE(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", fail).code() == tern::Code::kNotFound);
  auto r = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s),
                             "http://127.0.0.1:" + std::to_string(svc.metrics_port()) + "/metrics", {});
  });
  svc.stop();
  REQUIRE(r.ok());
  REQUIRE(r->status == 200);
  // Every line is a comment or `name{labels} value`.
  const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+|NaN|[+-]Inf$)");
  std::map<std::string, double> values;
  std::istringstream lines(r->body);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    INFO(line);
    CHECK(std::regex_match(line, sample));
    size_t space = line.rfind(' ');
    values[line.substr(0, space)] = std::stod(line.substr(space + 1));
    ++samples;
  }
  CHECK(samples > 10);
  const std::string labels = "service=\"" + name + "\",endpoint=\"probe\"";
  CHECK(values["tern_server_requests_total{" + labels + ",code=\"OK\"}"] == 3);
  CHECK(values["tern_server_requests_total{" + labels + ",code=\"NOT_FOUND\"}"] == 2);
  CHECK(values["tern_server_request_duration_seconds_count{" + labels + "}"] == 5);
  CHECK(values["tern_client_calls_total{service=\"metrics-client\",downstream=\"" + name + "\",code=\"OK\"}"] == 3);
  CHECK(values["tern_client_calls_total{service=\"metrics-client\",downstream=\"" + name + "\",code=\"NOT_FOUND\"}"] == 2);
}

namespace {
// The value of `name` among `lines` of Prometheus text, or -1.
double metric_value(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}
}  // namespace

TEST_CASE("an HTTP request with a W3C traceparent continues that trace through calls and fetch, and the response names its span") {
  Spans spans;
  const std::string b = unique_service("tp-b");
  ChainService sb(b);
  // A receiver, as a webhook endpoint would be: it keeps the traceparent it got.
  std::mutex mu;
  std::string received;
  tern::Service receiver(unique_service("tp-receiver"));
  tern::http::ServerOptions rh;
  rh.port = 0;
  receiver.serve_http(rh, [&](tern::Context&, tern::http::Request& req) {
    std::lock_guard<std::mutex> lock(mu);
    const std::string* tp = req.header("traceparent");
    received = tp != nullptr ? *tp : "(none)";
    return tern::http::Response::json(200, "{}");
  });
  receiver.start(broker_options());
  // The service under test: GET /hop/{id} calls b and fetches the receiver.
  const std::string a = unique_service("tp-a");
  tern::Service svc(a);
  tern::http::ServerOptions ah;
  ah.port = 0;
  const std::string receiver_url = "http://127.0.0.1:" + std::to_string(receiver.http_port()) + "/seen";
  svc.serve_http(ah, [&](tern::Context& ctx, tern::http::Request&) {
    if (!tern::call<ProbeResponse>(ctx, b, "probe", ProbeRequest{}).ok())
      return tern::http::Response::json(500, "{}");
    auto seen = tern::http::fetch(ctx, receiver_url, {});
    tern::http::Response r = tern::http::Response::json(seen.ok() ? 200 : 502, "{}");
    r.route = "/hop/{id}";
    return r;
  });
  tern::Options o = broker_options();
  o.metrics_port = free_port();
  svc.start(o);
  const std::string base = "http://127.0.0.1:" + std::to_string(svc.http_port());

  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", parent = "00f067aa0ba902b7";
  tern::Client client(broker_options(), "tp-client");
  auto get = [&](const std::string& path, std::vector<tern::http::Header> headers) {
    return client.run([&] {
      tern::http::Request req;
      req.headers = std::move(headers);
      return tern::http::fetch(tern::Context::with_timeout(5s), base + path, std::move(req));
    });
  };
  auto r = get("/hop/1", {{"traceparent", "00-" + trace_id + "-" + parent + "-01"}, {"tracestate", "congo=t61rcWkgMzE"}});
  REQUIRE(r.ok());
  REQUIRE(r->status == 200);

  // The HTTP span continues the caller's trace, under the caller's span.
  auto trace = spans.await(trace_id, 3);
  const Span* http = find(trace, Span::HTTP, a);
  const Span* call_b = find(trace, Span::CLIENT, a);
  const Span* serve_b = find(trace, Span::SERVER, b);
  REQUIRE(http);
  REQUIRE(call_b);
  REQUIRE(serve_b);
  CHECK(http->parent_span_id() == parent);
  CHECK(call_b->parent_span_id() == http->span_id());
  CHECK(serve_b->parent_span_id() == call_b->span_id());
  // Named by its route template, with the conventional tags.
  CHECK(http->name() == "GET /hop/{id}");
  CHECK(http->tags().at("http.route") == "/hop/{id}");
  CHECK(http->tags().at("http.path") == "/hop/1");
  CHECK(http->tags().at("http.method") == "GET");
  CHECK(http->tags().at("http.status_code") == "200");
  // The response names the span that answered; fetch passed the trace on
  // with the handler's span as the receiver's parent.
  const std::string* answered = r->header("traceparent");
  REQUIRE(answered != nullptr);
  CHECK(*answered == "00-" + trace_id + "-" + http->span_id() + "-01");
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(received == "00-" + trace_id + "-" + http->span_id() + "-01");
  }

  // A malformed traceparent is ignored: a trace of its own starts.
  auto fresh = get("/hop/2", {{"traceparent", "00-" + trace_id + "-" + parent + "-01-extra"}});
  REQUIRE(fresh.ok());
  const std::string* fresh_tp = fresh->header("traceparent");
  REQUIRE(fresh_tp != nullptr);
  CHECK(fresh_tp->size() == 55);
  CHECK(fresh_tp->substr(3, 32) != trace_id);

  // The HTTP metrics count requests by route template, not by raw path.
  auto m = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s),
                             "http://127.0.0.1:" + std::to_string(svc.metrics_port()) + "/metrics", {});
  });
  svc.stop();
  receiver.stop();
  REQUIRE(m.ok());
  CHECK(metric_value(m->body, "tern_http_requests_total{service=\"" + a +
                                  "\",route=\"/hop/{id}\",method=\"GET\",status=\"200\"}") == 2);
  CHECK(metric_value(m->body, "tern_http_request_duration_seconds_count{service=\"" + a +
                                  "\",route=\"/hop/{id}\"}") == 2);
  CHECK(m->body.find("/hop/1") == std::string::npos);
}

TEST_CASE("head sampling keeps whole traces by trace id, and failed calls whatever the rate") {
  Spans spans;
  const std::string name = unique_service("sampled");
  tern::Service svc(name);
  handle_failable_probe(svc);
  tern::Options o = broker_options();
  o.trace_sample = "0.5";
  svc.start(o);
  tern::Client client(o, "sampled-client");
  std::vector<std::string> traces;
  for (int i = 0; i < 200; ++i) {
    auto ctx = tern::Context::with_timeout(5s);
    REQUIRE(client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).ok());
    traces.push_back(ctx.trace_id());
  }
  ProbeRequest fail;
  fail.set_fail(true);
  auto failed = tern::Context::with_timeout(5s);
  // A trace the rate drops (its last 8 hex digits at or past 0x80000000).
  while (std::stoul(failed.trace_id().substr(24), nullptr, 16) < 0x80000000u) failed = tern::Context::with_timeout(5s);
  REQUIRE(client.call<ProbeResponse>(failed, name, "probe", fail).code() == tern::Code::kNotFound);
  // The failed call's two spans are kept, though its trace is not sampled.
  REQUIRE(spans.await(failed.trace_id(), 2).size() == 2);
  size_t kept = 0;
  for (const auto& id : traces) {
    // By the trace id, the same choice in caller and service: both spans or
    // none. A server span lands just after its reply: await the kept ones.
    const bool in_sample = std::stoul(id.substr(24), nullptr, 16) < 0x80000000u;
    const size_t n = in_sample ? spans.await(id, 2).size() : spans.of_trace(id).size();
    INFO(id << ": " << n << " spans");
    CHECK(n == (in_sample ? 2u : 0u));
    kept += n == 2;
  }
  svc.stop();
  // 200 random trace ids at one half: far from none and far from all.
  CHECK(kept > 50);
  CHECK(kept < 150);
}
