#include "transport/amqp/broker_url.h"

#include <amqp.h>
#include <fmt/format.h>

#include <vector>

#include "core/percent.h"
#include "transport/amqp/connection.h"

namespace tern::detail {
namespace {

std::string query_value(std::string_view s, std::string_view key) {
  std::string out;
  if (!detail::percent_decode(s, /*plus_is_space=*/false, &out))
    throw AmqpError(fmt::format("the broker URL's parameter '{}' has a bad %-escape", key));
  return out;
}

void apply(BrokerUrl& u, std::string_view key, const std::string& value) {
  if (key == "cacertfile") {
    u.ca_file = value;
  } else if (key == "certfile") {
    u.cert_file = value;
  } else if (key == "keyfile") {
    u.key_file = value;
  } else if (key == "server_name_indication") {
    u.server_name = value;
  } else if (key == "verify") {
    if (value != "verify_peer" && value != "verify_none")
      throw AmqpError(fmt::format("the broker URL's verify= is '{}': verify_peer or verify_none", value));
    u.verify = value == "verify_peer";
  } else if (key == "auth_mechanism") {
    if (value != "plain" && value != "external" && value != "PLAIN" && value != "EXTERNAL")
      throw AmqpError(fmt::format("the broker URL's auth_mechanism= is '{}': plain or external", value));
    u.external = value == "external" || value == "EXTERNAL";
  } else {
    throw AmqpError(fmt::format("the broker URL has an unknown parameter '{}'", key));
  }
}

}  // namespace

BrokerUrl BrokerUrl::parse(std::string_view url) {
  const size_t q = url.find('?');
  std::vector<char> buf(url.begin(), q == std::string_view::npos ? url.end() : url.begin() + q);
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    throw AmqpError("malformed AMQP URL (it is not shown: it may hold a password)");
  BrokerUrl u;
  u.tls = info.ssl != 0;
  u.host = info.host;
  u.port = info.port;
  u.user = info.user;
  u.password = info.password;
  // "amqp://host:5672/" names the empty vhost by the letter of the URI spec;
  // like most clients we take it as the default vhost "/".
  if (info.vhost != nullptr && *info.vhost != '\0') u.vhost = info.vhost;

  std::string_view rest = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    apply(u, key, query_value(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), key));
  }
  const bool tls_options = !u.ca_file.empty() || !u.cert_file.empty() || !u.key_file.empty() ||
                           !u.verify || !u.server_name.empty();
  if (!u.tls && (tls_options || u.external))
    throw AmqpError("the broker URL has TLS parameters but is not amqps://");
  if (u.cert_file.empty() != u.key_file.empty())
    throw AmqpError("the broker URL needs certfile= and keyfile= together");
  if (u.external && u.cert_file.empty())
    throw AmqpError("auth_mechanism=external needs a client certificate (certfile=, keyfile=)");
  return u;
}

}  // namespace tern::detail
