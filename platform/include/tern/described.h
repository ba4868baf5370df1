// A service's _describe answer with its descriptors built, so that code
// without the service's generated classes (the gateway, the tern CLI) can
// make its request and response messages and speak JSON to it.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>

#include "tern/context.h"
#include "tern/envelope.pb.h"
#include "tern/error.h"

namespace tern {

// Immutable once built; safe to share between threads.
class DescribedService {
 public:
  struct Endpoint {
    const google::protobuf::Descriptor* request = nullptr;
    const google::protobuf::Descriptor* response = nullptr;
  };

  // Builds the description's files into a pool of its own. INTERNAL if the
  // files do not build.
  static Result<std::shared_ptr<const DescribedService>> build(v1::DescribeResponse description);
  // Calls `service`'s _describe (from a tern fiber) and builds the answer.
  static Result<std::shared_ptr<const DescribedService>> fetch(const Context& ctx, std::string_view service,
                                                               std::chrono::milliseconds timeout);

  const v1::DescribeResponse& description() const { return description_; }
  // The endpoint's types; UNIMPLEMENTED if the service has no such endpoint.
  Result<Endpoint> endpoint(std::string_view name) const;
  // A new, empty message of one of this service's types.
  std::unique_ptr<google::protobuf::Message> make(const google::protobuf::Descriptor* type) const;

 private:
  DescribedService() = default;
  v1::DescribeResponse description_;
  google::protobuf::DescriptorPool pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> factory_;
  std::map<std::string, Endpoint, std::less<>> endpoints_;
};

}  // namespace tern
