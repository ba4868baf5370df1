#include "rpc/server/pipeline.h"

#include <fmt/format.h>

#include "core/envelope_codec.h"
#include "core/utf8.h"
#include "core/wire.h"
#include "rpc/server/server_filters.h"
#include "runtime/reactor.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"

namespace tern::detail {

ServerPipeline::ServerPipeline(const ServiceDefinition& def, Replay* replay, Responder& responder,
                               Cancellations& cancellations, SpanBuffer& spans, Transport& transport,
                               size_t max_message_bytes)
    : def_(def),
      responder_(responder),
      cancellations_(cancellations),
      transport_(transport),
      max_message_bytes_(max_message_bytes),
      endpoint_([this](Context& ctx, const IncomingRequest& req) { return invoke(ctx, req); }) {
  chain_.push_back(server_filters::observe(def_, spans));
  chain_.push_back(server_filters::deadline(def_));
  chain_.push_back(server_filters::known_endpoint(def_));
  chain_.push_back(server_filters::allowed_callers(def_));
  chain_.push_back(server_filters::rate_limit(def_));
  // The user's filters are shared by every thread: called, not copied.
  for (const ServerFilter& f : def_.filters)
    chain_.push_back([&f](Context& ctx, const IncomingRequest& req, const ServerNext& next) {
      return f(ctx, req, next);
    });
  chain_.push_back(server_filters::replay(replay));
}

void ServerPipeline::handle(Message&& m) {
  if (m.body_size > max_message_bytes_) {
    // Not read into memory (LinkOptions::max_body_bytes), so there is
    // nothing to handle, count or keep: only an answer to give.
    log::warn("{}: a request of {} bytes is over the {} byte limit", def_.name, m.body_size, max_message_bytes_);
    tern::v1::Response resp = response_for(m.correlation_id);
    to_wire(Error{Code::kInvalidArgument, fmt::format("request is {} bytes, over {}'s {} byte limit", m.body_size,
                                                      def_.name, max_message_bytes_)},
            resp.mutable_error());
    if (Responder::answerable(m.reply_to)) responder_.reply_and_ack(m, resp.SerializeAsString());
    else responder_.ack(m);
    return;
  }
  responder_.await_recount(m.correlation_id);
  if (responder_.count_redelivery(m)) return;
  if (m.reply_to.empty()) {
    log::warn("{}: a message with no reply_to (correlation_id '{}') went to {}", def_.name, m.correlation_id,
              responder_.dead_letter_queue());
    responder_.settle(responder_.dead_letter(m, "no reply_to: nobody to answer"), m);
    return;
  }
  if (!Responder::answerable(m.reply_to)) {
    log::warn("{}: a request whose reply_to '{}' names a queue, not a caller's reply queue, went to {}", def_.name,
              m.reply_to, responder_.dead_letter_queue());
    responder_.settle(responder_.dead_letter(m, "reply_to is not a caller's reply queue (amq.rabbitmq.reply-to or "
                                                "amq.gen-*): no reply is published into a named queue"),
                      m);
    return;
  }
  Result<std::string> r = run(m);
  if (!r.ok() && r.error().local.dead_letter) {
    // Not a tern request, or a body of the wrong type: keep it for
    // inspection, answer, never requeue.
    log::warn("{}: {}; the message went to {}", def_.name, r.error().message, responder_.dead_letter_queue());
    if (responder_.dead_letter(m, r.error().message) == Confirms::Copy::kUnknown) {
      responder_.ack_if(false, m);   // answered when it comes again
      return;
    }
  }
  if (r.ok() && r->size() > max_message_bytes_) {
    log::error("{}: a reply of {} bytes is over the {} byte limit", def_.name, r->size(), max_message_bytes_);
    r = Error{Code::kInternal,
              fmt::format("the reply is {} bytes, over the {} byte limit", r->size(), max_message_bytes_)};
  }
  if (r.ok() && utf8::valid(m.correlation_id)) {
    // The common answer, written into this thread's buffer (publish copies
    // it out before anything else runs here).
    envelope::encode_response(m.correlation_id, *r, &reply_);
    responder_.reply_and_ack(m, reply_);
    if (reply_.capacity() > kKeptReplyBytes) std::string().swap(reply_);
    return;
  }
  tern::v1::Response resp = response_for(m.correlation_id);
  if (r.ok()) resp.set_body(std::move(*r));
  else to_wire(r.error(), resp.mutable_error());
  responder_.reply_and_ack(m, resp.SerializeAsString());
}

Result<std::string> ServerPipeline::run(const Message& m) {
  // Read in place: the view points into m.body, which outlives the call.
  envelope::RequestView req;
  if (!envelope::parse_request(m.body, &req))
    return Error{Code::kInvalidArgument, "message body is not a tern.v1.Request envelope"}
        .with_param("envelope", "invalid")
        .with_local({.dead_letter = true});
  if (req.deadline_unix_ms <= 0) return Error{Code::kInvalidArgument, "Request.deadline_unix_ms is required"};
  Context ctx = request_context(req, m.correlation_id);
  ctx.set_transport(&transport_);
  ctx.set_caller(responder_.verified_caller(m));
  ScopedCurrent current(&ctx);
  const Reactor::Holding holding("endpoint", req.endpoint, ctx.trace_id());
  // The caller's cancel notice, if it gives up, cancels ctx meanwhile.
  const std::string& request_id = ctx.request_id();
  Cancellations::Scope tracked(cancellations_, request_id, &ctx);
  IncomingRequest in;
  in.service = def_.name;
  in.endpoint = req.endpoint;
  in.body = req.body;
  in.idempotency_key = req.idempotency_key;
  return run_chain(chain_, endpoint_, ctx, in);
}

Result<std::string> ServerPipeline::invoke(Context& ctx, const IncomingRequest& req) {
  auto it = def_.endpoints.find(req.endpoint);
  if (it == def_.endpoints.end())
    return Error{Code::kUnimplemented, fmt::format("{} has no endpoint '{}'", def_.name, req.endpoint)};
  const Endpoint& ep = it->second;
  try {
    std::string out;
    Error err = ep.invoke(ctx, req.body, &out);
    if (!err.ok()) return err;
    return out;
  } catch (const std::exception& e) {
    log::error("{}/{} threw: {}", def_.name, req.endpoint, e.what());
    return Error{Code::kInternal, fmt::format("{}/{} failed: {}", def_.name, req.endpoint, e.what())};
  } catch (...) {
    log::error("{}/{} threw a non-exception", def_.name, req.endpoint);
    return Error{Code::kInternal, fmt::format("{}/{} failed", def_.name, req.endpoint)};
  }
}

}  // namespace tern::detail
