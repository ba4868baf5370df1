#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "tern/options.h"

namespace {
struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }
  const char* name_;
};
tern::Options parse(std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("prog")};
  for (auto& a : args) argv.push_back(a.data());
  tern::Options o;
  o.parse_args(static_cast<int>(argv.size()), argv.data());
  return o;
}
}  // namespace

TEST_CASE("defaults are written where options are declared") {
  tern::Options o;
  CHECK(o.amqp_url == "amqp://guest:guest@localhost:5672/");
  CHECK(o.threads == 0);
  CHECK(o.resolved_threads() >= 1);
}

TEST_CASE("the environment overrides defaults") {
  EnvVar url("TERN_AMQP_URL", "amqp://u:p@broker:5673/");
  EnvVar threads("TERN_THREADS", "3");
  tern::Options o = tern::Options::from_env();
  CHECK(o.amqp_url == "amqp://u:p@broker:5673/");
  CHECK(o.threads == 3);
  CHECK(o.resolved_threads() == 3);
}

TEST_CASE("a malformed environment value is rejected") {
  EnvVar threads("TERN_THREADS", "many");
  CHECK_THROWS_AS(tern::Options::from_env(), tern::ConfigError);
}

TEST_CASE("flags override in both spellings") {
  auto o = parse({"--threads=2", "--amqp-url", "amqp://x/", "--concurrency", "10"});
  CHECK(o.threads == 2);
  CHECK(o.amqp_url == "amqp://x/");
  CHECK(o.concurrency == 10);
}

TEST_CASE("unknown flags and bad values are rejected") {
  CHECK_THROWS_AS(parse({"--thread=2"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--concurrency=0"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--threads"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"stray"}), tern::ConfigError);
}

TEST_CASE("the event queue type is classic or quorum") {
  CHECK(parse({"--event-queue-type=quorum"}).event_queue_type == "quorum");
  CHECK_THROWS_AS(parse({"--event-queue-type=stream"}), tern::ConfigError);
}

TEST_CASE("the request queue type is classic or quorum") {
  CHECK(tern::Options{}.request_queue_type == "classic");
  CHECK(parse({"--request-queue-type", "quorum"}).request_queue_type == "quorum");
  EnvVar type("TERN_REQUEST_QUEUE_TYPE", "quorum");
  CHECK(tern::Options::from_env().request_queue_type == "quorum");
  CHECK_THROWS_AS(parse({"--request-queue-type=stream"}), tern::ConfigError);
}

TEST_CASE("the broker URL is one URL or a comma-separated list of a cluster's nodes") {
  CHECK(tern::Options{}.amqp_urls() == std::vector<std::string>{"amqp://guest:guest@localhost:5672/"});
  EnvVar url("TERN_AMQP_URL", "amqp://u:p@node1:5672/, amqp://u:p@node2:5672/ ,amqp://u:p@node3:5673/vh");
  tern::Options o = tern::Options::from_env();
  CHECK(o.amqp_urls() == std::vector<std::string>{"amqp://u:p@node1:5672/", "amqp://u:p@node2:5672/",
                                                  "amqp://u:p@node3:5673/vh"});
  // A comma in a password is written %2C: it does not split the URL.
  CHECK(parse({"--amqp-url=amqp://u:a%2Cb@h/"}).amqp_urls() == std::vector<std::string>{"amqp://u:a%2Cb@h/"});
}

TEST_CASE("a malformed broker URL list is rejected at start-up") {
  CHECK_THROWS_AS(parse({"--amqp-url="}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--amqp-url=amqp://a/,,amqp://b/"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--amqp-url=amqp://a/,"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--amqp-url=amqp://a/,localhost:5672"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--amqp-url=http://a/"}), tern::ConfigError);
  CHECK(parse({"--amqp-url=amqps://a/?cacertfile=/ca.pem,amqp://b/"}).amqp_urls().size() == 2);
  CHECK_THROWS_AS(parse({"--amqp-url=amqp://a/\namqp://b/"}), tern::ConfigError);
  EnvVar url("TERN_AMQP_URL", "amqp://a/ ; amqp://b/");
  CHECK_THROWS_AS(tern::Options::from_env(), tern::ConfigError);
}
