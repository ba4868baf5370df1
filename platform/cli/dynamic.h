// Endpoint types resolved at run time from a service's _describe endpoint, so
// the CLI can speak JSON to any service without its generated code.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "tern/client.h"
#include "tern/described.h"

namespace tern::cli {

class DynamicEndpoint {
 public:
  // Asks `service` for its description and finds the endpoint's types.
  static Result<std::unique_ptr<DynamicEndpoint>> resolve(Client& client, const std::string& service,
                                                          const std::string& endpoint,
                                                          std::chrono::milliseconds timeout);

  // A new, empty response message of the endpoint's type.
  std::unique_ptr<google::protobuf::Message> new_response() const { return service_->make(types_.response); }
  // JSON (proto3 mapping) to a request; INVALID_ARGUMENT if it does not fit.
  Result<std::unique_ptr<google::protobuf::Message>> request_from_json(const std::string& json) const;

 private:
  std::shared_ptr<const DescribedService> service_;
  DescribedService::Endpoint types_;
};

Result<v1::DescribeResponse> describe(Client& client, const std::string& service,
                                      std::chrono::milliseconds timeout);

}  // namespace tern::cli
