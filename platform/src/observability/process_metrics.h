// The process's own metrics, read from /proc when /metrics is rendered, with
// the names Prometheus' client libraries use (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, ...), and
// tern_build_info{version,service} 1.
#pragma once

#include <string_view>

namespace tern::detail {

// Registers them in metrics::registry(), once per process; later calls only
// add the service's build_info series.
void register_process_metrics(std::string_view service);

}  // namespace tern::detail
