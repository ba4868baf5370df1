// UTF-8 checks, and spans made valid when recorded: one span with invalid
// UTF-8 must not make its whole batch unparseable for the collector.
#include <catch2/catch.hpp>

#include "core/utf8.h"
#include "observability/span_buffer.h"
#include "tern/envelope.pb.h"
#include "tern/trace.pb.h"

namespace utf8 = tern::detail::utf8;

TEST_CASE("utf8: well-formed text passes, stray, truncated, overlong and surrogate bytes do not") {
  CHECK(utf8::valid("plain ascii"));
  CHECK(utf8::valid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x90\xA6"));
  CHECK_FALSE(utf8::valid("\xFF"));
  CHECK_FALSE(utf8::valid("caf\xC3"));            // truncated
  CHECK_FALSE(utf8::valid("\xC0\xAF"));           // overlong '/'
  CHECK_FALSE(utf8::valid("\xED\xA0\x80"));       // a surrogate
  CHECK_FALSE(utf8::valid("\xF4\x90\x80\x80"));   // past U+10FFFF
  // ASCII is read 8 bytes at a time: a bad byte anywhere in a word, or
  // in the tail after the last whole word, is still found.
  for (size_t at = 0; at < 19; ++at) {
    std::string t(19, 'a');
    t[at] = '\xFF';
    CHECK_FALSE(utf8::valid(t));
    t[at] = 'b';
    CHECK(utf8::valid(t));
  }
  CHECK(utf8::valid("0123456789abcdef\xC3\xA9tail"));
  std::string s = "/webhooks/\xFF\xFEok\xC3\xA9";
  CHECK(utf8::make_valid(&s));
  CHECK(s == "/webhooks/\xEF\xBF\xBD\xEF\xBF\xBDok\xC3\xA9");
  std::string fine = "fine";
  CHECK_FALSE(utf8::make_valid(&fine));
}

TEST_CASE("utf8: a span recorded with invalid UTF-8 leaves in a batch that parses") {
  tern::detail::SpanBuffer buffer("test.utf8", true);
  tern::detail::SpanRecord* span = buffer.open(tern::v1::Span::HTTP, std::chrono::steady_clock::now());
  REQUIRE(span != nullptr);
  span->trace_id = std::string(32, 'a');
  span->name = "GET /webhooks/\xFF";
  span->code = tern::Code::kNotFound;
  span->error = "bad byte \xC0 here";
  span->http_path = "/\xFE";
  span->http_route = "/r/\xC0";   // a handler's own Response::route
  buffer.commit(span);
  size_t count = 0;
  const std::string wire = buffer.take_batch(std::chrono::steady_clock::now(), &count);
  REQUIRE(count == 1);
  tern::v1::Event event;
  REQUIRE(event.ParseFromString(wire));
  tern::v1::SpanBatch batch;
  REQUIRE(batch.ParseFromString(event.body()));   // the collector's parse
  REQUIRE(batch.spans_size() == 1);
  CHECK(batch.spans(0).name() == "GET /webhooks/\xEF\xBF\xBD");
  CHECK(utf8::valid(batch.spans(0).error()));
  CHECK(batch.spans(0).tags().at("http.path") == "/\xEF\xBF\xBD");
  CHECK(batch.spans(0).tags().at("http.route") == "/r/\xEF\xBF\xBD");
}

TEST_CASE("ascii is true for 7-bit text of any length and false when any one byte has its high bit") {
  for (size_t n = 0; n <= 40; ++n) {
    std::string s(n, 'a');
    CHECK(tern::detail::utf8::ascii(s));
    for (size_t at = 0; at < n; ++at) {
      std::string t = s;
      t[at] = static_cast<char>(0x80 | (at % 0x7f));
      CHECK_FALSE(tern::detail::utf8::ascii(t));
    }
  }
}
