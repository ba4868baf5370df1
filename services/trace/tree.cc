#include "tree.h"

#include <algorithm>
#include <fmt/format.h>
#include <unordered_map>
#include <unordered_set>

namespace trace {

Tree build_tree(const std::vector<tern::v1::Span>& spans) {
  Tree tree;
  if (spans.empty()) return tree;
  std::unordered_map<std::string, const tern::v1::Span*> by_id;
  int64_t end = 0;
  tree.start_unix_us = spans.front().start_unix_us();
  for (const auto& s : spans) {
    by_id.emplace(s.span_id(), &s);
    tree.start_unix_us = std::min(tree.start_unix_us, s.start_unix_us());
    end = std::max(end, s.start_unix_us() + s.duration_us());
  }
  tree.duration_us = end - tree.start_unix_us;

  std::unordered_map<std::string, std::vector<const tern::v1::Span*>> children;
  std::vector<const tern::v1::Span*> roots;
  for (const auto& s : spans) {
    if (!s.parent_span_id().empty() && s.parent_span_id() != s.span_id() &&
        by_id.contains(s.parent_span_id()))
      children[s.parent_span_id()].push_back(&s);
    else
      roots.push_back(&s);
  }
  auto by_start = [](const tern::v1::Span* a, const tern::v1::Span* b) {
    if (a->start_unix_us() != b->start_unix_us()) return a->start_unix_us() < b->start_unix_us();
    return a->span_id() < b->span_id();
  };
  std::sort(roots.begin(), roots.end(), by_start);
  for (auto& [_, list] : children) std::sort(list.begin(), list.end(), by_start);

  std::unordered_set<const tern::v1::Span*> placed;
  auto place = [&](auto&& self, const tern::v1::Span* s, int depth) -> void {
    if (!placed.insert(s).second) return;
    tree.rows.push_back({s, depth, s->start_unix_us() - tree.start_unix_us});
    if (auto it = children.find(s->span_id()); it != children.end())
      for (const auto* c : it->second) self(self, c, depth + 1);
  };
  for (const auto* r : roots) place(place, r, 0);
  // Spans in a cycle of parents (no root above them): at depth 0, by start.
  if (placed.size() < spans.size()) {
    std::vector<const tern::v1::Span*> rest;
    for (const auto& s : spans)
      if (!placed.contains(&s)) rest.push_back(&s);
    std::sort(rest.begin(), rest.end(), by_start);
    for (const auto* s : rest) place(place, s, 0);
  }
  return tree;
}

std::string kind_name(tern::v1::Span::Kind kind) {
  if (kind == tern::v1::Span::KIND_UNSPECIFIED) return "-";
  const std::string& name = tern::v1::Span::Kind_Name(kind);
  return name.empty() ? std::to_string(static_cast<int>(kind)) : name;
}

std::string code_name(tern::v1::Code code) {
  const std::string& name = tern::v1::Code_Name(code);
  return name.empty() ? std::to_string(static_cast<int>(code)) : name;
}

std::string render_text(const std::string& trace_id, const Tree& tree) {
  std::string out = fmt::format("trace {}  {:.3f} ms  {} spans\n", trace_id,
                                static_cast<double>(tree.duration_us) / 1000.0, tree.rows.size());
  out += fmt::format("{:>10} {:>10}  {}\n", "start ms", "dur ms", "span");
  for (const auto& row : tree.rows) {
    const auto& s = *row.span;
    out += fmt::format("{:>10.3f} {:>10.3f}  {:{}}{} {} [{}] {}", row.offset_us / 1000.0,
                       s.duration_us() / 1000.0, "", row.depth * 2, kind_name(s.kind()), s.name(),
                       s.service(), code_name(s.code()));
    if (s.attempt() > 1) out += fmt::format(" attempt {}", s.attempt());
    if (!s.error().empty()) out += fmt::format(": {}", s.error());
    out += '\n';
  }
  return out;
}

}  // namespace trace
