#include <catch2/catch.hpp>

#include "observability/telemetry.h"
#include "tern/metrics.h"

using tern::metrics::Registry;

TEST_CASE("counters render with their labels and HELP and TYPE lines") {
  Registry r;
  r.counter("tern_requests_total", "Requests handled", {{"endpoint", "hello"}, {"code", "OK"}}).inc(3);
  r.counter("tern_requests_total", "ignored", {{"endpoint", "hello"}, {"code", "NOT_FOUND"}}).inc();
  CHECK(r.render() ==
        "# HELP tern_requests_total Requests handled\n"
        "# TYPE tern_requests_total counter\n"
        "tern_requests_total{endpoint=\"hello\",code=\"NOT_FOUND\"} 1\n"
        "tern_requests_total{endpoint=\"hello\",code=\"OK\"} 3\n");
}

TEST_CASE("the same name and labels give the same counter") {
  Registry r;
  auto& a = r.counter("c", "h", {{"x", "1"}});
  auto& b = r.counter("c", "h", {{"x", "1"}});
  CHECK(&a == &b);
  CHECK_THROWS_AS(r.gauge("c", "h"), std::logic_error);
}

TEST_CASE("histograms render cumulative buckets with sum and count") {
  Registry r;
  auto& h = r.histogram("lat_seconds", "Latency", {{"e", "x"}});
  h.observe_us(300);       // 0.0003 s: from le=0.0003
  h.observe_us(30000);     // 0.03 s: from le=0.05
  h.observe_us(20000000);  // 20 s: only +Inf
  std::string text = r.render();
  CHECK_THAT(text, Catch::Contains("# TYPE lat_seconds histogram\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"0.0002\"} 0\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"0.0003\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"0.0005\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"0.025\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"0.05\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"10\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{e=\"x\",le=\"+Inf\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_sum{e=\"x\"} 20.0303\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_count{e=\"x\"} 3\n"));
}

TEST_CASE("gauges hold a value or read a function and label values are escaped") {
  Registry r;
  r.gauge("in_flight", "Now").set(7);
  r.gauge_fn("queue", "Read", {{"q", "a\"b\\c\nd"}}, [] { return 2.5; });
  std::string text = r.render();
  CHECK_THAT(text, Catch::Contains("in_flight 7\n"));
  CHECK_THAT(text, Catch::Contains("queue{q=\"a\\\"b\\\\c\\nd\"} 2.5\n"));
}

TEST_CASE("label sets from outside stay bounded: past the cap they share one overflow series") {
  Registry r;
  for (int i = 0; i < 3000; ++i) r.counter("tern_client_calls_total", "calls", {{"service", "s" + std::to_string(i)}}).inc();
  const std::string text = r.render();
  size_t series = 0;
  for (size_t at = 0; (at = text.find("\ntern_client_calls_total{", at)) != std::string::npos; ++at) ++series;
  CHECK(series == Registry::kMaxSeries + 1);
  CHECK(text.find("tern_client_calls_total{overflow=\"true\"} 2000") != std::string::npos);
  CHECK(text.find("service=\"s0\"") != std::string::npos);   // the first ones are kept as they were
}

TEST_CASE("sub-millisecond latencies fall in buckets a tenth of a millisecond apart") {
  Registry r;
  auto& h = r.histogram("lat_seconds", "Latency");
  h.observe_us(90);    // a fast local call
  h.observe_us(350);   // tern's p50 on one host
  h.observe_us(700);
  const std::string text = r.render();
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{le=\"0.0001\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{le=\"0.0003\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{le=\"0.0005\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("lat_seconds_bucket{le=\"0.00075\"} 3\n"));
}

TEST_CASE("a counter read when rendered renders as a counter") {
  Registry r;
  double cpu = 1.5;
  r.counter_fn("cpu_seconds_total", "CPU", {}, [&cpu] { return cpu; });
  CHECK_THAT(r.render(), Catch::Contains("# TYPE cpu_seconds_total counter\ncpu_seconds_total 1.5\n"));
  cpu = 2.25;
  CHECK_THAT(r.render(), Catch::Contains("cpu_seconds_total 2.25\n"));
}

TEST_CASE("the platform's metric helpers give each label set its own series, whatever was asked last") {
  // They answer a repeat of the last labels from a per-thread memo: a
  // change of endpoint or code must reach another series, and coming back
  // must reach the first one again.
  using tern::detail::metric::server_requests;
  auto& ok_a = server_requests("test.memo", "a", tern::Code::kOk);
  auto& ok_b = server_requests("test.memo", "b", tern::Code::kOk);
  auto& nf_b = server_requests("test.memo", "b", tern::Code::kNotFound);
  CHECK(&ok_a != &ok_b);
  CHECK(&ok_b != &nf_b);
  CHECK(&server_requests("test.memo", "a", tern::Code::kOk) == &ok_a);
  CHECK(&server_requests("test.memo", "a", tern::Code::kOk) == &ok_a);
  CHECK(&server_requests("test.memo", "b", tern::Code::kNotFound) == &nf_b);
  CHECK(&server_requests("test.memo", "b", tern::Code::kOk) == &ok_b);
  // The registry agrees: three series under the service's name.
  const std::string text = tern::metrics::registry().render();
  size_t series = 0;
  for (size_t at = 0; (at = text.find("tern_server_requests_total{service=\"test.memo\"", at)) != std::string::npos; ++at)
    ++series;
  CHECK(series == 3);
}
