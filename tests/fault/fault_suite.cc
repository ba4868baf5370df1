// The fault suite: under a load of concurrent calls with unique idempotency
// keys, break things and count what every call got.
//
//   fault_suite SERVICE_BINARY [REPORT_FILE]
//
// Needs TERN_AMQP_URL, TERN_RABBIT_NODE and TERN_RABBIT_DIR (scripts/test
// sets them). Prints one line of figures per fault and "N passed, M failed".
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <boost/fiber/all.hpp>
#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "probe.pb.h"
#include "tern/envelope.pb.h"
#include "service_process.h"
#include "tern/tern.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
std::string kService = "test.fault";

std::string g_binary;
std::string g_dir;

// One instance of the fault service, as a child process.
class Instance : public ServiceProcess {
 public:
  explicit Instance(const std::string& name, std::vector<std::string> env = {})
      : ServiceProcess(g_binary, g_dir + "/" + name + ".log", with_defaults(std::move(env))) {}

 private:
  static std::vector<std::string> with_defaults(std::vector<std::string> env) {
    env.insert(env.begin(), {"FAULT_RUN_LOG=" + g_dir + "/runs.log", "TERN_HEARTBEAT_S=2", "TERN_THREADS=1"});
    return env;
  }
};

int rabbit_ctl(const std::string& args) {
  std::string cmd = "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl " + args +
                    "' >/dev/null 2>&1";
  return std::system(cmd.c_str());
}

// Raw publishes into the service's queue: garbage, oversized, wrong types.
void send_bad_messages() {
  const char* url = std::getenv("TERN_AMQP_URL");
  std::vector<char> buf(url, url + std::strlen(url) + 1);
  amqp_connection_info info;
  amqp_parse_url(buf.data(), &info);
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_open(amqp_tcp_socket_new(conn), info.host, info.port);
  amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  amqp_channel_open(conn, 1);
  auto publish = [&](const std::string& body, bool reply_to) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = amqp_cstring_bytes("bad");
    if (reply_to) {
      props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      props.reply_to = amqp_cstring_bytes("nowhere");
    }
    amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(kService.c_str()), 0, 0, &props,
                       amqp_bytes_t{body.size(), const_cast<char*>(body.data())});
  };
  tern::v1::Request wrong;  // a valid envelope whose body is not a ProbeRequest
  wrong.set_id("wrong");
  wrong.set_endpoint("work");
  wrong.set_body(std::string("\xff\xff\xff", 3));
  wrong.set_deadline_unix_ms(tern::to_unix_ms(Clock::now() + 10s));
  for (int i = 0; i < 5; ++i) {
    publish("\xff garbage", true);
    publish("no reply_to", false);
    publish(std::string(5 << 20, 'x'), true);  // over the 4 MiB limit
    publish(wrong.SerializeAsString(), true);
  }
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

struct Figures {
  int sent = 0, ok = 0, lost = 0, duplicates = 0;
  std::map<std::string, int> errors;
  std::string to_string() const {
    std::string e;
    for (auto& [code, n] : errors) e += fmt::format(" {}={}", code, n);
    return fmt::format("sent={} replies={} errors:{} lost={} duplicate_runs={}", sent, ok,
                       e.empty() ? " none" : e, lost, duplicates);
  }
};

// Runs `calls` calls from `concurrency` fibers; `fault` runs on another
// thread once a third of the calls have been sent.
// Waits (bounded) until a call succeeds: the client and the instances have
// (re)connected.
bool await_service(tern::Client& client, std::chrono::seconds limit = 30s) {
  auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    auto ctx = tern::Context::with_timeout(1s);
    if (client.call<probe::ProbeResponse>(ctx, kService, "work", probe::ProbeRequest{}).ok()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

Figures load(tern::Client& client, int calls, int concurrency, uint32_t sleep_ms,
             const std::function<void()>& fault, std::chrono::milliseconds timeout = 4s) {
  std::remove((g_dir + "/runs.log").c_str());
  Figures f;
  std::atomic<int> issued{0};
  std::thread faulter;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int c = 0; c < concurrency; ++c) {
      fibers.emplace_back([&] {
        while (issued < calls) {
          int n = ++issued;
          if (n == calls / 3 && fault) faulter = std::thread(fault);
          probe::ProbeRequest req;
          req.set_sleep_ms(sleep_ms);
          const std::string key = tern::new_trace_id();
          req.set_payload(key);
          auto ctx = tern::Context::with_timeout(timeout);
          auto start = Clock::now();
          auto r = tern::call<probe::ProbeResponse>(
              ctx, kService, "work", req,
              {.timeout = timeout, .max_attempts = 6, .attempt_timeout = 1500ms, .idempotency_key = key});
          ++f.sent;
          if (Clock::now() - start > timeout + 100ms) ++f.lost;
          if (r.ok()) ++f.ok;
          else f.errors[std::string(tern::code_name(r.code()))]++;
        }
      });
    }
    for (auto& fb : fibers) fb.join();
  });
  if (faulter.joinable()) faulter.join();
  std::ifstream runs(g_dir + "/runs.log");
  std::map<std::string, int> seen;
  for (std::string line; std::getline(runs, line);) seen[line]++;
  for (auto& [k, n] : seen) f.duplicates += n - 1;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || !std::getenv("TERN_AMQP_URL") || !std::getenv("TERN_RABBIT_NODE")) {
    fmt::print(stderr, "usage: fault_suite SERVICE_BINARY [REPORT_FILE] (run through scripts/test)\n");
    return 2;
  }
  // The figures also go to REPORT_FILE, for scripts/test to show.
  std::FILE* report_file = argc == 3 ? std::fopen(argv[2], "w") : nullptr;
  g_binary = argv[1];
  char tmpl[] = "/tmp/tern-fault.XXXXXX";
  g_dir = mkdtemp(tmpl);
  tern::Options o = tern::Options::from_env();
  o.heartbeat_s = 2;
  tern::Client client(o, "fault.client");
  int passed = 0, failed = 0;
  auto report = [&](const std::string& name, const Figures& f, bool extra_ok, const std::string& extra) {
    bool ok = f.lost == 0 && f.duplicates == 0 && f.sent > 0 && extra_ok;
    std::string line = fmt::format("{} {}: {}{}\n", ok ? "ok:" : "FAILED:", name, f.to_string(),
                                   extra.empty() ? "" : "; " + extra);
    fmt::print("{}", line);
    std::fflush(stdout);
    if (report_file != nullptr) {
      std::fputs(line.c_str(), report_file);
      std::fflush(report_file);
    }
    (ok ? passed : failed)++;
  };

  {
    Instance a("a"), b("b");
    auto f = load(client, 2000, 30, 50, [] {
      rabbit_ctl("stop_app");
      std::this_thread::sleep_for(1s);
      rabbit_ctl("start_app");
    });
    // Calls during the outage may fail (UNAVAILABLE); all end in time, and
    // everyone reconnects by themselves.
    bool back = await_service(client);
    auto after = load(client, 200, 10, 5, nullptr);
    report("broker restart mid-load", f, back && after.ok == after.sent,
           fmt::format("afterwards {}/{} ok", after.ok, after.sent));
  }
  {
    Instance a("a"), b("b");
    auto f = load(client, 1000, 30, 50, [&] { a.signal(SIGKILL); });
    report("kill -9 of one of two instances holding unacked requests", f, f.ok == f.sent, "");
  }
  {
    Instance a("a"), b("b");
    auto f = load(client, 400, 20, 20, [&] {
      a.signal(SIGSTOP);
      std::this_thread::sleep_for(6s);  // past 2 x its 2 s heartbeat
      a.signal(SIGCONT);
    }, 10s);
    report("SIGSTOP of an instance past its heartbeat timeout then SIGCONT", f, f.ok == f.sent, "");
  }
  {
    Instance a("a"), b("b");
    auto f = load(client, 400, 20, 10, [] { send_bad_messages(); });
    report("malformed, oversized and wrong-typed messages mid-load", f, f.ok == f.sent, "");
  }
  {
    kService = "test.fault.small";
    Instance a("a", {"TERN_CONCURRENCY=4", "TERN_MAX_QUEUE_LENGTH=20", "FAULT_SERVICE=" + kService});
    auto f = load(client, 600, 200, 50, nullptr);
    kService = "test.fault";
    int exhausted = f.errors.count("RESOURCE_EXHAUSTED") ? f.errors.at("RESOURCE_EXHAUSTED") : 0;
    report("several times a service's capacity", f, exhausted > 0 && f.ok + exhausted == f.sent,
           "overload is pushed back as RESOURCE_EXHAUSTED");
  }
  {
    Instance a("a"), b("b");
    int status = -2;
    auto f = load(client, 400, 20, 100, [&] {
      a.signal(SIGTERM);
      status = a.wait();
    });
    report("SIGTERM to an instance with requests in flight", f, f.ok == f.sent && status == 0,
           fmt::format("it exited with status {}", status));
  }
  {
    // A poison request that crashes every instance that runs it: after
    // TERN_MAX_DELIVERIES deliveries it is dead-lettered and the caller told.
    kService = "test.fault.poison";
    const std::vector<std::string> env = {"FAULT_SERVICE=" + kService, "TERN_MAX_DELIVERIES=3"};
    std::optional<Instance> a;
    a.emplace("p0", env);
    tern::Result<probe::ProbeResponse> result = tern::Error{};
    std::atomic<bool> done{false};
    std::thread caller([&] {
      probe::ProbeRequest req;
      req.set_payload("crash");
      auto ctx = tern::Context::with_timeout(60s);
      result = client.call<probe::ProbeResponse>(ctx, kService, "work", req,
                                                 {.timeout = 60s, .max_attempts = 1});
      done = true;
    });
    // Restart each instance the poison request crashes, until the caller is
    // answered (the instance that dead-letters it keeps running, so never
    // block on its exit). The caller's 60 s deadline bounds the loop.
    int crashes = 0;
    while (!done && crashes < 8) {
      int status = 0;
      if (!a->exited(&status)) {
        std::this_thread::sleep_for(10ms);
        continue;
      }
      if (status != -1) break;
      ++crashes;
      a.emplace(fmt::format("p{}", crashes), env);
    }
    caller.join();
    Figures f;
    f.sent = 1;
    if (result.ok()) f.ok = 1;
    else f.errors[std::string(tern::code_name(result.code()))]++;
    bool told = !result.ok() && result.code() == tern::Code::kInternal &&
                result.error().message.find("dead-letter") != std::string::npos;
    report("a request that crashes every instance running it", f, told && crashes == 3,
           fmt::format("{} crashes, then dead-lettered", crashes));
    kService = "test.fault";
  }
  std::system(("rm -rf " + g_dir).c_str());
  fmt::print("{} passed, {} failed\n", passed, failed);
  if (report_file != nullptr) std::fclose(report_file);
  return failed == 0 ? 0 : 1;
}
