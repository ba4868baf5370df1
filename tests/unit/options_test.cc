#include <catch2/catch.hpp>

#include <cstdlib>

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
