// libFuzzer: how a server takes a request off the broker
// (rpc/server/pipeline.cc): the AMQP properties it reads (reply_to,
// correlation_id, the verified user and its on-behalf-of header), the
// tern.v1.Request envelope in the body, the Context made from it, the
// platform's server filters and a typed endpoint, then the
// tern.v1.Response it answers with, decoded as a caller would.
// ServerPipeline itself needs a broker link for its answers (Responder), so
// its run() is followed here step by step; the filters, the envelope, the
// Context and the wire conversions are the platform's own code.
//
// Input: three lines, "reply_to\ncorrelation_id\nuser_id\n", then the body.
#include <cstdlib>
#include <map>

#include <google/protobuf/stubs/logging.h>

#include "core/envelope_codec.h"
#include "core/utf8.h"
#include "core/wire.h"
#include "probe.pb.h"
#include "observability/span_buffer.h"
#include "rpc/server/definition.h"
#include "rpc/server/replay.h"
#include "rpc/server/responder.h"
#include "rpc/server/server_filters.h"
#include "tern/envelope.pb.h"

using namespace tern;
using namespace tern::detail;

namespace {

constexpr const char* kOwnUser = "api.fuzz";

// A service as Service::handle would register it: "echo" open to all,
// "private" to one caller, "limited" behind a token bucket.
const ServiceDefinition& definition() {
  static ServiceDefinition* def = [] {
    auto* d = new ServiceDefinition;
    d->name = "api.fuzz";
    for (const char* name : {"echo", "private", "limited"}) {
      Endpoint ep;
      ep.request_type = probe::ProbeRequest::descriptor();
      ep.response_type = probe::ProbeResponse::descriptor();
      ep.invoke = [](Context& ctx, std::string_view body, std::string* out) -> Error {
        probe::ProbeRequest req;
        if (!req.ParseFromArray(body.data(), static_cast<int>(body.size())))
          return unparsable_request(probe::ProbeRequest::descriptor());
        if (req.fail()) return Error{Code::kFailedPrecondition, "asked to fail"}.with_param("caller", ctx.caller());
        probe::ProbeResponse resp;
        resp.set_payload(req.payload());
        auto* hop = resp.add_hops();
        hop->set_trace_id(ctx.trace_id());
        hop->set_caller(ctx.caller());
        for (const auto& [k, v] : ctx.metadata()) (*hop->mutable_metadata())[k] = v;
        resp.SerializeToString(out);
        return ok();
      };
      d->endpoints.emplace(name, std::move(ep));
    }
    d->allowed_callers["private"] = {"api.friend"};
    d->limits.emplace("limited", std::make_unique<TokenBucket>(1.0, 1.0));
    return d;
  }();
  return *def;
}

std::string_view line(std::string_view* in) {
  const size_t eol = in->find('\n');
  std::string_view l = in->substr(0, eol);
  in->remove_prefix(eol == std::string_view::npos ? in->size() : eol + 1);
  return l;
}

// ServerPipeline::run without the pipeline's broker parts.
Result<std::string> run(const std::vector<ServerFilter>& chain, const ServerEndpoint& endpoint, const Message& m) {
  envelope::RequestView req;
  if (!envelope::parse_request(m.body, &req))
    return Error{Code::kInvalidArgument, "message body is not a tern.v1.Request envelope"}.with_local(
        {.dead_letter = true});
  if (req.deadline_unix_ms <= 0) return Error{Code::kInvalidArgument, "Request.deadline_unix_ms is required"};
  Context ctx = request_context(req, m.correlation_id);
  ctx.set_caller(m.verified_user(kOwnUser));
  ScopedCurrent current(&ctx);
  IncomingRequest in;
  in.service = definition().name;
  in.endpoint = req.endpoint;
  in.body = req.body;
  in.idempotency_key = req.idempotency_key;
  return run_chain(chain, endpoint, ctx, in);
}

// The hand codec reads what protobuf's generated parser reads, or neither
// accepts the bytes.
void check_codec_agrees(std::string_view body) {
  v1::Request want;
  const bool want_ok = want.ParseFromArray(body.data(), static_cast<int>(body.size()));
  envelope::RequestView got;
  if (envelope::parse_request(body, &got) != want_ok) abort();
  if (!want_ok) return;
  std::map<std::string, std::string> metadata;
  for (const auto& [k, v] : got.metadata) metadata[std::string(k)] = std::string(v);
  if (got.id != want.id() || got.service != want.service() || got.endpoint != want.endpoint() ||
      got.body != want.body() || got.deadline_unix_ms != want.deadline_unix_ms() || got.trace_id != want.trace_id() ||
      got.span_id != want.span_id() || got.parent_span_id != want.parent_span_id() || got.from != want.from() ||
      got.attempt != want.attempt() || got.idempotency_key != want.idempotency_key() ||
      metadata != std::map<std::string, std::string>(want.metadata().begin(), want.metadata().end()))
    abort();
}

}  // namespace

// protobuf logs every string field that is not UTF-8: noise at this rate.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ServiceDefinition& def = definition();
  // The chain of ServerPipeline's constructor, spans recorded. The spans
  // and the replay store are new for each input: state kept from one input
  // to the next looks like a leak to libFuzzer, whose leak checks then
  // take most of the time.
  SpanBuffer spans(def.name, true);
  Replay replay(std::make_shared<MemoryIdempotencyStore>());
  const std::vector<ServerFilter> chain = {
      server_filters::observe(def, spans),        server_filters::deadline(def),
      server_filters::known_endpoint(def),        server_filters::allowed_callers(def),
      server_filters::rate_limit(def),            server_filters::replay(&replay)};
  static const ServerEndpoint endpoint = [&def](Context& ctx, const IncomingRequest& req) -> Result<std::string> {
    const Endpoint& ep = def.endpoints.at(std::string(req.endpoint));
    std::string out;
    Error err = ep.invoke(ctx, req.body, &out);
    if (!err.ok()) return err;
    return out;
  };
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Message m;
  m.reply_to = line(&in);
  m.correlation_id = line(&in);
  m.user_id = line(&in);
  m.headers.emplace_back(Message::kOnBehalfOf, "api.friend");
  m.body = in;
  m.body_size = m.body.size();
  check_codec_agrees(m.body);
  if (!Responder::answerable(m.reply_to)) return 0;   // dead-lettered unread
  Result<std::string> r = run(chain, endpoint, m);
  // A caller that is not this service cannot borrow its on-behalf-of header.
  if (r.ok() && m.user_id != kOwnUser && m.user_id != "api.friend") {
    v1::Request req;
    if (req.ParseFromString(m.body) && req.endpoint() == "private") abort();
  }
  // As ServerPipeline::handle answers: a success by hand when its id is
  // UTF-8, the rest through protobuf.
  std::string answer;
  if (r.ok() && utf8::valid(m.correlation_id)) {
    envelope::encode_response(m.correlation_id, *r, &answer);
  } else {
    v1::Response resp = response_for(m.correlation_id);
    if (r.ok()) resp.set_body(*r);
    else to_wire(r.error(), resp.mutable_error());
    answer = resp.SerializeAsString();
  }
  Result<std::string> back = decode_response(answer, def.name, "x");
  // What the caller reads back is what was answered (its text made UTF-8).
  if (back.ok() != r.ok()) abort();
  if (back.ok()) {
    if (*back != *r) abort();
  } else {
    std::string message = r.error().message;
    utf8::make_valid(&message);
    if (back.error().code != r.error().code || back.error().message != message) abort();
  }
  return 0;
}
