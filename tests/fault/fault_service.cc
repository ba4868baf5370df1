// The service the fault suite and the cluster test break. `work` treats the
// request's payload as the call's key. With $FAULT_LEDGER set it appends to
// that file, opened for each line (O_APPEND, one write: the line is in the
// file once write() returns, whatever happens to this process next):
//
//   begin KEY PID ATTEMPT    when the handler starts
//   effect KEY PID ATTEMPT   when it has done its work (slept sleep_ms)
//
// ATTEMPT is the caller's attempt number (ctx.attempt()): a broker
// redelivery has the attempt number of the delivery it repeats. A payload
// starting with "crash" aborts after its begin line (a poison request). An
// empty payload leaves no line.
//
// $FAULT_BREAK breaks the service on purpose, to show the suite's checkers
// fail (every 5th request of a process): skip-effect answers ok without its
// effect line, double-effect writes it twice, effect-on-refusal writes it and
// answers RESOURCE_EXHAUSTED as if the request had been refused.
//
// With $FAULT_EVENT_LOG set it also subscribes to probe.hop events and
// appends each one's `service` field there before acking it. With
// $FAULT_EVENT_LEDGER, it appends `begin NAME PID` when an event's handler
// starts and `effect NAME PID` when it is done (NAME: the `service` field);
// a NAME starting with "crash" aborts after its begin line (a poison event),
// and $FAULT_EVENT_SLEEP_MS makes each handler take that long (so events
// can pile up in the queue). With $FAULT_EVENT_FAIL too, the first attempt
// at each event whose field ends in an even hex digit fails instead (the
// retry path), after appending "fail FIELD PID" to the event log.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/fiber/operations.hpp>
#include <cstdlib>
#include <string>

#include "probe.pb.h"
#include "tern/tern.h"

namespace {

bool append(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  return close(fd) == 0 && written;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string ledger = env("FAULT_LEDGER");
  const std::string broken = env("FAULT_BREAK");
  if (!broken.empty() && broken != "skip-effect" && broken != "double-effect" &&
      broken != "effect-on-refusal") {
    std::fprintf(stderr, "FAULT_BREAK: unknown break '%s'\n", broken.c_str());
    return 2;
  }
  const std::string pid = std::to_string(getpid());
  const std::string name = env("FAULT_SERVICE");
  tern::Service svc{name.empty() ? "test.fault" : name};
  std::atomic<uint64_t> requests{0};  // this process's, for FAULT_BREAK
  svc.handle("work", [&](tern::Context& ctx, const probe::ProbeRequest& req)
                         -> tern::Result<probe::ProbeResponse> {
    const std::string& key = req.payload();
    const bool record = !ledger.empty() && !key.empty();
    const std::string where = " " + key + " " + pid + " " + std::to_string(ctx.attempt()) + "\n";
    const tern::Error no_ledger{tern::Code::kInternal, "cannot write the ledger"};
    if (record && !append(ledger, "begin" + where)) return no_ledger;
    if (key.starts_with("crash")) std::abort();  // a poison request
    boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    const bool break_this = !broken.empty() && ++requests % 5 == 0;
    int effects = 1;
    if (break_this && broken == "skip-effect") effects = 0;
    if (break_this && broken == "double-effect") effects = 2;
    for (int i = 0; i < effects && record; ++i)
      if (!append(ledger, "effect" + where)) return no_ledger;
    if (break_this && broken == "effect-on-refusal")
      return tern::Error{tern::Code::kResourceExhausted, "FAULT_BREAK: refused after its effect"};
    probe::ProbeResponse r;
    r.set_instance(pid);
    return r;
  });
  const std::string event_log = env("FAULT_EVENT_LOG"), event_ledger = env("FAULT_EVENT_LEDGER");
  if (!event_log.empty() || !event_ledger.empty()) {
    const int sleep_ms = std::atoi(env("FAULT_EVENT_SLEEP_MS").c_str());
    const bool fail = !env("FAULT_EVENT_FAIL").empty();
    svc.subscribe<probe::Hop>("probe.hop", [=](tern::Context& ctx, const probe::Hop& hop) {
      const std::string& key = hop.service();
      const std::string where = " " + key + " " + pid + "\n";
      const tern::Error no_log{tern::Code::kInternal, "cannot log the event"};  // retried
      if (!event_ledger.empty() && !append(event_ledger, "begin" + where)) return no_log;
      if (key.starts_with("crash")) std::abort();  // a poison event
      if (sleep_ms > 0) boost::this_fiber::sleep_for(std::chrono::milliseconds(sleep_ms));
      if (fail && ctx.attempt() == 1 && !key.empty() &&
          std::string_view("02468ace").find(key.back()) != std::string_view::npos) {
        if (!event_log.empty()) append(event_log, "fail" + where);
        return tern::Error{tern::Code::kInternal, "FAULT_EVENT_FAIL: the first attempt fails"};
      }
      if (!event_log.empty() && !append(event_log, key + "\n")) return no_log;
      if (!event_ledger.empty() && !append(event_ledger, "effect" + where)) return no_log;
      return tern::ok();
    });
  }
  return svc.run(argc, argv);
}
