#include "router.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace gateway {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    if (slash != 0) out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

RouteTable RouteTable::parse(std::string_view text) {
  RouteTable table;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = line.substr(0, line.find('#'));
    std::istringstream fields(line);
    std::string prefix, service, extra;
    if (!(fields >> prefix)) continue;
    if (!(fields >> service) || (fields >> extra) || prefix.front() != '/')
      throw std::invalid_argument(fmt::format("route table line {}: want 'PREFIX SERVICE', got '{}'", number, line));
    if (prefix == "/{name}") {
      if (service.find("{name}") == std::string::npos)
        throw std::invalid_argument(fmt::format("route table line {}: /{{name}} needs a service with {{name}}", number));
      table.fallback_ = service;
      continue;
    }
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
    table.prefixes_.emplace_back(prefix, service);
  }
  std::stable_sort(table.prefixes_.begin(), table.prefixes_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return table;
}

RouteTable RouteTable::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read the route table {}", path));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse(text.str());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(fmt::format("{}: {}", path, e.what()));
  }
}

std::optional<Target> RouteTable::resolve(std::string_view path) const {
  for (const auto& [prefix, service] : prefixes_) {
    bool whole = prefix == "/" || path == prefix ||
                 (path.starts_with(prefix) && path.size() > prefix.size() && path[prefix.size()] == '/');
    if (!whole) continue;
    std::string rest(prefix == "/" ? path : path.substr(prefix.size()));
    if (rest.empty()) rest = "/";
    return Target{service, std::move(rest), true, prefix == "/" ? std::string() : prefix};
  }
  if (fallback_.empty()) return std::nullopt;
  std::vector<std::string> segments = split_path(path);
  if (segments.empty()) return std::nullopt;
  const std::string& name = segments.front();
  // Service names are plain words: nothing that could reach another queue.
  bool plain = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  if (!plain) return std::nullopt;
  std::string service = fallback_;
  service.replace(service.find("{name}"), 6, name);
  // The rest starts where the name ends: after any slashes before it.
  std::string rest(path.substr(path.find_first_not_of('/') + name.size()));
  if (rest.empty()) rest = "/";
  return Target{std::move(service), std::move(rest), false, "/" + name};
}

EndpointRoutes::EndpointRoutes(
    const google::protobuf::RepeatedPtrField<tern::v1::DescribeResponse::Route>& routes) {
  for (const auto& r : routes) routes_.push_back({r.method(), split_path(r.path()), r.endpoint()});
}

tern::Result<EndpointRoutes::Match> EndpointRoutes::match(std::string_view method,
                                                          std::string_view path) const {
  const std::vector<std::string> segments = split_path(path);
  std::string allow;
  // Literal segments beat parameters: the best route has the most literals.
  const Route* best = nullptr;
  int best_literals = -1;
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    int literals = 0;
    bool fits = true;
    for (size_t i = 0; i < segments.size() && fits; ++i) {
      if (r.segments[i].starts_with(':')) continue;
      fits = r.segments[i] == segments[i];
      ++literals;
    }
    if (!fits) continue;
    if (r.method != method) {
      if (allow.find(r.method) == std::string::npos) allow += allow.empty() ? r.method : ", " + r.method;
      continue;
    }
    if (literals > best_literals) {
      best = &r;
      best_literals = literals;
    }
  }
  if (best == nullptr) {
    if (!allow.empty())
      return tern::Error{tern::Code::kUnimplemented, fmt::format("{} is not allowed here", method)}
          .with_param("allow", allow)
          .with_local({.allow = allow});
    return tern::Error{tern::Code::kNotFound, "no such route"};
  }
  Match m{best->endpoint, {}, {}};
  for (const std::string& segment : best->segments) m.route += "/" + segment;
  if (m.route.empty()) m.route = "/";
  for (size_t i = 0; i < segments.size(); ++i)
    if (best->segments[i].starts_with(':')) m.params[best->segments[i].substr(1)] = segments[i];
  return m;
}

}  // namespace gateway
