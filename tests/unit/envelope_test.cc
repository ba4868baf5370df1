#include <catch2/catch.hpp>

#include "tern/envelope.pb.h"
#include "core/wire.h"

using tern::Code;

TEST_CASE("a request envelope round-trips every field") {
  tern::v1::Request r;
  r.set_id("abc");
  r.set_service("service.greeter");
  r.set_endpoint("hello");
  r.set_body(std::string("\x0a\x03""Ada", 5));
  r.set_deadline_unix_ms(1767225600123);
  r.set_trace_id(std::string(32, 'a'));
  r.set_span_id(std::string(16, 'b'));
  r.set_parent_span_id(std::string(16, 'c'));
  r.set_from("service.front");
  (*r.mutable_metadata())["k"] = "v";
  r.set_attempt(2);
  tern::v1::Request back;
  REQUIRE(back.ParseFromString(r.SerializeAsString()));
  CHECK(back.id() == "abc");
  CHECK(back.service() == "service.greeter");
  CHECK(back.endpoint() == "hello");
  CHECK(back.body() == r.body());
  CHECK(back.deadline_unix_ms() == 1767225600123);
  CHECK(back.trace_id() == r.trace_id());
  CHECK(back.span_id() == r.span_id());
  CHECK(back.parent_span_id() == r.parent_span_id());
  CHECK(back.from() == "service.front");
  CHECK(back.metadata().at("k") == "v");
  CHECK(back.attempt() == 2);
}

TEST_CASE("errors round-trip through the wire form") {
  auto e = tern::Error(Code::kResourceExhausted, "slow down").with_param("retry_after_ms", "100");
  tern::v1::Error w;
  tern::detail::to_wire(e, &w);
  CHECK(w.code() == tern::v1::RESOURCE_EXHAUSTED);
  tern::Error back = tern::detail::from_wire(w);
  CHECK(back.code == Code::kResourceExhausted);
  CHECK(back.message == "slow down");
  CHECK(back.params.at("retry_after_ms") == "100");
  CHECK(back.retryable == e.retryable);
}

TEST_CASE("an unknown code number from the wire becomes UNKNOWN") {
  tern::v1::Error w;
  w.set_code(static_cast<tern::v1::Code>(77));
  CHECK(tern::detail::from_wire(w).code == Code::kUnknown);
}

TEST_CASE("a response decodes to its body or its error") {
  tern::v1::Response ok;
  ok.set_request_id("1");
  ok.set_body("payload");
  auto r = tern::detail::decode_response(ok.SerializeAsString(), "s", "e");
  REQUIRE(r.ok());
  CHECK(*r == "payload");

  tern::v1::Response failed;
  failed.mutable_error()->set_code(tern::v1::NOT_FOUND);
  failed.mutable_error()->set_message("gone");
  auto f = tern::detail::decode_response(failed.SerializeAsString(), "s", "e");
  REQUIRE_FALSE(f.ok());
  CHECK(f.code() == Code::kNotFound);
  CHECK(f.error().message == "gone");
}

TEST_CASE("a reply that is not a Response is INTERNAL") {
  auto r = tern::detail::decode_response("\xff\xff\xff", "service.x", "y");
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kInternal);
  CHECK_THAT(r.error().message, Catch::Contains("service.x/y"));
}

// Found by tests/fuzz/rpc_envelope.cc: an error naming what the caller sent
// ("no endpoint '\xff'"), or a correlation id that is not UTF-8, made a
// Response protobuf's parser refuses (its string fields must be UTF-8): the
// caller read INTERNAL "not a tern.v1.Response" instead of the error.
TEST_CASE("a reply stays parseable when its error or correlation id holds bytes that are not UTF-8") {
  tern::v1::Response resp = tern::detail::response_for("id\xc5");
  tern::detail::to_wire(tern::Error{Code::kUnimplemented, "no endpoint 'a\xff'"}.with_param("endpoint\xfe", "a\xff"),
                        resp.mutable_error());
  tern::v1::Response back;
  REQUIRE(back.ParseFromString(resp.SerializeAsString()));
  CHECK(back.request_id() == "id\xef\xbf\xbd");
  auto r = tern::detail::decode_response(resp.SerializeAsString(), "api.x", "y");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Code::kUnimplemented);
  CHECK(r.error().message == "no endpoint 'a\xef\xbf\xbd'");
  CHECK(r.error().params.at("endpoint\xef\xbf\xbd") == "a\xef\xbf\xbd");
}
