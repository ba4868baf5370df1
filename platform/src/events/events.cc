#include "tern/events.h"

#include <cctype>

#include <google/protobuf/descriptor.h>

#include "core/current.h"

namespace tern {

std::string event_routing_key(const google::protobuf::Descriptor* type) {
  std::string key = type->file()->package();
  if (!key.empty()) key += '.';
  const std::string& name = type->name();
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (std::isupper(c)) {
      if (i > 0) key += '_';
      key += static_cast<char>(std::tolower(c));
    } else {
      key += static_cast<char>(c);
    }
  }
  return key;
}

Error publish(const Context& ctx, const google::protobuf::Message& event) {
  Transport* transport = detail::transport_for(ctx);
  if (transport == nullptr)
    return Error{Code::kFailedPrecondition,
                 "tern::publish outside a tern runtime: publish from a handler or inside Client::run"};
  const auto* type = event.GetDescriptor();
  return transport->publish(ctx, type->full_name(), event_routing_key(type), event.SerializeAsString());
}

namespace detail {

Error run_once_per_event(IdempotencyStore& store, const std::string& event_id,
                         const std::function<Error()>& handler) {
  const std::string key = "event\n" + event_id;
  switch (store.begin(key).state) {
    case IdempotencyStore::State::kDone:
      return ok();  // handled before: a duplicate
    case IdempotencyStore::State::kInProgress:
      return Error{Code::kUnavailable, "the same event is being handled right now"};
    case IdempotencyStore::State::kNew:
      break;
  }
  Error err;
  try {
    err = handler();
  } catch (...) {
    store.abandon(key);
    throw;
  }
  if (err.ok()) store.finish(key, {});
  else store.abandon(key);
  return err;
}

}  // namespace detail
}  // namespace tern
