// The gateway's routing: which service an HTTP path goes to (the route
// table), and which endpoint of that service (the routes it describes).
// Plain logic, no broker: unit-tested in router_test.cc.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tern/envelope.pb.h"
#include "tern/error.h"

namespace gateway {

// Where a path goes by the route table.
struct Target {
  std::string service;     // "api.webhook"
  std::string rest;        // the path past the prefix, at least "/"
  bool listed = false;     // from an explicit line, not the /{name} rule
  std::string prefix;      // the path's part before rest: "/webhooks", "" for "/"
};

class RouteTable {
 public:
  // Lines "PREFIX SERVICE"; '#' starts a comment. "/{name} api.{name}" is
  // the rule for paths no other line matches. Throws std::invalid_argument
  // with the line number on a malformed line.
  static RouteTable parse(std::string_view text);
  static RouteTable load(const std::string& path);   // throws std::runtime_error

  std::optional<Target> resolve(std::string_view path) const;
  size_t size() const { return prefixes_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> prefixes_;   // longest first
  std::string fallback_;    // "api.{name}", or empty
};

// A service's HTTP routes, as its _describe lists them.
class EndpointRoutes {
 public:
  explicit EndpointRoutes(const google::protobuf::RepeatedPtrField<tern::v1::DescribeResponse::Route>& routes);

  struct Match {
    std::string endpoint;
    std::map<std::string, std::string> params;   // ":id" segments by name
    std::string route;                           // the route's own path: "/:id"
  };
  // The route for method and path; NOT_FOUND if no route has this path,
  // UNIMPLEMENTED (405) with param "allow" if only other methods do.
  tern::Result<Match> match(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    std::string endpoint;
  };
  std::vector<Route> routes_;
};

// "/a/b/" -> {"a", "b"}
std::vector<std::string> split_path(std::string_view path);

}  // namespace gateway
