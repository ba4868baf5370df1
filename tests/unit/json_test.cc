#include <catch2/catch.hpp>

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
