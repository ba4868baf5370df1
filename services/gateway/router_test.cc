#include <catch2/catch.hpp>

#include "gateway.h"
#include "router.h"

using gateway::EndpointRoutes;
using gateway::RouteTable;

namespace {

const char* kTable = R"(
# comment
/webhooks       api.webhook
/auth           api.auth
/auth/admin     api.admin     # longer prefixes win
/{name}         api.{name}
)";

EndpointRoutes routes(std::initializer_list<std::tuple<const char*, const char*, const char*>> list) {
  tern::v1::DescribeResponse d;
  for (auto [method, path, endpoint] : list) {
    auto* r = d.add_routes();
    r->set_method(method);
    r->set_path(path);
    r->set_endpoint(endpoint);
  }
  return EndpointRoutes(d.routes());
}

}  // namespace

TEST_CASE("the route table sends a prefix to its service with the prefix cut off") {
  RouteTable t = RouteTable::parse(kTable);
  auto a = t.resolve("/webhooks");
  REQUIRE(a);
  CHECK(a->service == "api.webhook");
  CHECK(a->rest == "/");
  CHECK(a->listed);
  auto b = t.resolve("/webhooks/wh_1");
  REQUIRE(b);
  CHECK(b->rest == "/wh_1");
  CHECK(t.resolve("/auth/admin/x")->service == "api.admin");
  CHECK(t.resolve("/auth/token")->service == "api.auth");
}

TEST_CASE("a prefix matches whole path segments only") {
  RouteTable t = RouteTable::parse(kTable);
  auto r = t.resolve("/webhooksxyz/1");
  REQUIRE(r);
  CHECK(r->service == "api.webhooksxyz");
  CHECK_FALSE(r->listed);
}

TEST_CASE("other paths go to api.<first segment> by the {name} rule") {
  RouteTable t = RouteTable::parse(kTable);
  auto r = t.resolve("/balance");
  REQUIRE(r);
  CHECK(r->service == "api.balance");
  CHECK(r->rest == "/");
  CHECK(t.resolve("/things/1/parts")->rest == "/1/parts");
  CHECK_FALSE(t.resolve("/"));
  CHECK_FALSE(t.resolve("/Bad.Name/x"));   // no dots or capitals: no queue names smuggled in
}

// Found by tests/fuzz/gateway_route.cc: the rest was cut at the name's
// length from the start, so "//amn" went to api.amn as "n".
TEST_CASE("by the {name} rule, slashes before the first segment do not shift the rest") {
  RouteTable t = RouteTable::parse(kTable);
  auto r = t.resolve("//amn");
  REQUIRE(r);
  CHECK(r->service == "api.amn");
  CHECK(r->rest == "/");
  CHECK(t.resolve("///things/1")->rest == "/1");
  CHECK(t.resolve("//things//1")->rest == "//1");
}

TEST_CASE("without a {name} rule unknown paths have no route") {
  RouteTable t = RouteTable::parse("/a service.a\n");
  CHECK(t.resolve("/a/b"));
  CHECK_FALSE(t.resolve("/b"));
}

TEST_CASE("a malformed route table line is rejected with its number") {
  CHECK_THROWS_WITH(RouteTable::parse("/a service.a\nnot-a-path x\n"), Catch::Contains("line 2"));
  CHECK_THROWS_WITH(RouteTable::parse("/a\n"), Catch::Contains("line 1"));
  CHECK_THROWS(RouteTable::parse("/{name} api.fixed\n"));
}

TEST_CASE("service routes match method and path and capture parameters") {
  auto r = routes({{"GET", "/", "list"}, {"POST", "/", "register"}, {"DELETE", "/:id", "deregister"}});
  auto list = r.match("GET", "/");
  REQUIRE(list.ok());
  CHECK(list->endpoint == "list");
  auto del = r.match("DELETE", "/wh_42");
  REQUIRE(del.ok());
  CHECK(del->endpoint == "deregister");
  CHECK(del->params.at("id") == "wh_42");
}

TEST_CASE("a literal segment beats a parameter") {
  auto r = routes({{"GET", "/:id", "get"}, {"GET", "/recent", "recent"}});
  CHECK(r.match("GET", "/recent")->endpoint == "recent");
  CHECK(r.match("GET", "/tx_1")->endpoint == "get");
}

TEST_CASE("a path with no route is NOT_FOUND and a wrong method names the allowed ones") {
  auto r = routes({{"GET", "/", "list"}, {"POST", "/", "register"}});
  CHECK(r.match("GET", "/a/b").code() == tern::Code::kNotFound);
  auto m = r.match("PUT", "/");
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().params.at("allow") == "GET, POST");
  CHECK(m.error().local.allow == "GET, POST");   // what the gateway's 405 reads
}

TEST_CASE("a downstream's error params never make the gateway answer 405") {
  // What a service replied (rebuilt from the wire): params only.
  tern::Error downstream{tern::Code::kUnimplemented, "no such thing"};
  downstream.params["allow"] = "GET";
  auto r = gateway::error_response(downstream);
  CHECK(r.status == tern::http_status(tern::Code::kUnimplemented));
  for (const auto& [k, v] : r.headers) CHECK(k != "Allow");
  // The router's own verdict: 405 with Allow.
  tern::Error mine{tern::Code::kUnimplemented, "DELETE is not allowed here"};
  mine.local.allow = "GET, POST";
  auto own = gateway::error_response(mine);
  CHECK(own.status == 405);
  bool allow = false;
  for (const auto& [k, v] : own.headers) allow = allow || (k == "Allow" && v == "GET, POST");
  CHECK(allow);
}

TEST_CASE("an Idempotency-Key is scoped by the caller's account and checked") {
  const std::string alice = "acc_alice", bob = "acc_bob";
  auto a1 = gateway::idempotency_key("key-1", alice);
  auto a2 = gateway::idempotency_key("key-1", alice);
  auto b1 = gateway::idempotency_key("key-1", bob);
  auto anon = gateway::idempotency_key("key-1", "");
  REQUIRE(a1.ok());
  REQUIRE(b1.ok());
  CHECK(*a1 == *a2);
  CHECK(*a1 != *b1);
  CHECK(*anon != *a1);
  CHECK(a1->ends_with(":key-1"));
  CHECK(gateway::idempotency_key("", alice).code() == tern::Code::kInvalidArgument);
  CHECK(gateway::idempotency_key(std::string(256, 'k'), alice).code() == tern::Code::kInvalidArgument);
  CHECK(gateway::idempotency_key(std::string(255, 'k'), alice).ok());
  CHECK(gateway::idempotency_key("tab\there", alice).code() == tern::Code::kInvalidArgument);
}
