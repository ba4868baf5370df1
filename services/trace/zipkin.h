// Spans as Zipkin v2 JSON (https://zipkin.io/zipkin-api/#/default/post_spans),
// which Zipkin and Jaeger both read.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tern/trace.pb.h"

namespace trace {

// One trace's spans as a Zipkin v2 JSON array. Kinds map CLIENT -> CLIENT,
// SERVER and HTTP -> SERVER, PUBLISH -> PRODUCER, CONSUME -> CONSUMER; the
// peer becomes remoteEndpoint.serviceName (an HTTP span's client address
// the tag tern.peer instead); tags keep the span's own, plus tern.code,
// tern.kind, tern.attempt, tern.instance, and "error" (the message, or the
// code's name) when the code is not OK. A duration under 1 µs is 1.
// Strings are written by tern::json::quote: valid UTF-8 JSON for any bytes.
std::string to_zipkin_json(const std::vector<tern::v1::Span>& spans);

// A span's tags as exported: its own (http.method, http.path, http.route,
// http.status_code on HTTP spans), rpc.system/rpc.service/rpc.method on
// CLIENT and SERVER spans, messaging.system on PUBLISH and CONSUME, tern.*
// (code, kind, attempt, instance, peer of HTTP spans) and "error" unless OK.
std::map<std::string, std::string> conventional_tags(const tern::v1::Span& s);

}  // namespace trace
