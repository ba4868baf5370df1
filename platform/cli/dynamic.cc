#include "dynamic.h"

#include "tern/json.h"

namespace tern::cli {

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
  auto described = client.run([&] {
    return DescribedService::fetch(Context::with_timeout(timeout), service, timeout);
  });
  if (!described.ok()) return std::move(described.error());
  auto types = (*described)->endpoint(endpoint);
  if (!types.ok()) return std::move(types.error());
  auto out = std::make_unique<DynamicEndpoint>();
  out->service_ = std::move(*described);
  out->types_ = *types;
  return out;
}

Result<std::unique_ptr<google::protobuf::Message>> DynamicEndpoint::request_from_json(
    const std::string& json) const {
  auto req = service_->make(types_.request);
  Error e = json::from_json(json, req.get());
  if (!e.ok()) return e;
  return req;
}

}  // namespace tern::cli
