// libFuzzer: JSON transcoding as the gateway and the CLI do it through
// `_describe` (core/json.cc, rpc/client/described.cc): a service's
// description (rpc/server/definition.cc, describe()) built into a
// DescribedService, fuzzed JSON parsed into a dynamic message of its request
// type, printed back, and parsed again, which must give the same message.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cstdlib>

#include "probe.pb.h"
#include "rpc/server/definition.h"
#include "tern/described.h"
#include "tern/json.h"

namespace tern {
// DescribedService::fetch calls _describe over the broker: not reached here.
Error call_message(const Context&, std::string_view, std::string_view, const google::protobuf::MessageLite&,
                   google::protobuf::MessageLite*, const CallOptions&) {
  abort();
}
}  // namespace tern

// protobuf logs every string field that is not UTF-8: noise at this rate.
namespace {

// The message's bytes, map entries in key order: equal bytes, equal
// messages (NaN included, which MessageDifferencer never finds equal).
std::string canonical(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<const tern::DescribedService> described = [] {
    tern::detail::ServiceDefinition def;
    def.name = "api.fuzz";
    tern::detail::Endpoint ep;
    ep.request_type = probe::JsonProbe::descriptor();
    ep.response_type = probe::ProbeResponse::descriptor();
    def.endpoints.emplace("probe", std::move(ep));
    auto built = tern::DescribedService::build(tern::detail::describe(def));
    if (!built.ok()) abort();
    return *built;
  }();
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  // The request type, or the response type for JSON that starts with a
  // newline (JSON either way).
  auto types = described->endpoint("probe");
  if (!types.ok()) abort();
  const auto* type = json.starts_with('\n') ? types->response : types->request;
  std::unique_ptr<google::protobuf::Message> m = described->make(type);
  if (!tern::json::from_json(json, m.get()).ok()) return 0;
  const std::string printed = tern::json::to_json(*m);
  if (!tern::json::valid_utf8(printed)) abort();
  std::unique_ptr<google::protobuf::Message> again = described->make(type);
  tern::Error err = tern::json::from_json(printed, again.get());
  if (!err.ok()) {
    fprintf(stderr, "to_json printed what from_json refuses: %s\n%s\n", printed.c_str(), err.message.c_str());
    abort();
  }
  if (canonical(*m) != canonical(*again)) {
    fprintf(stderr, "a JSON round trip changed the message: %s\n", printed.c_str());
    abort();
  }
  return 0;
}
