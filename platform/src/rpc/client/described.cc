#include "tern/described.h"

#include <fmt/format.h>

#include "tern/call.h"

namespace tern {

Result<std::shared_ptr<const DescribedService>> DescribedService::build(v1::DescribeResponse description) {
  std::shared_ptr<DescribedService> out(new DescribedService());
  out->description_ = std::move(description);
  const std::string& service = out->description_.service();
  for (const auto& file : out->description_.files().file())
    if (out->pool_.BuildFile(file) == nullptr)
      return Error{Code::kInternal, fmt::format("{} described an invalid file {}", service, file.name())};
  out->factory_ = std::make_unique<google::protobuf::DynamicMessageFactory>(&out->pool_);
  for (const auto& e : out->description_.endpoints()) {
    Endpoint types{out->pool_.FindMessageTypeByName(e.request_type()),
                   out->pool_.FindMessageTypeByName(e.response_type())};
    if (types.request == nullptr || types.response == nullptr)
      return Error{Code::kInternal, fmt::format("{} described {} without its types", service, e.name())};
    out->endpoints_[e.name()] = types;
  }
  return std::shared_ptr<const DescribedService>(std::move(out));
}

Result<std::shared_ptr<const DescribedService>> DescribedService::fetch(const Context& ctx,
                                                                        std::string_view service,
                                                                        std::chrono::milliseconds timeout) {
  CallOptions opts;
  opts.timeout = timeout;
  auto d = call<v1::DescribeResponse>(ctx, service, "_describe", v1::DescribeRequest{}, opts);
  if (!d.ok()) return std::move(d.error());
  return build(std::move(*d));
}

Result<DescribedService::Endpoint> DescribedService::endpoint(std::string_view name) const {
  auto it = endpoints_.find(name);
  if (it == endpoints_.end())
    return Error{Code::kUnimplemented, fmt::format("{} has no endpoint '{}'", description_.service(), name)};
  return it->second;
}

std::unique_ptr<google::protobuf::Message> DescribedService::make(const google::protobuf::Descriptor* type) const {
  return std::unique_ptr<google::protobuf::Message>(factory_->GetPrototype(type)->New());
}

}  // namespace tern
