// Endpoint types resolved at run time from a service's _describe endpoint, so
// the CLI can speak JSON to any service without its generated code.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>

#include <chrono>
#include <memory>
#include <string>

#include "tern/client.h"
#include "tern/envelope.pb.h"

namespace tern::cli {

class DynamicEndpoint {
 public:
  // Asks `service` for its description and builds the endpoint's types.
  static Result<std::unique_ptr<DynamicEndpoint>> resolve(Client& client, const std::string& service,
                                                          const std::string& endpoint,
                                                          std::chrono::milliseconds timeout);

  // A new, empty request or response message of the endpoint's types.
  std::unique_ptr<google::protobuf::Message> new_request() const;
  std::unique_ptr<google::protobuf::Message> new_response() const;
  // JSON (proto3 mapping) to a request; INVALID_ARGUMENT if it does not fit.
  Result<std::unique_ptr<google::protobuf::Message>> request_from_json(const std::string& json) const;

 private:
  DynamicEndpoint() = default;
  google::protobuf::DescriptorPool pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> factory_;
  const google::protobuf::Descriptor* in_ = nullptr;
  const google::protobuf::Descriptor* out_ = nullptr;
};

Result<v1::DescribeResponse> describe(Client& client, const std::string& service,
                                      std::chrono::milliseconds timeout);

std::string to_json(const google::protobuf::Message& m);

}  // namespace tern::cli
