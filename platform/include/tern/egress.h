// Which addresses an outbound HTTP connection may reach. http::fetch, given
// an EgressPolicy, resolves the host, checks every address it resolved to,
// and connects only to those it checked (it never resolves again in
// between, so DNS rebinding cannot slip an address past the check).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tern::http {

// An IPv4 or IPv6 address, bytes in network order (IPv4: the first 4).
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  // Strict: dotted-quad IPv4 or RFC 4291 IPv6 text (inet_pton), else nullopt.
  static std::optional<IpAddress> parse(std::string_view text);
  // What getaddrinfo(AI_NUMERICHOST) makes of a URL's host, the way
  // http::fetch reads it: also "127.1", "0x7f.0.0.1", "2130706433", and
  // "[::1]" with brackets. nullopt when the host is a name, not a number.
  static std::optional<IpAddress> numeric_host(std::string_view host);
  static IpAddress v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
  std::string to_string() const;
  bool operator==(const IpAddress&) const = default;
};

// An address range: "10.0.0.0/8", "::1/128"; a bare address is /32 or /128.
struct Cidr {
  IpAddress base;   // with the bits past `prefix` cleared
  int prefix = 0;

  // nullopt unless `text` is an address (IpAddress::parse), optionally
  // followed by /N with N in 0..32 (IPv4) or 0..128 (IPv6), no spaces.
  static std::optional<Cidr> parse(std::string_view text);
  // Whether `a` is in the range; an IPv4 range never holds an IPv6 address.
  bool contains(const IpAddress& a) const;
  std::string to_string() const;
};

// A range an EgressPolicy refuses unless allow-listed, and what it is.
struct DeniedRange {
  std::string_view cidr;
  std::string_view what;   // "loopback", "link-local (cloud metadata)", ...
};
// Every range denied by default (docs/security.md has the table).
std::span<const DeniedRange> denied_ranges();

// Pure: no lookups, no I/O; immutable after construction, so one policy may
// be read from any thread at once.
//
// An address is permitted when an allow-listed range holds it, or when no
// denied range holds it and every IPv4 address it embeds is permitted: the
// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
// (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) forms are judged by the
// IPv4 address inside them, so ::ffff:127.0.0.1 is loopback.
class EgressPolicy {
 public:
  // Denies all of denied_ranges().
  EgressPolicy() = default;
  // Denies denied_ranges() except what `allow` holds.
  explicit EgressPolicy(std::vector<Cidr> allow) : allow_(std::move(allow)) {}
  // A comma-separated list of Cidr ("127.0.0.1/32,::1/128"; spaces around
  // commas ignored; empty: none). Throws tern::ConfigError naming `source`
  // (the variable it came from) on a malformed entry.
  static EgressPolicy from_list(std::string_view source, std::string_view list);

  // nullopt if `a` is permitted; otherwise what it is ("loopback", ...).
  std::optional<std::string_view> denial(const IpAddress& a) const;
  // Over everything a host resolved to: the first denied address and what
  // it is, or nullopt if all are permitted. An empty list is permitted
  // (there is nothing to connect to). One denied address refuses the host:
  // a name that resolves partly inward is not used at all.
  struct Refusal {
    IpAddress address;
    std::string_view what;
  };
  std::optional<Refusal> check(std::span<const IpAddress> resolved) const;

  const std::vector<Cidr>& allowed() const { return allow_; }

 private:
  std::vector<Cidr> allow_;
};

}  // namespace tern::http
