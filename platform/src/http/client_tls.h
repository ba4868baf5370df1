// The TLS client contexts of http::fetch: one per CA file, made on first
// use and shared by every fetch that names it.
#pragma once

#include <memory>
#include <string>

#include "core/tls.h"
#include "tern/error.h"

namespace tern::detail {

// The context that trusts the CAs of `ca_file` (PEM), or the system's store
// when it is empty, verifying peers (TLS 1.2 or later). Thread-safe. Made
// again when the file's modification time or size changes, so a replaced
// CA file takes effect without a restart. FAILED_PRECONDITION naming the
// file if it cannot be loaded.
Result<std::shared_ptr<tls::Context>> client_tls_context(const std::string& ca_file);

}  // namespace tern::detail
