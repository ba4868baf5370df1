// Identifiers: the random ids of traces, spans and requests (tern/context.h),
// and this process's instance id.
#pragma once

#include <string>

#include "tern/context.h"

namespace tern::detail {

// "<hostname>:<pid>": names this process in spans, _health and logs. The
// same string for every part of the process.
const std::string& instance_id();

}  // namespace tern::detail
