#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
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
  CHECK(o.amqp_url == "amqp://localhost:5672/");
  CHECK(o.amqp_user.empty());
  CHECK(o.amqp_password.empty());
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
  CHECK(tern::Options{}.amqp_urls() == std::vector<std::string>{"amqp://localhost:5672/"});
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
  CHECK_THROWS_AS(parse({"--amqp-url=amqpx://a/"}), tern::ConfigError);
  CHECK_THROWS_AS(parse({"--amqp-url=http://a/"}), tern::ConfigError);
  CHECK(parse({"--amqp-url=amqps://a/?cacertfile=/ca.pem,amqp://b/"}).amqp_urls().size() == 2);
  CHECK_THROWS_AS(parse({"--amqp-url=amqp://a/\namqp://b/"}), tern::ConfigError);
  EnvVar url("TERN_AMQP_URL", "amqp://a/ ; amqp://b/");
  CHECK_THROWS_AS(tern::Options::from_env(), tern::ConfigError);
}

namespace {
// A file of this test's own holding `contents`; removed at the end.
struct TempFile {
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/tern-options-test.XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream(path, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};

// The ConfigError's message, or "" when none was thrown.
template <typename F>
std::string config_error(F f) {
  try {
    f();
  } catch (const tern::ConfigError& e) {
    return e.what();
  }
  return {};
}
}  // namespace

TEST_CASE("amqps:// URLs are accepted and a URL's ?query part is kept as written") {
  CHECK(parse({"--amqp-url=amqps://u:p@h:5671/vh?cacertfile=%2Fca.pem"}).amqp_urls() ==
        std::vector<std::string>{"amqps://u:p@h:5671/vh?cacertfile=%2Fca.pem"});
  EnvVar url("TERN_AMQP_URL", "amqp://a:1/,amqps://b:2/?verify=1");
  EnvVar user("TERN_AMQP_USER", "service.greeter");
  EnvVar password("TERN_AMQP_PASSWORD", "s3cret");
  CHECK(tern::Options::from_env().amqp_urls() ==
        std::vector<std::string>{"amqp://service.greeter:s3cret@a:1/", "amqps://service.greeter:s3cret@b:2/?verify=1"});
}

TEST_CASE("TERN_AMQP_USER and TERN_AMQP_PASSWORD replace the login of every URL, percent-encoded") {
  EnvVar url("TERN_AMQP_URL", "amqp://guest:guest@node1:5672/, amqp://node2:5672/vh ,amqp://other@node3/");
  EnvVar user("TERN_AMQP_USER", "api.transaction");
  EnvVar password("TERN_AMQP_PASSWORD", "p@ss:w/rd%,?#");
  const tern::Options o = tern::Options::from_env();
  CHECK(o.amqp_url == "amqp://guest:guest@node1:5672/, amqp://node2:5672/vh ,amqp://other@node3/");
  CHECK(o.amqp_urls() == std::vector<std::string>{"amqp://api.transaction:p%40ss%3Aw%2Frd%25%2C%3F%23@node1:5672/",
                                                  "amqp://api.transaction:p%40ss%3Aw%2Frd%25%2C%3F%23@node2:5672/vh",
                                                  "amqp://api.transaction:p%40ss%3Aw%2Frd%25%2C%3F%23@node3/"});
}

TEST_CASE("TERN_AMQP_USER alone replaces the user and keeps the URL's password") {
  EnvVar url("TERN_AMQP_URL", "amqp://u:p@h/,amqp://h2/");
  EnvVar user("TERN_AMQP_USER", "a user");
  CHECK(tern::Options::from_env().amqp_urls() == std::vector<std::string>{"amqp://a%20user:p@h/", "amqp://a%20user@h2/"});
}

TEST_CASE("TERN_AMQP_PASSWORD alone replaces the password of a URL that names a user") {
  EnvVar url("TERN_AMQP_URL", "amqp://u:old@h/");
  EnvVar password("TERN_AMQP_PASSWORD", "new");
  CHECK(tern::Options::from_env().amqp_urls() == std::vector<std::string>{"amqp://u:new@h/"});
}

TEST_CASE("a password with no user to go with it is a ConfigError that does not show the password") {
  EnvVar url("TERN_AMQP_URL", "amqp://h/");
  EnvVar password("TERN_AMQP_PASSWORD", "hunter2-secret");
  const std::string what = config_error([] { (void)tern::Options::from_env(); });
  CHECK(what.find("TERN_AMQP_USER") != std::string::npos);
  CHECK(what.find("hunter2-secret") == std::string::npos);
}

TEST_CASE("TERN_AMQP_PASSWORD_FILE gives the password: the file's contents, trailing newline stripped") {
  TempFile file("0123456789abcdef\n");
  EnvVar url("TERN_AMQP_URL", "amqp://h:5672/");
  EnvVar user("TERN_AMQP_USER", "service.greeter");
  EnvVar password_file("TERN_AMQP_PASSWORD_FILE", file.path.c_str());
  const tern::Options o = tern::Options::from_env();
  CHECK(o.amqp_password == "0123456789abcdef");
  CHECK(o.amqp_urls() == std::vector<std::string>{"amqp://service.greeter:0123456789abcdef@h:5672/"});
}

TEST_CASE("TERN_AMQP_PASSWORD with TERN_AMQP_PASSWORD_FILE is a ConfigError naming both and showing neither") {
  TempFile file("from-the-file");
  EnvVar user("TERN_AMQP_USER", "u");
  EnvVar password("TERN_AMQP_PASSWORD", "from-the-environment");
  EnvVar password_file("TERN_AMQP_PASSWORD_FILE", file.path.c_str());
  const std::string what = config_error([] { (void)tern::Options::from_env(); });
  CHECK(what.find("TERN_AMQP_PASSWORD and TERN_AMQP_PASSWORD_FILE") != std::string::npos);
  CHECK(what.find("from-the-file") == std::string::npos);
  CHECK(what.find("from-the-environment") == std::string::npos);
}

TEST_CASE("a password file that is missing or empty is a ConfigError naming the file") {
  EnvVar user("TERN_AMQP_USER", "u");
  {
    EnvVar password_file("TERN_AMQP_PASSWORD_FILE", "/nonexistent/tern/password");
    const std::string what = config_error([] { (void)tern::Options::from_env(); });
    CHECK(what.find("TERN_AMQP_PASSWORD_FILE='/nonexistent/tern/password' cannot be read") != std::string::npos);
  }
  TempFile empty("\n");
  EnvVar password_file("TERN_AMQP_PASSWORD_FILE", empty.path.c_str());
  CHECK(config_error([] { (void)tern::Options::from_env(); }).find("is empty") != std::string::npos);
}

TEST_CASE("no error message and no --help text shows a URL's password") {
  for (const char* list : {"amqp://u:hunter2-secret@h/,,amqp://b/", "amqp://u:hunter2-secret@h/ x",
                           "xamqp://u:hunter2-secret@h/", "amqp://a/,amqp://u:hunter2-secret@h/ ;x"}) {
    EnvVar url("TERN_AMQP_URL", list);
    const std::string what = config_error([] { (void)tern::Options::from_env(); });
    CHECK_FALSE(what.empty());
    CHECK(what.find("hunter2") == std::string::npos);
  }
  TempFile file("hunter2-secret\n");
  EnvVar user("TERN_AMQP_USER", "u");
  EnvVar password_file("TERN_AMQP_PASSWORD_FILE", file.path.c_str());
  EnvVar url("TERN_AMQP_URL", "amqp://u:hunter2-secret@h/");
  tern::Options o = tern::Options::from_env();
  for (const char* flag : {"--help", "--no-such-flag"}) {
    std::vector<char*> argv{const_cast<char*>("prog"), const_cast<char*>(flag)};
    const std::string what = config_error([&] { o.parse_args(2, argv.data()); });
    CHECK(what.find("TERN_AMQP_PASSWORD_FILE") != std::string::npos);   // the usage text
    CHECK(what.find("hunter2") == std::string::npos);
  }
}

TEST_CASE("the trace sample is a fraction from 0 to 1, from the environment or a flag") {
  CHECK(tern::Options{}.trace_sample_rate() == 1.0);
  CHECK(parse({"--trace-sample=0.25"}).trace_sample_rate() == 0.25);
  CHECK(parse({"--trace-sample", "0"}).trace_sample_rate() == 0.0);
  {
    EnvVar sample("TERN_TRACE_SAMPLE", "0.1");
    CHECK(tern::Options::from_env().trace_sample_rate() == 0.1);
  }
  for (const char* bad : {"--trace-sample=1.5", "--trace-sample=-0.1", "--trace-sample=half", "--trace-sample=0.5x",
                          "--trace-sample="}) {
    INFO(bad);
    CHECK_THROWS_AS(parse({bad}), tern::ConfigError);
  }
  EnvVar bad("TERN_TRACE_SAMPLE", "10%");
  CHECK_THROWS_AS(tern::Options::from_env(), tern::ConfigError);
}
