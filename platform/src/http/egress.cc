// tern::http::EgressPolicy: which addresses fetch may connect to.
#include "tern/egress.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "tern/env.h"

namespace tern::http {
namespace {

// Special-purpose ranges (IANA's IPv4 and IPv6 special-purpose registries)
// that reach this host, its networks or nowhere useful. More specific ranges
// come first so an address gets the most telling name. The IPv6 forms that
// embed an IPv4 address are not here: they are judged by that address.
constexpr DeniedRange kDenied[] = {
    {"0.0.0.0/8", "unspecified (\"this network\")"},
    {"10.0.0.0/8", "private"},
    {"100.64.0.0/10", "carrier-grade NAT (shared)"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.169.254/32", "link-local (cloud metadata)"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "IETF protocol assignments"},
    {"192.0.2.0/24", "documentation"},
    {"192.88.99.0/24", "6to4 relay anycast"},
    {"192.168.0.0/16", "private"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation"},
    {"203.0.113.0/24", "documentation"},
    {"224.0.0.0/4", "multicast"},
    {"255.255.255.255/32", "broadcast"},
    {"240.0.0.0/4", "reserved"},
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"64:ff9b:1::/48", "local-use NAT64"},
    {"100::/64", "discard-only"},
    {"2001::/32", "Teredo"},
    {"2001:db8::/32", "documentation"},
    {"fc00::/7", "unique local (private)"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},
    {"ff00::/8", "multicast"},
};

const std::vector<Cidr>& denied_cidrs() {
  static const std::vector<Cidr> cidrs = [] {
    std::vector<Cidr> out;
    for (const DeniedRange& r : kDenied) out.push_back(*Cidr::parse(r.cidr));
    return out;
  }();
  return cidrs;
}

bool starts_with(const IpAddress& a, std::initializer_list<uint8_t> prefix) {
  size_t i = 0;
  for (uint8_t b : prefix)
    if (a.bytes[i++] != b) return false;
  return true;
}

// The IPv4 address an IPv6 address carries in one of the translation or
// tunnelling forms, if it is one.
std::optional<IpAddress> embedded_v4(const IpAddress& a) {
  if (!a.v6) return std::nullopt;
  const auto& b = a.bytes;
  auto at = [&](size_t i) { return IpAddress::v4(b[i], b[i + 1], b[i + 2], b[i + 3]); };
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible): 80 zero bits, then
  // 16 ones or zeros. :: and ::1 themselves are denied ranges above.
  if (starts_with(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) &&
      ((b[10] == 0xff && b[11] == 0xff) || (b[10] == 0 && b[11] == 0)))
    return at(12);
  if (starts_with(a, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) return at(12);  // NAT64
  if (starts_with(a, {0x20, 0x02})) return at(2);                                         // 6to4
  return std::nullopt;
}

bool allowed_by(const std::vector<Cidr>& allow, const IpAddress& a) {
  for (const Cidr& c : allow)
    if (c.contains(a)) return true;
  return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  a.v6 = true;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) return a;
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::numeric_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host.size() > 255) return std::nullopt;
  const std::string s(host);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST;   // never a DNS query
  addrinfo* result = nullptr;
  if (getaddrinfo(s.c_str(), nullptr, &hints, &result) != 0 || result == nullptr) return std::nullopt;
  IpAddress a;
  if (result->ai_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(result->ai_addr);
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(result->ai_addr);
    a.v6 = true;
    std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
  }
  freeaddrinfo(result);
  return a;
}

IpAddress IpAddress::v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress out;
  out.bytes[0] = a;
  out.bytes[1] = b;
  out.bytes[2] = c;
  out.bytes[3] = d;
  return out;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = "";
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const size_t slash = text.find('/');
  auto base = IpAddress::parse(text.substr(0, slash));
  if (!base) return std::nullopt;
  const int max = base->v6 ? 128 : 32;
  int prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view n = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), prefix);
    if (n.empty() || n.size() > 3 || ec != std::errc{} || p != n.data() + n.size() || prefix < 0 ||
        prefix > max)
      return std::nullopt;
  }
  Cidr c{*base, prefix};
  for (int bit = prefix; bit < max; ++bit) c.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  return c;
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.v6 != base.v6) return false;
  int bits = prefix;
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != base.bytes[i]) return false;
  }
  return true;
}

std::string Cidr::to_string() const { return fmt::format("{}/{}", base.to_string(), prefix); }

std::span<const DeniedRange> denied_ranges() { return kDenied; }

EgressPolicy EgressPolicy::from_list(std::string_view source, std::string_view list) {
  constexpr std::string_view kSpace = " \t";
  std::vector<Cidr> allow;
  if (list.find_first_not_of(kSpace) == std::string_view::npos) return EgressPolicy{};
  for (std::string_view rest = list;;) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    const size_t first = item.find_first_not_of(kSpace);
    item = first == std::string_view::npos ? std::string_view{}
                                           : item.substr(first, item.find_last_not_of(kSpace) - first + 1);
    auto cidr = Cidr::parse(item);
    if (!cidr)
      throw ConfigError(fmt::format("{}='{}': '{}' is not an address range (like 127.0.0.1/32 or ::1/128)",
                                    source, list, item));
    allow.push_back(*cidr);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return EgressPolicy{std::move(allow)};
}

std::optional<std::string_view> EgressPolicy::denial(const IpAddress& a) const {
  if (allowed_by(allow_, a)) return std::nullopt;
  const std::vector<Cidr>& denied = denied_cidrs();
  for (size_t i = 0; i < denied.size(); ++i)
    if (denied[i].contains(a)) return kDenied[i].what;
  if (auto v4 = embedded_v4(a)) return denial(*v4);
  return std::nullopt;
}

std::optional<EgressPolicy::Refusal> EgressPolicy::check(std::span<const IpAddress> resolved) const {
  for (const IpAddress& a : resolved)
    if (auto what = denial(a)) return Refusal{a, *what};
  return std::nullopt;
}

}  // namespace tern::http
