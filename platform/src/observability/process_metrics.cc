#include "observability/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "tern/metrics.h"

#ifndef TERN_VERSION
#define TERN_VERSION "unknown"
#endif

namespace tern::detail {
namespace {

// /proc/self/stat's fields after the command's closing parenthesis (which
// may hold spaces): fields[0] is the state, field N of proc(5) is fields[N - 3].
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> fields;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return fields;
  std::istringstream rest(line.substr(close + 1));
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

double stat_field(size_t proc5_number) {
  const auto f = stat_fields();
  return proc5_number >= 3 && proc5_number - 3 < f.size() ? std::stod(f[proc5_number - 3]) : 0;
}

double ticks() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

double open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;   // not the one opendir holds
}

}  // namespace

void register_process_metrics(std::string_view service) {
  auto& r = metrics::registry();
  r.gauge("tern_build_info", "tern's version, per service in this process (always 1)",
          {{"version", TERN_VERSION}, {"service", std::string(service)}})
      .set(1);
  static std::once_flag once;
  std::call_once(once, [&r] {
    r.counter_fn("process_cpu_seconds_total", "User and system CPU time spent, in seconds", {},
                 [] { return (stat_field(14) + stat_field(15)) / ticks(); });
    r.gauge_fn("process_resident_memory_bytes", "Resident memory, in bytes", {},
               [] { return stat_field(24) * static_cast<double>(sysconf(_SC_PAGESIZE)); });
    r.gauge_fn("process_virtual_memory_bytes", "Virtual memory, in bytes", {}, [] { return stat_field(23); });
    r.gauge_fn("process_open_fds", "Open file descriptors", {}, open_fds);
    r.gauge_fn("process_max_fds", "The limit on open file descriptors", {}, [] {
      rlimit l{};
      return getrlimit(RLIMIT_NOFILE, &l) == 0 ? static_cast<double>(l.rlim_cur) : 0.0;
    });
    r.gauge_fn("process_threads", "OS threads", {}, [] { return stat_field(20); });
    const double started = boot_time() + stat_field(22) / ticks();
    r.gauge_fn("process_start_time_seconds", "When the process started, in seconds since the Unix epoch", {},
               [started] { return started; });
  });
}

}  // namespace tern::detail
