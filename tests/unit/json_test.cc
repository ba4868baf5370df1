#include <cmath>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <string>
#include <string_view>

#include "probe.pb.h"
#include "tern/json.h"

TEST_CASE("to_json prints every field by its JSON name with 64-bit integers as numbers") {
  probe::JsonProbe m;
  m.set_amount(1250);
  m.set_big(18446744073709551615ull);
  m.set_small(-3);
  m.set_ratio(0.5);
  m.set_flag(true);
  m.set_account_id("acc \"demo\"\n");
  m.set_blob("hi!?");
  m.set_color(probe::JsonProbe::RED);
  m.add_amounts(1);
  m.add_amounts(-2);
  (*m.mutable_totals())["GBP"] = 7;
  m.mutable_hop()->set_service("s");
  m.set_b(4);
  CHECK(tern::json::to_json(m) ==
        R"({"amount":1250,"big":18446744073709551615,"small":-3,"ratio":0.5,"flag":true,)"
        R"("accountId":"acc \"demo\"\n","blob":"aGkhPw==","color":"RED","amounts":[1,-2],)"
        R"("totals":{"GBP":7},"hop":{"service":"s","traceId":"","spanId":"","parentSpanId":"",)"
        R"("deadlineUnixMs":0,"caller":"","metadata":{}},"b":4})");
}

TEST_CASE("to_json prints defaults and leaves out unset sub-messages, optionals and oneofs") {
  probe::JsonProbe m;
  CHECK(tern::json::to_json(m) ==
        R"({"amount":0,"big":0,"small":0,"ratio":0,"flag":false,"accountId":"","blob":"",)"
        R"("color":"COLOR_UNSPECIFIED","amounts":[],"totals":{}})");
}

TEST_CASE("from_json takes field names and JSON names and numbers or strings for int64") {
  probe::JsonProbe m;
  REQUIRE(tern::json::from_json(R"({"account_id":"a","amount":"12"})", &m).ok());
  CHECK(m.account_id() == "a");
  CHECK(m.amount() == 12);
  probe::JsonProbe n;
  REQUIRE(tern::json::from_json(R"({"accountId":"b","amount":1250})", &n).ok());
  CHECK(n.account_id() == "b");
  CHECK(n.amount() == 1250);
}

TEST_CASE("from_json answers INVALID_ARGUMENT for bad JSON and unknown fields") {
  probe::JsonProbe m;
  auto bad = tern::json::from_json("{\"amount\":", &m);
  CHECK(bad.code == tern::Code::kInvalidArgument);
  auto unknown = tern::json::from_json(R"({"nope":1})", &m);
  CHECK(unknown.code == tern::Code::kInvalidArgument);
  CHECK_THAT(unknown.message, Catch::Contains("nope"));
}

TEST_CASE("a round trip through to_json and from_json keeps the message") {
  probe::JsonProbe m;
  m.set_amount(-9007199254740991);
  m.set_blob(std::string("\0\xff", 2));
  m.add_amounts(5);
  (*m.mutable_totals())["x"] = 1;
  m.set_note("n");
  probe::JsonProbe back;
  REQUIRE(tern::json::from_json(tern::json::to_json(m), &back).ok());
  CHECK(back.SerializeAsString() == m.SerializeAsString());
}

// --- tern::json::quote: valid UTF-8 JSON for any bytes ---
namespace {

// A strict UTF-8 check written apart from json.cc's: decode each sequence by
// its lead byte's count of leading ones, then reject what RFC 3629 forbids
// (overlong forms, surrogates, past U+10FFFF, bad continuations).
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int n = 0;
    while (n < 8 && (b & (0x80 >> n))) ++n;  // leading ones
    if (n == 0) {
      ++i;
      continue;
    }
    if (n == 1 || n > 4 || i + n > s.size()) return false;
    uint32_t cp = b & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

// Whether `q` is one JSON string literal (RFC 8259 section 7): quotes around
// unescaped characters >= 0x20 other than '"' and '\', and escapes.
bool json_string_literal(std::string_view q) {
  if (q.size() < 2 || q.front() != '"' || q.back() != '"') return false;
  for (size_t i = 1; i + 1 < q.size(); ++i) {
    const auto c = static_cast<unsigned char>(q[i]);
    if (c < 0x20 || c == '"') return false;
    if (c != '\\') continue;
    if (++i + 1 >= q.size()) return false;
    if (std::string_view("\"\\/bfnrt").find(q[i]) != std::string_view::npos) continue;
    if (q[i] != 'u' || i + 5 >= q.size()) return false;
    for (int k = 1; k <= 4; ++k)
      if (!std::isxdigit(static_cast<unsigned char>(q[i + k]))) return false;
    i += 4;
  }
  return true;
}

// The string protobuf's own JSON parser reads back from a quoted literal.
std::string parsed_back(const std::string& quoted) {
  google::protobuf::Struct s;
  INFO(quoted);
  REQUIRE(google::protobuf::util::JsonStringToMessage("{\"s\":" + quoted + "}", &s).ok());
  return s.fields().at("s").string_value();
}

constexpr const char* kFffd = "\xef\xbf\xbd";  // U+FFFD in UTF-8

}  // namespace

TEST_CASE("quote escapes quotes, backslashes and control characters") {
  CHECK(tern::json::quote("say \"hi\" C:\\dir\n\t\r\b\f") == R"("say \"hi\" C:\\dir\n\t\r\b\f")");
  CHECK(tern::json::quote(std::string("\x00\x01\x1f\x7f", 4)) == R"("\u0000\u0001\u001f\u007f")");
  CHECK(tern::json::quote("") == R"("")");
  std::string appended = "x=";
  tern::json::append_quoted("a\"b", &appended);
  CHECK(appended == R"(x="a\"b")");
}

TEST_CASE("quote keeps well-formed UTF-8 as it is, up to U+10FFFF") {
  for (const char* ok : {"caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf" /* U+D7FF */,
                         "\xee\x80\x80" /* U+E000 */, "\xf4\x8f\xbf\xbf" /* U+10FFFF */,
                         "\xc2\x80" /* U+0080 */, "\xe0\xa0\x80" /* U+0800 */,
                         "\xf0\x90\x80\x80" /* U+10000 */}) {
    INFO(ok);
    CHECK(tern::json::quote(ok) == std::string("\"") + ok + "\"");
    CHECK(parsed_back(tern::json::quote(ok)) == ok);
  }
}

TEST_CASE("quote replaces each byte of an ill-formed UTF-8 sequence with U+FFFD") {
  struct Case {
    const char* what;
    std::string in;
    std::string out;  // between the quotes
  };
  const Case cases[] = {
      {"a lone continuation byte", "a\x80z", R"(a\ufffdz)"},
      {"continuation bytes in a row", "\xbf\x80", R"(\ufffd\ufffd)"},
      {"a 2-byte sequence cut off at the end", "a\xc3", R"(a\ufffd)"},
      {"a 3-byte sequence cut off by ASCII", "\xe2\x82z", R"(\ufffd\ufffdz)"},
      {"a 4-byte sequence cut off at the end", "\xf0\x9f\x98", R"(\ufffd\ufffd\ufffd)"},
      {"an overlong '/' in 2 bytes", "\xc0\xaf", R"(\ufffd\ufffd)"},
      {"an overlong in 2 bytes with lead C1", "\xc1\xbf", R"(\ufffd\ufffd)"},
      {"an overlong '/' in 3 bytes", "\xe0\x80\xaf", R"(\ufffd\ufffd\ufffd)"},
      {"an overlong '/' in 4 bytes", "\xf0\x80\x80\xaf", R"(\ufffd\ufffd\ufffd\ufffd)"},
      {"the surrogate U+D800 in UTF-8", "\xed\xa0\x80", R"(\ufffd\ufffd\ufffd)"},
      {"the surrogate U+DFFF in UTF-8", "\xed\xbf\xbf", R"(\ufffd\ufffd\ufffd)"},
      {"a surrogate pair in UTF-8 (CESU-8)", "\xed\xa0\xbd\xed\xb8\x80",
       R"(\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd)"},
      {"U+110000, past the last code point", "\xf4\x90\x80\x80", R"(\ufffd\ufffd\ufffd\ufffd)"},
      {"a lead byte F5", "\xf5\x80\x80\x80", R"(\ufffd\ufffd\ufffd\ufffd)"},
      {"the bytes FE and FF", "\xfe\xff", R"(\ufffd\ufffd)"},
      {"a bad byte before a good sequence", "\xff\xc3\xa9", "\\ufffd\xc3\xa9"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const std::string q = tern::json::quote(c.in);
    CHECK(q == "\"" + c.out + "\"");
    CHECK(valid_utf8(q));
    CHECK(json_string_literal(q));
    std::string expected = parsed_back("\"" + c.out + "\"");
    CHECK(parsed_back(q) == expected);
    CHECK(expected.find(kFffd) != std::string::npos);
  }
}

TEST_CASE("quote gives a valid UTF-8 JSON string for any bytes") {
  // Random strings weighted towards the bytes UTF-8 decoders trip on.
  const unsigned char interesting[] = {0x00, 0x1f, 0x22, 0x5c, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2,
                                       0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 'a', 0xa0};
  uint64_t state = 12345;
  auto next = [&] { return (state = state * 6364136223846793005ULL + 1442695040888963407ULL) >> 33; };
  for (int n = 0; n < 20000; ++n) {
    std::string s;
    for (uint64_t len = next() % 12; len > 0; --len) {
      const uint64_t r = next();
      s.push_back(static_cast<char>(r % 2 ? interesting[(r >> 1) % sizeof interesting] : (r >> 1) & 0xff));
    }
    const std::string q = tern::json::quote(s);
    if (!valid_utf8(q) || !json_string_literal(q)) {
      FAIL_CHECK("quote of " << s.size() << " bytes is not a valid UTF-8 JSON string: " << q);
      break;
    }
    // A string that was valid UTF-8 to begin with comes back unchanged.
    if (valid_utf8(s) && parsed_back(q) != s) FAIL_CHECK("changed: " << q);
  }
}

TEST_CASE("to_json writes string fields, map keys and all through quote") {
  probe::JsonProbe m;
  m.set_account_id(std::string("acc\xff\x01", 5));
  (*m.mutable_totals())["k\xc0"] = 1;
  const std::string json = tern::json::to_json(m);
  CHECK(valid_utf8(json));
  CHECK_THAT(json, Catch::Contains(R"("accountId":"acc\ufffd\u0001")"));
  CHECK_THAT(json, Catch::Contains(R"("totals":{"k\ufffd":1})"));
  google::protobuf::Struct back;
  CHECK(google::protobuf::util::JsonStringToMessage(json, &back).ok());
}

// Found by the json_describe fuzzer: -0.0 was printed "-0", which parses back as +0.
TEST_CASE("a negative zero double survives to_json and from_json with its sign") {
  probe::JsonProbe m;
  m.set_ratio(-0.0);
  const std::string printed = tern::json::to_json(m);
  probe::JsonProbe back;
  REQUIRE(tern::json::from_json(printed, &back).ok());
  CHECK(std::signbit(back.ratio()));
  CHECK(back.SerializeAsString() == m.SerializeAsString());
}
