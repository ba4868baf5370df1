#include "rpc/server/definition.h"

#include <algorithm>
#include <set>

namespace tern::detail {

bool TokenBucket::take() {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
  last_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

namespace {
void add_file(const google::protobuf::FileDescriptor* f, std::set<std::string>* seen,
              google::protobuf::FileDescriptorSet* set) {
  if (!seen->insert(f->name()).second) return;
  for (int i = 0; i < f->dependency_count(); ++i) add_file(f->dependency(i), seen, set);
  f->CopyTo(set->add_file());
}
}  // namespace

v1::DescribeResponse describe(const ServiceDefinition& def) {
  v1::DescribeResponse d;
  d.set_service(def.name);
  std::set<std::string> seen;
  for (const auto& [name, ep] : def.endpoints) {
    auto* e = d.add_endpoints();
    e->set_name(name);
    e->set_request_type(ep.request_type->full_name());
    e->set_response_type(ep.response_type->full_name());
    add_file(ep.request_type->file(), &seen, d.mutable_files());
    add_file(ep.response_type->file(), &seen, d.mutable_files());
  }
  for (const auto& r : def.routes) *d.add_routes() = r;
  return d;
}

}  // namespace tern::detail
