// The log lines' two forms (log_line.h), without capturing stderr.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <catch2/catch.hpp>
#include <regex>
#include <string>

#include "observability/log_line.h"
#include "tern/context.h"

using tern::log::Level;
using tern::log::detail::Line;

namespace {

// 1970-01-01T00:00:01.234Z
const auto kTime = std::chrono::system_clock::time_point(std::chrono::milliseconds(1234));

Line line(std::string_view message) {
  Line l;
  l.time = kTime;
  l.level = Level::kWarn;
  l.service = "service.greeter";
  l.message = message;
  return l;
}

std::string json(const Line& l) {
  std::string out;
  tern::log::detail::append_json(l, &out);
  return out;
}

// Parses one JSON line (a real JSON parser: protobuf's, into a Struct).
google::protobuf::Struct parse(const std::string& text) {
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  REQUIRE(text.find('\n') == text.size() - 1);
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(text.substr(0, text.size() - 1), &s);
  INFO(text);
  REQUIRE(status.ok());
  return s;
}

std::string field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  REQUIRE(it != s.fields().end());
  return it->second.string_value();
}

}  // namespace

TEST_CASE(
    "a JSON log line has time and level and service and msg and nothing else without a context") {
  const std::string text = json(line("hello"));
  CHECK(
      text ==
      R"({"time":"1970-01-01T00:00:01.234Z","level":"warn","service":"service.greeter","msg":"hello"})"
      "\n");
  auto s = parse(text);
  CHECK(s.fields().size() == 4);
  CHECK(s.fields().count("trace_id") == 0);
  CHECK(s.fields().count("span_id") == 0);
  CHECK(s.fields().count("request_id") == 0);
}

TEST_CASE("a JSON log line carries the trace, span and request ids when there are some") {
  Line l = line("m");
  l.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  l.span_id = "00f067aa0ba902b7";
  l.request_id = "req-1";
  auto s = parse(json(l));
  CHECK(field(s, "trace_id") == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(field(s, "span_id") == "00f067aa0ba902b7");
  CHECK(field(s, "request_id") == "req-1");
  CHECK(field(s, "msg") == "m");
}

TEST_CASE("every level has its lowercase name in JSON") {
  for (auto [level, name] : {std::pair{Level::kDebug, "debug"}, std::pair{Level::kInfo, "info"},
                             std::pair{Level::kWarn, "warn"}, std::pair{Level::kError, "error"}}) {
    Line l = line("x");
    l.level = level;
    CHECK(field(parse(json(l)), "level") == name);
  }
}

TEST_CASE("JSON log lines escape quotes and backslashes and control characters") {
  const std::string message = "say \"hi\" C:\\dir\nnext\tline\r\x01\x1f\x7f end";
  const std::string text = json(line(message));
  CHECK(text.find(R"("msg":"say \"hi\" C:\\dir\nnext\tline\r\u0001\u001f\u007f end")") !=
        std::string::npos);
  CHECK(field(parse(text), "msg") == message);
}

TEST_CASE("JSON log lines keep valid UTF-8 and replace bytes that are not") {
  CHECK(field(parse(json(line("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa6"))), "msg") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa6");
  // A lone continuation byte, a truncated sequence, an overlong '/', a
  // surrogate, a code point past U+10FFFF, and 0xff.
  const std::string bad = std::string("a\x80") + "b\xe2\x82" + "c\xc0\xaf" + "d\xed\xa0\x80" +
                          "e\xf4\x90\x80\x80" + "f\xff";
  const std::string text = json(line(bad));
  CHECK(
      text.find(
          R"("msg":"a\ufffdb\ufffd\ufffdc\ufffd\ufffdd\ufffd\ufffd\ufffde\ufffd\ufffd\ufffd\ufffdf\ufffd")") !=
      std::string::npos);
  parse(text);
  // Cut off at the end of the message.
  parse(json(line("\xf0\x9f\x90")));
  // Bytes that escape the service name too.
  Line l = line("m");
  l.service = "svc\"\\\x02";
  CHECK(field(parse(json(l)), "service") == "svc\"\\\x02");
}

TEST_CASE("a text log line is time then level then service then message then a short trace") {
  Line l = line("hello there");
  std::string out;
  size_t begin = 0, end = 0;
  tern::log::detail::append_text(l, &out, &begin, &end);
  CHECK(std::regex_match(
      out, std::regex(R"(\d\d:\d\d:\d\d\.234 WARN  service\.greeter: hello there\n)")));
  CHECK(out.substr(begin, end - begin) == "WARN");
  l.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  out.clear();
  tern::log::detail::append_text(l, &out);
  CHECK(out.ends_with(" service.greeter: hello there [trace=4bf92f35]\n"));
  l.span_id = "00f067aa0ba902b7";
  out.clear();
  tern::log::detail::append_text(l, &out);
  CHECK(out.ends_with(" service.greeter: hello there [trace=4bf92f35 span=00f067aa]\n"));
}

TEST_CASE("a log line's request id is the request's else the gateway's metadata") {
  auto ctx = tern::Context::from_wire(tern::to_unix_ms(tern::Context::Clock::now()) + 1000,
                                      "trace-1", "span", "", "req-1", "caller",
                                      {{"request_id", "edge-1"}});
  Line l = line("m");
  tern::log::detail::add_context(ctx, &l);
  CHECK(l.trace_id == "trace-1");
  CHECK(l.span_id == ctx.span_id());
  CHECK(l.request_id == "req-1");

  auto from_gateway = tern::Context::with_timeout(std::chrono::seconds(1));
  from_gateway.set_metadata("request_id", "edge-2");
  Line g = line("m");
  tern::log::detail::add_context(from_gateway, &g);
  CHECK(g.trace_id == from_gateway.trace_id());
  CHECK(g.request_id == "edge-2");

  auto plain = tern::Context::with_timeout(std::chrono::seconds(1));
  Line p = line("m");
  tern::log::detail::add_context(plain, &p);
  CHECK(p.request_id.empty());
  CHECK(parse(json(p)).fields().count("request_id") == 0);
}

TEST_CASE("TERN_LOG_LEVEL and TERN_LOG_FORMAT values parse") {
  using tern::log::Format;
  CHECK(tern::log::detail::parse_level("debug") == Level::kDebug);
  CHECK(tern::log::detail::parse_level("info") == Level::kInfo);
  CHECK(tern::log::detail::parse_level("warn") == Level::kWarn);
  CHECK(tern::log::detail::parse_level("error") == Level::kError);
  CHECK_FALSE(tern::log::detail::parse_level("verbose").has_value());
  CHECK_FALSE(tern::log::detail::parse_level("INFO").has_value());
  CHECK(tern::log::detail::parse_format("json") == Format::kJson);
  CHECK(tern::log::detail::parse_format("text") == Format::kText);
  CHECK_FALSE(tern::log::detail::parse_format("pretty").has_value());
}
