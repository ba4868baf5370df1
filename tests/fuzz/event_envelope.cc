// libFuzzer: how a subscriber takes an event off the broker
// (events/subscriber.cc): the tern.v1.Event envelope in the body, the
// Context made from it with the attempt header and the verified publisher,
// and a typed subscription's parse of the event body (as
// Service::subscribe registers it). Subscriber::handle itself needs a broker
// link for its acks and retries, so its steps are followed here; the
// envelope, Context and count-header code are the platform's own.
//
// Input: three lines, "x-tern-attempt\nuser_id\nx-tern-on-behalf-of\n",
// then the body.
#include <cstdlib>

#include <google/protobuf/stubs/logging.h>

#include "probe.pb.h"
#include "tern/envelope.pb.h"
#include "tern/handler.h"
#include "transport/amqp/connection.h"

using namespace tern;
using namespace tern::detail;

namespace {

constexpr const char* kOwnUser = "api.fuzz";

std::string_view line(std::string_view* in) {
  const size_t eol = in->find('\n');
  std::string_view l = in->substr(0, eol);
  in->remove_prefix(eol == std::string_view::npos ? in->size() : eol + 1);
  return l;
}

}  // namespace

// protobuf logs every string field that is not UTF-8: noise at this rate.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const EventSubscription sub = [] {
    EventSubscription s;
    s.exchange = "tern.events";
    s.pattern = "probe.#";
    s.publishers = {"api.publisher"};
    s.invoke = [](Context& ctx, std::string_view body) -> Error {
      probe::Hop event;
      if (!event.ParseFromArray(body.data(), static_cast<int>(body.size())))
        return unparsable_request(probe::Hop::descriptor());
      if (ctx.expired()) return Error{Code::kDeadlineExceeded, "expired"};
      return ok();
    };
    return s;
  }();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Message m;
  m.headers.emplace_back("x-tern-attempt", line(&in));
  m.user_id = line(&in);
  m.headers.emplace_back(Message::kOnBehalfOf, line(&in));
  m.body = in;
  v1::Event event;
  if (!event.ParseFromString(m.body)) return 0;   // retried as "not a tern.v1.Event envelope"
  const uint32_t attempt = m.count_header("x-tern-attempt");
  if (attempt < 1) abort();
  Context ctx = Context::from_wire(to_unix_ms(Context::Clock::now() + std::chrono::seconds(30)), event.trace_id(),
                                   new_span_id(), event.span_id(), event.id(), event.source(),
                                   Context::Metadata(event.metadata().begin(), event.metadata().end()), attempt);
  ctx.set_caller(m.verified_user(kOwnUser));
  // Only the service's own user may name another publisher.
  if (m.user_id != kOwnUser && ctx.caller() != m.user_id) abort();
  if (ctx.attempt() != attempt || ctx.request_id() != event.id()) abort();
  ScopedCurrent current(&ctx);
  const bool accepted = std::find(sub.publishers.begin(), sub.publishers.end(), ctx.caller()) != sub.publishers.end();
  if (!accepted) return 0;   // dead-lettered unhandled
  Error err = sub.invoke(ctx, event.body());
  if (err.code == Code::kDeadlineExceeded) abort();   // 30 s from now cannot have passed
  return 0;
}
