#include "alarm_scenario.h"

#include <fmt/format.h>
#include <signal.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "probe.pb.h"
#include "service_process.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string rabbit_ctl_output(const std::string& args) {
  const std::string cmd = "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl -q " + args +
                          "' 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    pclose(p);
  }
  return out;
}
int rabbit_ctl(const std::string& args) {
  return std::system(("bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl " + args +
                      "' >/dev/null 2>&1").c_str());
}
// list_queues' messages_unacknowledged of `queue`, or -1.
int unacked(const std::string& queue) {
  std::istringstream lines(rabbit_ctl_output("list_queues name messages_unacknowledged"));
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with(queue + "\t")) return std::atoi(line.c_str() + queue.size() + 1);
  return -1;
}

// What the subscribers logged: handled keys (with their count) and failed first attempts.
struct EventLog {
  std::map<std::string, int> handled;
  int failures = 0;
  static EventLog read(const std::string& path, const std::string& prefix) {
    EventLog l;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("fail ")) l.failures += line.compare(5, prefix.size(), prefix) == 0;
      else if (line.starts_with(prefix)) ++l.handled[line];
    }
    return l;
  }
};

bool blocked_error(const std::string& message) { return message.starts_with("the broker blocked publishing"); }

}  // namespace

void memory_alarm_scenario(tern::Client& client, const Attempts& attempts, Scenario& s, const std::string& binary,
                           const std::string& dir) {
  const std::string ledger_path = dir + "/alarm.ledger", events_path = dir + "/alarm.events";
  const std::string sub_queue = "test.fault.on.probe.hop";
  auto instance = [&](const std::string& name, std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"FAULT_LEDGER=" + ledger_path, "TERN_HEARTBEAT_S=2", "TERN_THREADS=1"});
    return std::make_unique<ServiceProcess>(binary, dir + "/" + name + ".log", extra);
  };
  const std::vector<std::string> subscriber = {"FAULT_EVENT_LOG=" + events_path, "FAULT_EVENT_FAIL=1",
                                               "TERN_EVENT_RETRY_MS=200"};
  // What an earlier run on this node left in the subscription queue (the
  // poison-event scenario's probe.Hop events among it, which crash any
  // subscriber by design) is not this run's: gone before a subscribes.
  // (No such queue yet on a fresh node: that failure is fine.)
  (void)rabbit_ctl("purge_queue " + sub_queue);
  // a: a slow subscriber (4 events at once, 100 ms each), so events wait in
  // its queue and it holds some when it dies; b serves calls only.
  auto a = instance("alarm-a", {subscriber[0], subscriber[1], subscriber[2], "FAULT_EVENT_SLEEP_MS=100",
                                "TERN_CONCURRENCY=4"});
  auto b = instance("alarm-b", {});
  const pid_t a_pid = a->pid();
  const std::set<pid_t> pids = {a->pid(), b->pid()};
  const std::string event_tag = "E" + tern::new_span_id() + "-";

  int raise_rc = -1, clear_rc = -1, held_at_kill = -1, blocked_connections = 0;
  bool killed_mid_alarm = false;
  Clock::time_point alarm_from{}, alarm_to{};
  // Events from 4 fibers, one every 20 ms each, until the calls end; the
  // first of each during the alarm is held by the broker past its 1 s deadline.
  std::atomic<bool> calls_done{false};
  std::mutex mu;
  std::set<std::string> published_ok, not_sent;
  std::map<std::string, int> publish_errors;
  int publish_blocked = 0;
  std::chrono::milliseconds slowest_blocked_publish{0};
  std::thread publisher([&] {
    client.run([&] {
      std::vector<boost::fibers::fiber> fibers;
      for (int f = 0; f < 4; ++f)
        fibers.emplace_back([&] {
          while (!calls_done) {
            probe::Hop hop;
            hop.set_service(event_tag + tern::new_trace_id());
            auto ctx = tern::Context::with_timeout(1s);
            const auto start = Clock::now();
            tern::Error e = tern::publish(ctx, hop);
            const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
            {
              std::lock_guard<std::mutex> lock(mu);
              if (e.params.count("outcome") && e.params.at("outcome") == "not sent") not_sent.insert(hop.service());
              if (e.ok()) published_ok.insert(hop.service());
              else ++publish_errors[std::string(tern::code_name(e.code)) + (blocked_error(e.message) ? " blocked" : "")];
              if (blocked_error(e.message)) {
                ++publish_blocked;
                slowest_blocked_publish = std::max(slowest_blocked_publish, took);
              }
            }
            boost::this_fiber::sleep_for(20ms);
          }
        });
      for (auto& fb : fibers) fb.join();
    });
  });

  auto calls = run_load(client, attempts, {.calls = 1500, .concurrency = 20, .sleep_ms = 50, .timeout = 6s,
                                           .fault = [&] {
    raise_rc = rabbit_ctl("set_vm_memory_high_watermark 0.0000001");
    alarm_from = Clock::now();
    // The broker's own view: connections it blocks (they published in the alarm).
    for (auto until = Clock::now() + 3s; Clock::now() < until && blocked_connections == 0;
         std::this_thread::sleep_for(100ms)) {
      std::istringstream states(rabbit_ctl_output("list_connections state"));
      for (std::string st; states >> st;) blocked_connections += st == "blocked";
    }
    // Kill the subscriber while it holds events (unacked), mid-alarm.
    for (auto until = Clock::now() + 3s; Clock::now() < until; std::this_thread::sleep_for(20ms))
      if ((held_at_kill = unacked(sub_queue)) > 0) break;
    a->signal(SIGKILL);
    a->wait();
    killed_mid_alarm = true;
    std::this_thread::sleep_until(alarm_from + 5s);
    clear_rc = rabbit_ctl("set_vm_memory_high_watermark 0.4");
    alarm_to = Clock::now();
  }});
  calls_done = true;
  publisher.join();
  if (clear_rc != 0) clear_rc = rabbit_ctl("set_vm_memory_high_watermark 0.4");   // never leave it raised

  // A new subscriber: every event whose publish returned ok must reach it
  // (or have been handled by a before it died).
  auto c = instance("alarm-c", subscriber);
  EventLog log;
  for (auto until = Clock::now() + 40s; Clock::now() < until; std::this_thread::sleep_for(100ms)) {
    log = EventLog::read(events_path, event_tag);
    bool all = true;
    for (const auto& k : published_ok) all = all && log.handled.count(k);
    if (all) break;
  }
  int lost = 0, duplicates = 0;
  for (const auto& k : published_ok) lost += !log.handled.count(k);
  for (const auto& [k, n] : log.handled) duplicates += n - 1;
  int unexpected_events = 0;   // handled, though its publish said "not sent"
  for (const auto& [k, n] : log.handled) unexpected_events += static_cast<int>(not_sent.count(k));

  const ledger::Ledger l = ledger::settle(ledger_path, {b->pid(), c->pid()}).only(calls.tag);
  s.check(calls, l, pids,
          {.gap_keys = l.redelivered_after_effect(a_pid),
           .gap = "applied by the killed subscriber, which died before its ack, then redelivered to the other"});
  int blocked_calls = 0;
  std::chrono::milliseconds slowest_blocked_call{0};
  for (const auto& o : calls.outcomes)
    if (blocked_error(o.message)) {
      ++blocked_calls;
      slowest_blocked_call = std::max(slowest_blocked_call, o.took);
    }
  std::string errors;
  for (const auto& [what, n] : publish_errors) errors += fmt::format("{}{}={}", errors.empty() ? "" : " ", what, n);
  s.line(fmt::format("calls: {} failed fast as blocked (not sent; the slowest, with its retries, in {} ms, under its "
                     "6 s deadline)", blocked_calls, slowest_blocked_call.count()));
  s.line(fmt::format("events: published ok={} failed={} ({}; blocked ones in {} ms at most); handled={} lost={} "
                     "duplicated={} unexpected={}; first attempts failed (retried)={}",
                     published_ok.size(), publish_errors.empty() ? 0 : [&] { int n = 0; for (const auto& [w, k] : publish_errors) n += k; return n; }(), errors.empty() ? "none" : errors,
                     slowest_blocked_publish.count(), log.handled.size(), lost, duplicates, unexpected_events,
                     log.failures));
  s.line(fmt::format("premises: alarm raised rc={} cleared rc={} after {} ms; the broker listed {} blocked "
                     "connection(s); the subscriber died by signal {} mid-alarm ({}) holding {} unacked event(s)",
                     raise_rc, clear_rc,
                     std::chrono::duration_cast<std::chrono::milliseconds>(alarm_to - alarm_from).count(),
                     blocked_connections, a->killed_by(), killed_mid_alarm ? "yes" : "no", held_at_kill));
  s.expect(lost == 0, "events lost=0");
  s.expect(unexpected_events == 0, "no unexpected event");
  s.expect(!published_ok.empty(), "events were published");
  s.expect(blocked_calls > 0 && publish_blocked > 0, "calls and publishes failed fast as blocked");
  s.expect(slowest_blocked_call < 3s && slowest_blocked_publish < 500ms, "blocked calls and publishes ended fast");
  s.expect(log.failures > 0, "handlers failed (the retry path)");
  s.expect(raise_rc == 0 && clear_rc == 0 && blocked_connections > 0, "the alarm was raised, blocked, cleared");
  s.expect(a->killed_by() == SIGKILL && killed_mid_alarm && held_at_kill > 0,
           "the subscriber was killed mid-alarm holding events");
  auto after = run_load(client, attempts, {.calls = 100, .concurrency = 10, .sleep_ms = 5});
  s.check(after, ledger::settle(ledger_path, {b->pid(), c->pid()}), {a_pid, b->pid(), c->pid()},
          {.all_ok = true, .label = "afterwards, "});
}
