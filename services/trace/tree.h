// A trace's spans as a call tree: for `tern trace` and the waterfall page.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tern/trace.pb.h"

namespace trace {

struct TreeRow {
  const tern::v1::Span* span = nullptr;  // points into the spans given to build_tree
  int depth = 0;                         // 0 for a root
  int64_t offset_us = 0;                 // start, from the trace's start
};

struct Tree {
  std::vector<TreeRow> rows;  // depth first: each span right after its parent
  int64_t start_unix_us = 0;  // the earliest start
  int64_t duration_us = 0;    // to the latest end
};

// Orders `spans` as a tree: a span whose parent is in the trace comes under
// it, the others (the root, or orphans whose parent was dropped or not yet
// arrived) at depth 0; siblings by start, then span id. Every span appears
// once. The Tree points into `spans`: keep it alive and unchanged.
Tree build_tree(const std::vector<tern::v1::Span>& spans);

// "CLIENT", "SERVER", ... and "OK", "NOT_FOUND", ...
std::string kind_name(tern::v1::Span::Kind kind);
std::string code_name(tern::v1::Code code);

// The tree as `tern trace` prints it: a header, then a line per span with
// its start offset and duration in ms, indented by depth, kind, name,
// service and code (and the error message, if any).
std::string render_text(const std::string& trace_id, const Tree& tree);

}  // namespace trace
