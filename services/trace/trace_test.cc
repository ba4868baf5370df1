#include <catch2/catch.hpp>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <tern/options.h>

#include "export.h"
#include "handlers.h"
#include "pages.h"
#include "store.h"
#include "tree.h"
#include "zipkin.h"

using namespace std::chrono_literals;

namespace {

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";

tern::v1::Span span(std::string id, std::string parent, int64_t start_us, int64_t duration_us,
                    tern::v1::Span::Kind kind = tern::v1::Span::SERVER,
                    tern::v1::Code code = tern::v1::OK, std::string trace_id = kTrace) {
  tern::v1::Span s;
  s.set_trace_id(std::move(trace_id));
  s.set_span_id(std::move(id));
  s.set_parent_span_id(std::move(parent));
  s.set_start_unix_us(start_us);
  s.set_duration_us(duration_us);
  s.set_kind(kind);
  s.set_code(code);
  s.set_service("service.x");
  s.set_name("op");
  s.set_attempt(1);
  return s;
}

// gateway HTTP -> CLIENT -> SERVER -> CLIENT -> SERVER, at 1 s past epoch.
std::vector<tern::v1::Span> chain() {
  return {span("a000000000000001", "", 1000000, 10000, tern::v1::Span::HTTP),
          span("a000000000000002", "a000000000000001", 1000500, 9000, tern::v1::Span::CLIENT),
          span("a000000000000003", "a000000000000002", 1001000, 8000, tern::v1::Span::SERVER),
          span("a000000000000004", "a000000000000003", 1002000, 5000, tern::v1::Span::CLIENT),
          span("a000000000000005", "a000000000000004", 1002500, 4000, tern::v1::Span::SERVER)};
}

tern::v1::SpanBatch batch_of(const std::vector<tern::v1::Span>& spans, uint64_t dropped = 0) {
  tern::v1::SpanBatch b;
  for (const auto& s : spans) *b.add_spans() = s;
  b.set_dropped(dropped);
  return b;
}

}  // namespace

TEST_CASE("the store keeps a batch and gives a trace back by start") {
  trace::Store store(":memory:");
  auto spans = chain();
  std::reverse(spans.begin(), spans.end());
  REQUIRE(store.add(batch_of(spans, 3)) == 5);
  auto got = store.get(kTrace);
  REQUIRE(got.size() == 5);
  CHECK(got.front().span_id() == "a000000000000001");
  CHECK(got.back().span_id() == "a000000000000005");
  CHECK(got.front().kind() == tern::v1::Span::HTTP);
  CHECK(store.get("ffffffffffffffffffffffffffffffff").empty());
  CHECK(store.dropped() == 3);
}

TEST_CASE("a redelivered batch adds nothing") {
  trace::Store store(":memory:");
  REQUIRE(store.add(batch_of(chain())) == 5);
  CHECK(store.add(batch_of(chain())) == 0);
  CHECK(store.span_count() == 5);
  auto recent = store.recent({});
  REQUIRE(recent.traces_size() == 1);
  CHECK(recent.traces(0).span_count() == 5);
}

TEST_CASE("recent summarizes traces and filters slow and failed ones") {
  trace::Store store(":memory:");
  store.add(batch_of(chain()));
  // A short failed trace, later: its spans arrive child first.
  const std::string failed = "00000000000000000000000000000002";
  store.add(batch_of({span("b000000000000002", "b000000000000001", 2000100, 500,
                           tern::v1::Span::CLIENT, tern::v1::NOT_FOUND, failed)}));
  store.add(batch_of({span("b000000000000001", "", 2000000, 1000, tern::v1::Span::HTTP,
                           tern::v1::NOT_FOUND, failed)}));

  auto all = store.recent({});
  REQUIRE(all.traces_size() == 2);
  CHECK(all.traces(0).trace_id() == failed);  // newest first
  CHECK(all.traces(0).error());
  CHECK(all.traces(0).root_name() == "op");
  CHECK(all.traces(0).duration_us() == 1000);
  CHECK(all.traces(1).trace_id() == kTrace);
  CHECK(all.traces(1).duration_us() == 10000);
  CHECK(all.traces(1).start_unix_us() == 1000000);
  CHECK_FALSE(all.traces(1).error());

  trace::RecentRequest req;
  req.set_slowest_first(true);
  CHECK(store.recent(req).traces(0).trace_id() == kTrace);
  req = {};
  req.set_errors_only(true);
  auto errors = store.recent(req);
  REQUIRE(errors.traces_size() == 1);
  CHECK(errors.traces(0).trace_id() == failed);
  req = {};
  req.set_min_duration_ms(5);
  auto slow = store.recent(req);
  REQUIRE(slow.traces_size() == 1);
  CHECK(slow.traces(0).trace_id() == kTrace);
  req = {};
  req.set_limit(1);
  CHECK(store.recent(req).traces_size() == 1);
}

TEST_CASE("retention deletes spans past their age and past the span limit") {
  trace::Store store(":memory:");
  store.add(batch_of(chain()));  // starts at 1 s
  const std::string later = "00000000000000000000000000000003";
  store.add(batch_of({span("c000000000000001", "", 100000000, 10, tern::v1::Span::HTTP,
                           tern::v1::OK, later),
                      span("c000000000000002", "c000000000000001", 100000001, 5,
                           tern::v1::Span::CLIENT, tern::v1::OK, later)}));
  // Now is 110 s: with a 60 s retention only the later trace stays.
  CHECK(store.prune({.max_age_s = 60, .max_spans = 100}, 110000000) == 5);
  CHECK(store.get(kTrace).empty());
  CHECK(store.span_count() == 2);
  REQUIRE(store.recent({}).traces_size() == 1);
  // A limit of one span: the oldest goes.
  CHECK(store.prune({.max_age_s = 3600, .max_spans = 1}, 110000000) == 1);
  auto left = store.get(later);
  REQUIRE(left.size() == 1);
  CHECK(left[0].span_id() == "c000000000000002");
  CHECK(store.prune({.max_age_s = 3600, .max_spans = 1}, 110000000) == 0);
}

TEST_CASE("the tree puts children under parents by start") {
  auto spans = chain();
  // A second child of the root that starts before the first, and an orphan.
  spans.push_back(span("a000000000000006", "a000000000000001", 1000100, 100, tern::v1::Span::PUBLISH));
  spans.push_back(span("a000000000000007", "ffffffffffffffff", 1003000, 100, tern::v1::Span::CONSUME));
  std::reverse(spans.begin(), spans.end());
  auto tree = trace::build_tree(spans);
  REQUIRE(tree.rows.size() == 7);
  CHECK(tree.start_unix_us == 1000000);
  CHECK(tree.duration_us == 10000);
  std::vector<std::pair<std::string, int>> order;
  for (const auto& r : tree.rows) order.emplace_back(r.span->span_id(), r.depth);
  CHECK(order == std::vector<std::pair<std::string, int>>{{"a000000000000001", 0},
                                                          {"a000000000000006", 1},
                                                          {"a000000000000002", 1},
                                                          {"a000000000000003", 2},
                                                          {"a000000000000004", 3},
                                                          {"a000000000000005", 4},
                                                          {"a000000000000007", 0}});
  CHECK(tree.rows[5].offset_us == 2500);
}

TEST_CASE("the tree survives a cycle of parents") {
  std::vector<tern::v1::Span> spans{span("d000000000000001", "d000000000000002", 10, 5),
                                    span("d000000000000002", "d000000000000001", 11, 5)};
  auto tree = trace::build_tree(spans);
  CHECK(tree.rows.size() == 2);
}

TEST_CASE("the text tree shows offsets and durations in ms and codes") {
  auto spans = chain();
  spans[4].set_code(tern::v1::UNAVAILABLE);
  spans[4].set_error("no such service");
  auto text = trace::render_text(kTrace, trace::build_tree(spans));
  CHECK(text.find("trace " + kTrace + "  10.000 ms  5 spans") != std::string::npos);
  CHECK(text.find("     2.500      4.000          SERVER op [service.x] UNAVAILABLE: no such service") !=
        std::string::npos);
  CHECK(text.find("     0.000     10.000  HTTP op [service.x] OK") != std::string::npos);
}

TEST_CASE("zipkin JSON maps kinds and ids and escapes strings") {
  auto spans = chain();
  spans[0].set_name("GET /a\"b\\c\n");
  spans[0].set_peer("127.0.0.1:5000");
  spans[1].set_peer("service.y");
  spans[1].set_code(tern::v1::DEADLINE_EXCEEDED);
  (*spans[1].mutable_tags())["request_id"] = "r1";
  std::string json = trace::to_zipkin_json({spans[0], spans[1]});
  CHECK(json.starts_with(R"([{"traceId":")" + kTrace + R"(","id":"a000000000000001","name":"GET /a\"b\\c\n","kind":"SERVER","timestamp":1000000,"duration":10000,"localEndpoint":{"serviceName":"service.x"},"tags":{)"));
  CHECK(json.find(R"("tern.peer":"127.0.0.1:5000")") != std::string::npos);
  CHECK(json.find(R"("parentId":"a000000000000001")") != std::string::npos);
  CHECK(json.find(R"("kind":"CLIENT")") != std::string::npos);
  CHECK(json.find(R"("remoteEndpoint":{"serviceName":"service.y"})") != std::string::npos);
  CHECK(json.find(R"("error":"DEADLINE_EXCEEDED")") != std::string::npos);
  CHECK(json.find(R"("tern.code":"DEADLINE_EXCEEDED")") != std::string::npos);
  CHECK(json.find(R"("request_id":"r1")") != std::string::npos);
  CHECK(json.ends_with("}}]"));
  // Control characters and bytes that are not UTF-8 (a span's name is
  // whatever its sender put there) still make valid JSON.
  auto odd = span("e000000000000003", "", 1, 0, tern::v1::Span::SERVER);
  odd.set_name(std::string("a\x01z\xff\xc3", 5));
  CHECK(trace::to_zipkin_json({odd}).find(R"("name":"a\u0001z\ufffd\ufffd")") != std::string::npos);
  auto p = span("e000000000000001", "", 1, 0, tern::v1::Span::PUBLISH);
  auto c = span("e000000000000002", "e000000000000001", 1, 0, tern::v1::Span::CONSUME);
  json = trace::to_zipkin_json({p, c});
  CHECK(json.find(R"("kind":"PRODUCER")") != std::string::npos);
  CHECK(json.find(R"("kind":"CONSUMER")") != std::string::npos);
  CHECK(json.find(R"("duration":1,)") != std::string::npos);
}

TEST_CASE("OTLP JSON groups spans by service with hex ids, nanosecond times, kinds and an error status") {
  auto spans = chain();
  spans[1].set_service("service.y");
  spans[1].set_kind(tern::v1::Span::CLIENT);
  spans[1].set_name("service.z/probe");
  spans[1].set_code(tern::v1::NOT_FOUND);
  spans[1].set_error("no such \"thing\"");
  google::protobuf::Struct doc;
  const std::string json = trace::to_otlp_json({spans[0], spans[1]});
  INFO(json);
  REQUIRE(google::protobuf::util::JsonStringToMessage(json, &doc).ok());   // well-formed JSON
  const auto& resources = doc.fields().at("resourceSpans").list_value();
  REQUIRE(resources.values_size() == 2);
  std::map<std::string, google::protobuf::Struct> by_service;
  for (const auto& r : resources.values()) {
    const auto& attr = r.struct_value().fields().at("resource").struct_value().fields().at("attributes").list_value().values(0).struct_value();
    CHECK(attr.fields().at("key").string_value() == "service.name");
    const auto& scope = r.struct_value().fields().at("scopeSpans").list_value().values(0).struct_value();
    REQUIRE(scope.fields().at("spans").list_value().values_size() == 1);
    by_service[attr.fields().at("value").struct_value().fields().at("stringValue").string_value()] =
        scope.fields().at("spans").list_value().values(0).struct_value();
  }
  REQUIRE(by_service.count("service.x") == 1);
  REQUIRE(by_service.count("service.y") == 1);
  const auto& server = by_service["service.x"].fields();
  CHECK(server.at("traceId").string_value() == kTrace);
  CHECK(server.at("spanId").string_value() == spans[0].span_id());
  CHECK(server.count("parentSpanId") == 0);
  CHECK(server.at("kind").number_value() == 2);   // SPAN_KIND_SERVER
  CHECK(server.at("startTimeUnixNano").string_value() == std::to_string(spans[0].start_unix_us() * 1000));
  CHECK(server.at("endTimeUnixNano").string_value() ==
        std::to_string((spans[0].start_unix_us() + spans[0].duration_us()) * 1000));
  CHECK(server.at("status").struct_value().fields().at("code").number_value() == 1);   // OK
  const auto& client = by_service["service.y"].fields();
  CHECK(client.at("kind").number_value() == 3);   // SPAN_KIND_CLIENT
  CHECK(client.at("parentSpanId").string_value() == spans[1].parent_span_id());
  CHECK(client.at("status").struct_value().fields().at("code").number_value() == 2);   // ERROR
  CHECK(client.at("status").struct_value().fields().at("message").string_value() == "no such \"thing\"");
  std::map<std::string, std::string> attrs;
  for (const auto& a : client.at("attributes").list_value().values())
    attrs[a.struct_value().fields().at("key").string_value()] =
        a.struct_value().fields().at("value").struct_value().fields().at("stringValue").string_value();
  CHECK(attrs.at("rpc.system") == "tern");
  CHECK(attrs.at("rpc.service") == "service.z");
  CHECK(attrs.at("rpc.method") == "probe");
  CHECK(attrs.at("tern.code") == "NOT_FOUND");
}

TEST_CASE("the export format follows the URL's path unless TERN_TRACE_EXPORT_FORMAT says") {
  CHECK(trace::export_format("http://127.0.0.1:4318/v1/traces", "") == trace::ExportFormat::kOtlp);
  CHECK(trace::export_format("http://127.0.0.1:9411/api/v2/spans", "") == trace::ExportFormat::kZipkin);
  CHECK(trace::export_format("http://127.0.0.1:9411/api/v2/spans", "otlp") == trace::ExportFormat::kOtlp);
  CHECK_THROWS_AS(trace::export_format("http://x/", "jaeger"), tern::ConfigError);
}

TEST_CASE("html is escaped in every page") {
  CHECK(trace::html_escape(R"(<a href="x">'&'</a>)") ==
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  auto spans = chain();
  spans[2].set_name("<script>alert(1)</script>");
  spans[2].set_error("\"><img src=x>");
  spans[2].set_code(tern::v1::INTERNAL);
  auto page = trace::render_waterfall(kTrace, spans);
  CHECK(page.find("<script>") == std::string::npos);
  CHECK(page.find("<img") == std::string::npos);
  CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  trace::RecentResponse r;
  auto* t = r.add_traces();
  t->set_trace_id("<b>");
  t->set_root_name("<i>");
  auto index = trace::render_index(r, r, r);
  CHECK(index.find("<b>") == std::string::npos);
  CHECK(index.find("<i>") == std::string::npos);
}

TEST_CASE("the waterfall has a row per span indented by depth with bars placed in time") {
  auto page = trace::render_waterfall(kTrace, chain());
  for (int i = 1; i <= 5; ++i)
    CHECK(page.find("id=\"span-a00000000000000" + std::to_string(i) + "\"") != std::string::npos);
  // The last span: depth 4, starts 25% in, lasts 40% of the trace.
  CHECK(page.find("padding-left:70px") != std::string::npos);
  CHECK(page.find("left:25.000%;width:40.000%") != std::string::npos);
  CHECK(page.find("left:0.000%;width:100.000%") != std::string::npos);
  CHECK(page.find("http://") == std::string::npos);  // no external assets
  CHECK(page.find("https://") == std::string::npos);
}

TEST_CASE("the collector answers get_trace and its pages") {
  trace::Store store(":memory:");
  trace::Collector collector(store);
  auto ctx = tern::Context::with_timeout(1s);
  trace::GetTraceRequest req;
  CHECK(collector.get_trace(ctx, req).error().code == tern::Code::kInvalidArgument);
  req.set_trace_id(kTrace);
  CHECK(collector.get_trace(ctx, req).error().code == tern::Code::kNotFound);
  CHECK(collector.on_batch(ctx, batch_of(chain())).ok());
  auto got = collector.get_trace(ctx, req);
  REQUIRE(got.ok());
  CHECK(got->spans_size() == 5);

  auto get = [&](std::string path, std::string query = "") {
    tern::http::Request r;
    r.method = "GET";
    r.path = std::move(path);
    r.query = std::move(query);
    return collector.http(ctx, r);
  };
  auto index = get("/");
  CHECK(index.status == 200);
  CHECK(index.body.find("href=\"/trace/" + kTrace + "\"") != std::string::npos);
  auto page = get("/trace/" + kTrace);
  CHECK(page.status == 200);
  CHECK(*page.header("Content-Type") == "text/html; charset=utf-8");
  CHECK(get("/trace/00").status == 404);
  auto zipkin = get("/api/v2/trace/" + kTrace);
  CHECK(zipkin.status == 200);
  CHECK(zipkin.body.starts_with("[{\"traceId\""));
  CHECK(get("/api/v2/trace/00").status == 404);
  auto traces = get("/api/v2/traces", "limit=5");
  CHECK(traces.status == 200);
  CHECK(traces.body.starts_with("[[{\"traceId\""));
  CHECK(get("/nope").status == 404);
  tern::http::Request post;
  post.method = "POST";
  post.path = "/";
  CHECK(collector.http(ctx, post).status == 405);
}
