// BrokerUrl: amqp:// and amqps:// URLs with RabbitMQ's TLS query parameters.
#include <catch2/catch.hpp>

#include "transport/amqp/broker_url.h"
#include "transport/amqp/connection.h"

using tern::detail::AmqpError;
using tern::detail::BrokerUrl;

TEST_CASE("broker URL: amqp:// is plain TCP on 5672 and the empty vhost is /") {
  const BrokerUrl u = BrokerUrl::parse("amqp://svc:s3cret@broker.local/");
  CHECK_FALSE(u.tls);
  CHECK(u.host == "broker.local");
  CHECK(u.port == 5672);
  CHECK(u.vhost == "/");
  CHECK(u.user == "svc");
  CHECK(u.password == "s3cret");
}

TEST_CASE("broker URL: amqps:// is TLS on 5671 with the query's files, verification and SNI name") {
  const BrokerUrl u = BrokerUrl::parse(
      "amqps://a:b@10.0.0.9/prod?cacertfile=/etc/tern/ca.pem&certfile=/c%20d/cert.pem&keyfile=/k.pem"
      "&server_name_indication=rabbit.internal&auth_mechanism=external");
  CHECK(u.tls);
  CHECK(u.port == 5671);
  CHECK(u.vhost == "prod");
  CHECK(u.ca_file == "/etc/tern/ca.pem");
  CHECK(u.cert_file == "/c d/cert.pem");
  CHECK(u.key_file == "/k.pem");
  CHECK(u.server_name == "rabbit.internal");
  CHECK(u.external);
  CHECK(u.verify);
  CHECK_FALSE(BrokerUrl::parse("amqps://h:1/?verify=verify_none").verify);
}

TEST_CASE("broker URL: bad parameters are refused, and the message never shows the password") {
  auto error = [](const char* url) {
    try {
      BrokerUrl::parse(url);
    } catch (const AmqpError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  CHECK(error("amqps://u:hunter2@h/?cacert=/x") == "the broker URL has an unknown parameter 'cacert'");
  CHECK(error("amqp://u:hunter2@h/?cacertfile=/x") == "the broker URL has TLS parameters but is not amqps://");
  CHECK(error("amqps://u:hunter2@h/?certfile=/x") == "the broker URL needs certfile= and keyfile= together");
  CHECK(error("amqps://u:hunter2@h/?auth_mechanism=external").find("needs a client certificate") !=
        std::string::npos);
  CHECK(error("amqps://u:hunter2@h/?verify=maybe").find("verify_peer or verify_none") != std::string::npos);
  CHECK(error("amqps://u:hunter2@h/?keyfile=%zz&certfile=/c").find("bad %-escape") != std::string::npos);
  const std::string malformed = error("amqp://u:hunter2@h:notaport/");
  CHECK(malformed.find("malformed") != std::string::npos);
  CHECK(malformed.find("hunter2") == std::string::npos);
}
