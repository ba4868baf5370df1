// tern::http::EgressPolicy as a pure function over addresses: no lookups,
// no connections (every address here is only evaluated, never dialled).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tern/egress.h"
#include "tern/env.h"

using tern::http::Cidr;
using tern::http::EgressPolicy;
using tern::http::IpAddress;

namespace {

IpAddress ip(const std::string& text) {
  auto a = IpAddress::parse(text);
  INFO(text);
  REQUIRE(a.has_value());
  return *a;
}

std::string denial(const EgressPolicy& p, const std::string& text) {
  auto what = p.denial(ip(text));
  return what ? std::string(*what) : "permitted";
}

}  // namespace

TEST_CASE("the default egress policy refuses loopback, private, link-local and other inward addresses") {
  const EgressPolicy policy;
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"::1", "loopback"},
      {"169.254.169.254", "link-local (cloud metadata)"},
      {"169.254.0.1", "link-local"},
      {"10.0.0.1", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.255", "private"},
      {"192.168.1.1", "private"},
      {"100.64.0.1", "carrier-grade NAT (shared)"},
      {"100.127.255.255", "carrier-grade NAT (shared)"},
      {"fc00::1", "unique local (private)"},
      {"fd12:3456::1", "unique local (private)"},
      {"fe80::1", "link-local"},
      {"0.0.0.0", "unspecified (\"this network\")"},
      {"::", "unspecified"},
      {"224.0.0.1", "multicast"},
      {"239.255.255.250", "multicast"},
      {"ff02::1", "multicast"},
      {"255.255.255.255", "broadcast"},
      {"240.0.0.1", "reserved"},
      {"192.0.0.170", "IETF protocol assignments"},
      {"198.18.0.1", "benchmarking"},
      {"2001:db8::1", "documentation"},
      {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
      {"fec0::1", "site-local"},
      // IPv6 forms that carry an IPv4 address are judged by it.
      {"::ffff:127.0.0.1", "loopback"},
      {"::ffff:169.254.169.254", "link-local (cloud metadata)"},
      {"::ffff:10.0.0.1", "private"},
      {"::ffff:0.0.0.0", "unspecified (\"this network\")"},
      {"::127.0.0.1", "loopback"},                 // IPv4-compatible
      {"64:ff9b::7f00:1", "loopback"},             // NAT64 of 127.0.0.1
      {"64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"},
      {"2002:7f00:1::", "loopback"},               // 6to4 of 127.0.0.1
      {"2002:c0a8:101::1", "private"},             // 6to4 of 192.168.1.1
  };
  for (const auto& [address, what] : refused) {
    INFO(address);
    CHECK(denial(policy, address) == what);
  }
  // Every default range's own first address is refused.
  for (const auto& range : tern::http::denied_ranges()) {
    INFO(range.cidr);
    CHECK(policy.denial(Cidr::parse(range.cidr)->base).has_value());
  }
}

TEST_CASE("public addresses pass the default egress policy, right up to the edges of the denied ranges") {
  const EgressPolicy policy;
  for (std::string address :
       {"93.184.216.34", "2606:4700::1", "8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0",
        "100.63.255.255", "100.128.0.0", "126.255.255.255", "128.0.0.0", "169.253.255.255",
        "169.255.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0",
        "223.255.255.255", "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1",
        "2001:4860:4860::8888", "fbff:ffff::1", "fe00::1"}) {
    INFO(address);
    CHECK(denial(policy, address) == "permitted");
  }
}

TEST_CASE("an allow-list permits exactly the ranges it names") {
  const EgressPolicy policy = EgressPolicy::from_list("TERN_WEBHOOK_ALLOW", "127.0.0.1/32, ::1/128");
  REQUIRE(policy.allowed().size() == 2);
  CHECK(policy.allowed()[0].to_string() == "127.0.0.1/32");
  CHECK(policy.allowed()[1].to_string() == "::1/128");
  CHECK(denial(policy, "127.0.0.1") == "permitted");
  CHECK(denial(policy, "::1") == "permitted");
  CHECK(denial(policy, "::ffff:127.0.0.1") == "permitted");   // the same address, mapped
  CHECK(denial(policy, "127.0.0.2") == "loopback");            // /32: only the one
  CHECK(denial(policy, "10.0.0.1") == "private");
  CHECK(denial(policy, "169.254.169.254") == "link-local (cloud metadata)");

  const EgressPolicy ten = EgressPolicy::from_list("X", "10.0.0.0/8");
  CHECK(denial(ten, "10.1.2.3") == "permitted");
  CHECK(denial(ten, "11.0.0.1") == "permitted");
  CHECK(denial(ten, "192.168.1.1") == "private");
  CHECK(EgressPolicy::from_list("X", "").allowed().empty());
  CHECK(EgressPolicy::from_list("X", "  ").allowed().empty());
  CHECK(EgressPolicy::from_list("X", "10.1.2.3/8").allowed()[0].to_string() == "10.0.0.0/8");
  CHECK(EgressPolicy::from_list("X", "fe80::1").allowed()[0].to_string() == "fe80::1/128");
}

TEST_CASE("a malformed allow-list is a start-up error naming the variable and the entry") {
  for (std::string bad : {"localhost", "127.0.0.1/33", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8",
                          "10.0.0.0/ 8", "1.2.3", "127.1/32", "10.0.0.0/8,", ",10.0.0.0/8",
                          "10.0.0.0/8;192.168.0.0/16", "0x7f000001", "[::1]/128", "10.0.0.0/08x"}) {
    INFO(bad);
    try {
      EgressPolicy::from_list("TERN_WEBHOOK_ALLOW", bad);
      FAIL("accepted");
    } catch (const tern::ConfigError& e) {
      CHECK_THAT(e.what(), Catch::StartsWith("TERN_WEBHOOK_ALLOW='" + bad + "'"));
      CHECK_THAT(e.what(), Catch::Contains("is not an address range"));
    }
  }
}

TEST_CASE("a host is refused if any address it resolved to is denied") {
  const EgressPolicy policy;
  std::vector<IpAddress> outward = {ip("93.184.216.34"), ip("2606:4700::1")};
  CHECK_FALSE(policy.check(outward).has_value());
  std::vector<IpAddress> mixed = {ip("93.184.216.34"), ip("127.0.0.1"), ip("2606:4700::1")};
  auto refusal = policy.check(mixed);
  REQUIRE(refusal.has_value());
  CHECK(refusal->address.to_string() == "127.0.0.1");
  CHECK(refusal->what == "loopback");
}

TEST_CASE("a URL's numeric host is read the way getaddrinfo reads it, every spelling of loopback included") {
  for (std::string host : {"127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "0x7f000001"}) {
    INFO(host);
    auto a = IpAddress::numeric_host(host);
    REQUIRE(a.has_value());
    CHECK(a->to_string() == "127.0.0.1");
  }
  CHECK(IpAddress::numeric_host("[::1]")->to_string() == "::1");
  CHECK(IpAddress::numeric_host("[::ffff:127.0.0.1]")->to_string() == "::ffff:127.0.0.1");
  CHECK_FALSE(IpAddress::numeric_host("example.com").has_value());
  CHECK_FALSE(IpAddress::numeric_host("localhost").has_value());   // a name: resolved at delivery
  CHECK_FALSE(IpAddress::numeric_host("").has_value());
  // The allow-list's parser is the strict one.
  CHECK_FALSE(IpAddress::parse("127.1").has_value());
  CHECK_FALSE(IpAddress::parse("2130706433").has_value());
}
