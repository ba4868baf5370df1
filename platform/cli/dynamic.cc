#include "dynamic.h"

#include <google/protobuf/util/json_util.h>

#include <fmt/format.h>

namespace tern::cli {

namespace pb = google::protobuf;

Result<v1::DescribeResponse> describe(Client& client, const std::string& service,
                                      std::chrono::milliseconds timeout) {
  auto ctx = Context::with_timeout(timeout);
  return client.call<v1::DescribeResponse>(ctx, service, "_describe", v1::DescribeRequest{},
                                           CallOptions{.timeout = timeout});
}

Result<std::unique_ptr<DynamicEndpoint>> DynamicEndpoint::resolve(Client& client,
                                                                  const std::string& service,
                                                                  const std::string& endpoint,
                                                                  std::chrono::milliseconds timeout) {
  auto d = describe(client, service, timeout);
  if (!d.ok()) return d.error();
  const v1::DescribeResponse::Endpoint* ep = nullptr;
  for (const auto& e : d->endpoints())
    if (e.name() == endpoint) ep = &e;
  if (ep == nullptr)
    return Error{Code::kUnimplemented, fmt::format("{} has no endpoint '{}'", service, endpoint)};

  std::unique_ptr<DynamicEndpoint> out(new DynamicEndpoint());
  for (const auto& file : d->files().file()) {
    if (out->pool_.BuildFile(file) == nullptr)
      return Error{Code::kInternal, fmt::format("{} described an invalid file {}", service, file.name())};
  }
  out->in_ = out->pool_.FindMessageTypeByName(ep->request_type());
  out->out_ = out->pool_.FindMessageTypeByName(ep->response_type());
  if (out->in_ == nullptr || out->out_ == nullptr)
    return Error{Code::kInternal, "the description lacks the endpoint's types"};
  out->factory_ = std::make_unique<pb::DynamicMessageFactory>(&out->pool_);
  return out;
}

std::unique_ptr<pb::Message> DynamicEndpoint::new_request() const {
  return std::unique_ptr<pb::Message>(factory_->GetPrototype(in_)->New());
}

std::unique_ptr<pb::Message> DynamicEndpoint::new_response() const {
  return std::unique_ptr<pb::Message>(factory_->GetPrototype(out_)->New());
}

Result<std::unique_ptr<pb::Message>> DynamicEndpoint::request_from_json(const std::string& json) const {
  auto req = new_request();
  auto status = pb::util::JsonStringToMessage(json, req.get());
  if (!status.ok())
    return Error{Code::kInvalidArgument, fmt::format("the JSON is not a {}: {}", in_->full_name(),
                                                     std::string(status.message()))};
  return req;
}

std::string to_json(const pb::Message& m) {
  std::string out;
  (void)pb::util::MessageToJsonString(m, &out);
  return out;
}

}  // namespace tern::cli
