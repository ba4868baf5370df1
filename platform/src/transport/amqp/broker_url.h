// A broker URL, parsed: amqp://user:password@host:port/vhost, or amqps://
// with TLS, and the query parameters of RabbitMQ's URI spec that tern
// reads (https://www.rabbitmq.com/docs/uri-query-parameters):
//   cacertfile=PATH      CAs that may sign the broker's certificate (default: the system's)
//   certfile=PATH, keyfile=PATH   a client certificate (both or neither)
//   verify=verify_peer|verify_none   verify_none encrypts without authenticating the broker
//   server_name_indication=NAME   the name the certificate must carry (default: the host)
//   auth_mechanism=plain|external   external: log in as the client certificate's CN
// Pure: a unit test checks it whole.
#pragma once

#include <string>
#include <string_view>

namespace tern::detail {

struct BrokerUrl {
  bool tls = false;
  std::string host;
  int port = 5672;
  std::string vhost = "/";
  std::string user = "guest";
  std::string password = "guest";
  // TLS, with tls only.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool verify = true;
  std::string server_name;   // empty: host
  bool external = false;     // the EXTERNAL mechanism (needs cert_file)

  // Throws AmqpError; its message never holds the password.
  static BrokerUrl parse(std::string_view url);
};

}  // namespace tern::detail
