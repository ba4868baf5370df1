// The collector's web pages: server-rendered HTML with inline CSS, no
// scripts and no external assets. Every text from a span is escaped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tern/trace.pb.h"
#include "trace.pb.h"

namespace trace {

// & < > " ' as entities: safe in element text and quoted attributes.
std::string html_escape(std::string_view s);

// GET /: the slowest and the failed recent traces, each linking to its
// waterfall, and the newest.
std::string render_index(const RecentResponse& slowest, const RecentResponse& failed,
                         const RecentResponse& newest);

// GET /trace/<id>: one row per span (tr class "span", id "span-<span id>"),
// indented by depth, with a bar placed by its start offset and sized by its
// duration relative to the whole trace; failed spans in red.
std::string render_waterfall(std::string_view trace_id, const std::vector<tern::v1::Span>& spans);

// A page saying `message`, for 404s.
std::string render_message(std::string_view title, std::string_view message);

}  // namespace trace
