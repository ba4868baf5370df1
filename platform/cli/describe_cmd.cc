#include "describe_cmd.h"

#include <fmt/format.h>

#include <deque>
#include <set>

namespace tern::cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

std::string endpoint_line(const DescribedService& service,
                          const v1::DescribeResponse::Endpoint& e) {
  std::string out = fmt::format("{}  {} -> {}\n", e.name(), e.request_type(), e.response_type());
  for (const auto& r : service.description().routes())
    if (r.endpoint() == e.name()) out += fmt::format("  http: {} {}\n", r.method(), r.path());
  return out;
}

// Whether `type` is `outer` or nested in it (then outer's source shows it).
bool within(const Descriptor* type, const Descriptor* outer) {
  for (; type != nullptr; type = type->containing_type())
    if (type == outer) return true;
  return false;
}

// Every message type `type` refers to through its fields (and its nested
// types' fields) that its own source does not show.
void referenced(const Descriptor* type, const Descriptor* outer,
                std::deque<const Descriptor*>* out) {
  for (int i = 0; i < type->field_count(); ++i) {
    const Descriptor* m = type->field(i)->message_type();
    if (m != nullptr && !within(m, outer)) out->push_back(m);
  }
  for (int i = 0; i < type->nested_type_count(); ++i) referenced(type->nested_type(i), outer, out);
}

}  // namespace

std::string render_endpoints(const DescribedService& service) {
  std::string out;
  for (const auto& e : service.description().endpoints()) out += endpoint_line(service, e);
  return out;
}

Result<std::string> render_endpoint(const DescribedService& service, const std::string& endpoint) {
  auto types = service.endpoint(endpoint);
  if (!types.ok()) return types.error();
  std::string out;
  for (const auto& e : service.description().endpoints())
    if (e.name() == endpoint) out += endpoint_line(service, e);
  std::deque<const Descriptor*> todo{types->request, types->response};
  std::set<const Descriptor*> shown;
  while (!todo.empty()) {
    const Descriptor* type = todo.front();
    todo.pop_front();
    if (type == nullptr || !shown.insert(type).second) continue;
    const char* role = type == types->request    ? "request"
                       : type == types->response ? "response"
                                                 : "uses";
    out += fmt::format("\n// {}: {}\n{}", role, type->full_name(), type->DebugString());
    referenced(type, type, &todo);
  }
  return out;
}

}  // namespace tern::cli
