// The service the fault suite and the cluster test break: `work` sleeps
// sleep_ms, appends the request's idempotency key (carried in payload) to
// $FAULT_RUN_LOG once the handler has finished its work, and answers. With
// $FAULT_EVENT_LOG set it also subscribes to probe.hop events and appends
// each one's `service` field there before acking it.
#include <fcntl.h>
#include <unistd.h>

#include <boost/fiber/operations.hpp>
#include <cstdlib>
#include <string>

#include "probe.pb.h"
#include "tern/tern.h"

int main(int argc, char** argv) {
  const char* log_path = std::getenv("FAULT_RUN_LOG");
  int log_fd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
  const char* name = std::getenv("FAULT_SERVICE");
  tern::Service svc{name ? name : "test.fault"};
  svc.handle("work", [log_fd](tern::Context&, const probe::ProbeRequest& req)
                         -> tern::Result<probe::ProbeResponse> {
    if (req.payload() == "crash") std::abort();  // a poison request
    boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    if (log_fd >= 0) {
      std::string line = req.payload() + "\n";
      [[maybe_unused]] ssize_t n = write(log_fd, line.data(), line.size());  // one atomic append
    }
    probe::ProbeResponse r;
    r.set_instance(std::to_string(getpid()));
    return r;
  });
  if (const char* events = std::getenv("FAULT_EVENT_LOG")) {
    int events_fd = open(events, O_WRONLY | O_CREAT | O_APPEND, 0644);
    svc.subscribe<probe::Hop>("probe.hop", [events_fd](tern::Context&, const probe::Hop& hop) {
      std::string line = hop.service() + "\n";
      if (write(events_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return tern::Error{tern::Code::kInternal, "cannot log the event"};  // retried
      return tern::ok();
    });
  }
  return svc.run(argc, argv);
}
