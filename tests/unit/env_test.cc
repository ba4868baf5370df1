// tern::env: the one strict parser of TERN_* variables.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "tern/env.h"
#include "tern/options.h"

using namespace std::chrono_literals;

namespace {

struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }
  const char* name_;
};

// What the ConfigError thrown by `fn` says; fails the test if none is thrown.
template <class F>
std::string config_error(F fn) {
  try {
    fn();
  } catch (const tern::ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError");
  return {};
}

constexpr const char* kVar = "TERN_ENV_TEST_VALUE";

}  // namespace

TEST_CASE("env: unset or empty variables give the default") {
  unsetenv(kVar);
  CHECK(tern::env::integer(kVar, 8080, 1, 65535) == 8080);
  CHECK(tern::env::string(kVar, "fallback") == "fallback");
  CHECK(tern::env::duration_ms(kVar, 250ms, 1ms, 1000ms) == 250ms);
  EnvVar empty(kVar, "");
  CHECK(tern::env::integer(kVar, 8080, 1, 65535) == 8080);
  CHECK(tern::env::string(kVar, "fallback") == "fallback");
}

TEST_CASE("env: well-formed values are read, including the range's ends") {
  {
    EnvVar v(kVar, "1");
    CHECK(tern::env::integer(kVar, 8080, 1, 65535) == 1);
  }
  {
    EnvVar v(kVar, "65535");
    CHECK(tern::env::integer(kVar, 8080, 1, 65535) == 65535);
  }
  {
    EnvVar v(kVar, "-5");
    CHECK(tern::env::integer(kVar, 0, -10, 10) == -5);
  }
  {
    EnvVar v(kVar, "1500");
    CHECK(tern::env::duration_ms(kVar, 10ms, 1ms, 1h) == 1500ms);
  }
  {
    EnvVar v(kVar, "0.0.0.0");
    CHECK(tern::env::string(kVar, "127.0.0.1") == "0.0.0.0");
  }
}

TEST_CASE("env: a value that is not a number names the variable and the value") {
  for (const char* bad : {"abc", "12abc", " 12", "12 ", "+12", "1.5", "0x10", "1e3", "-"}) {
    INFO("value: '" << bad << "'");
    EnvVar v("TERN_GATEWAY_PORT", bad);
    CHECK(config_error([] { tern::env::integer("TERN_GATEWAY_PORT", 8080, 1, 65535); }) ==
          "TERN_GATEWAY_PORT='" + std::string(bad) + "' is not a number");
  }
  EnvVar v(kVar, "10s");
  CHECK(config_error([] { tern::env::duration_ms(kVar, 1ms, 1ms, 1h); }) ==
        std::string(kVar) + "='10s' is not a number");
}

TEST_CASE("env: a number outside the range names the variable, the value and the range") {
  for (const char* bad : {"0", "65536", "-1", "99999999999999999999999"}) {
    INFO("value: '" << bad << "'");
    EnvVar v("TERN_GATEWAY_PORT", bad);
    CHECK(config_error([] { tern::env::integer("TERN_GATEWAY_PORT", 8080, 1, 65535); }) ==
          "TERN_GATEWAY_PORT='" + std::string(bad) + "' is out of range 1..65535");
  }
  EnvVar v(kVar, "0");
  CHECK(config_error([] { tern::env::duration_ms(kVar, 5ms, 1ms, 1000ms); }) ==
        std::string(kVar) + "='0' is out of range 1..1000");
}

TEST_CASE("env: parse_integer names its source, as flags use it") {
  CHECK(tern::env::parse_integer("--threads", "4", 0, 100) == 4);
  CHECK(config_error([] { tern::env::parse_integer("--threads", "four", 0, 100); }) ==
        "--threads='four' is not a number");
}

TEST_CASE("env: Options::from_env reports a bad TERN_* value through the same parser") {
  {
    EnvVar v("TERN_THREADS", "many");
    CHECK(config_error([] { tern::Options::from_env(); }) == "TERN_THREADS='many' is not a number");
  }
  {
    EnvVar v("TERN_CONCURRENCY", "0");
    CHECK(config_error([] { tern::Options::from_env(); }) ==
          "TERN_CONCURRENCY='0' is out of range 1..2147483647");
  }
  {
    EnvVar v("TERN_METRICS_PORT", "70000");
    CHECK(config_error([] { tern::Options::from_env(); }) ==
          "TERN_METRICS_PORT='70000' is out of range 0..65535");
  }
  {
    EnvVar v("TERN_THREADS", "99999999999");
    CHECK(config_error([] { tern::Options::from_env(); }) ==
          "TERN_THREADS='99999999999' is out of range 0..2147483647");
  }
}
