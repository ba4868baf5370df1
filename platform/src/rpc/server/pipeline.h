// The server pipeline of one reactor thread: takes a delivery from the
// request queue, checks its envelope and size, builds the handler's Context,
// runs the server filter chain around the endpoint, and answers. Every
// delivery ends with a reply and an ack, except one that cannot be answered
// (no reply_to: dead-lettered and acked) and a redelivery it requeues with
// its count. Whether a request is dead-lettered comes from Error::local,
// never from an error's params.
#pragma once

#include <string>
#include <vector>

#include "observability/span_buffer.h"
#include "rpc/server/cancellations.h"
#include "rpc/server/definition.h"
#include "rpc/server/replay.h"
#include "rpc/server/responder.h"
#include "tern/call.h"
#include "tern/filter.h"

namespace tern::detail {

class ServerPipeline {
 public:
  // def, replay: shared by the service's threads, outliving this pipeline.
  // transport: where handlers' downstream calls go (this thread's runtime).
  ServerPipeline(const ServiceDefinition& def, Replay* replay, Responder& responder,
                 Cancellations& cancellations, SpanBuffer& spans, Transport& transport,
                 size_t max_message_bytes);
  ServerPipeline(const ServerPipeline&) = delete;
  ServerPipeline& operator=(const ServerPipeline&) = delete;

  // Runs in the delivery's own fiber. Never throws.
  void handle(Message&& m);

 private:
  Result<std::string> run(const Message& m);
  Result<std::string> invoke(Context& ctx, const IncomingRequest& req);

  const ServiceDefinition& def_;
  Responder& responder_;
  Cancellations& cancellations_;
  Transport& transport_;
  const size_t max_message_bytes_;
  std::vector<ServerFilter> chain_;
  const ServerEndpoint endpoint_;
  // The serialized Response of a success, reused; a large one is not kept.
  static constexpr size_t kKeptReplyBytes = 64 * 1024;
  std::string reply_;
};

}  // namespace tern::detail
