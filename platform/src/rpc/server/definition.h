// What a service is made of, fixed once it starts: its endpoints, rate
// limits, routes, filters and idempotency store. Shared, read-only, by the
// pipelines of all its threads.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "tern/envelope.pb.h"
#include "tern/filter.h"
#include "tern/handler.h"
#include "tern/idempotency.h"

namespace tern::detail {

// A token bucket, shared by the service's threads.
class TokenBucket {
 public:
  TokenBucket(double per_second, double burst) : rate_(per_second), burst_(burst), tokens_(burst) {}
  bool take();

 private:
  std::mutex mu_;
  const double rate_, burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

using Endpoints = std::map<std::string, Endpoint, std::less<>>;
using RateLimits = std::map<std::string, std::unique_ptr<TokenBucket>, std::less<>>;
// Per endpoint: the only broker users that may call it.
using AllowedCallers = std::map<std::string, std::set<std::string, std::less<>>, std::less<>>;

struct ServiceDefinition {
  std::string name;
  Endpoints endpoints;
  RateLimits limits;
  AllowedCallers allowed_callers;
  std::vector<v1::DescribeResponse::Route> routes;
  std::vector<ServerFilter> filters;        // the user's, around every request
  std::vector<ClientFilter> call_filters;   // the user's, around every call made from handlers
  std::shared_ptr<IdempotencyStore> idempotency = std::make_shared<MemoryIdempotencyStore>();
};

// The `_describe` answer: endpoints with their types, the descriptors of
// every file they need, and the HTTP routes.
v1::DescribeResponse describe(const ServiceDefinition& def);

}  // namespace tern::detail
