#include <catch2/catch.hpp>

#include "tern/envelope.pb.h"
#include "tern/error.h"

using tern::Code;

TEST_CASE("every code's name and number match the wire enum") {
  const auto* e = tern::v1::Code_descriptor();
  REQUIRE(e->value_count() == 17);
  for (int i = 0; i < e->value_count(); ++i) {
    const auto* v = e->value(i);
    CHECK(tern::code_name(static_cast<Code>(v->number())) == v->name());
    Code parsed;
    REQUIRE(tern::parse_code(v->name(), &parsed));
    CHECK(static_cast<int>(parsed) == v->number());
  }
  Code c;
  CHECK_FALSE(tern::parse_code("NOPE", &c));
  CHECK(tern::code_name(static_cast<Code>(99)) == "UNKNOWN");
}

TEST_CASE("codes map to HTTP statuses through one table") {
  CHECK(tern::http_status(Code::kOk) == 200);
  CHECK(tern::http_status(Code::kInvalidArgument) == 400);
  CHECK(tern::http_status(Code::kUnauthenticated) == 401);
  CHECK(tern::http_status(Code::kPermissionDenied) == 403);
  CHECK(tern::http_status(Code::kNotFound) == 404);
  CHECK(tern::http_status(Code::kAlreadyExists) == 409);
  CHECK(tern::http_status(Code::kResourceExhausted) == 429);
  CHECK(tern::http_status(Code::kInternal) == 500);
  CHECK(tern::http_status(Code::kUnimplemented) == 501);
  CHECK(tern::http_status(Code::kUnavailable) == 503);
  CHECK(tern::http_status(Code::kDeadlineExceeded) == 504);
}

TEST_CASE("only UNAVAILABLE is retryable by default") {
  CHECK(tern::Error(Code::kUnavailable, "x").retryable);
  CHECK_FALSE(tern::Error(Code::kDeadlineExceeded, "x").retryable);
  CHECK_FALSE(tern::Error(Code::kInvalidArgument, "x").retryable);
  CHECK_FALSE(tern::Error(Code::kInternal, "x").retryable);
}

TEST_CASE("an error prints as CODE: message and carries params") {
  auto e = tern::Error(Code::kNotFound, "no such user").with_param("id", "7");
  CHECK(e.to_string() == "NOT_FOUND: no such user");
  CHECK(e.params.at("id") == "7");
}

TEST_CASE("a Result holds a value or an error") {
  tern::Result<int> ok = 5;
  REQUIRE(ok.ok());
  CHECK(*ok == 5);
  CHECK(ok.code() == Code::kOk);
  tern::Result<int> bad = tern::Error(Code::kAborted, "no");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.code() == Code::kAborted);
  CHECK(bad.error().message == "no");
}
