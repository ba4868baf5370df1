// tern.v1.Request and tern.v1.Response on the request path, by hand: parsed
// as views into the delivery's bytes and written into a reused buffer, with
// exactly the meaning protobuf's generated code gives them (proto3: last
// occurrence wins, unknown fields skipped, string fields valid UTF-8 or the
// parse fails). The generated classes stay the schema and everything else's
// codec; envelope_codec_test checks the two agree, field by field and on
// mangled input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::detail::envelope {

struct RequestView {
  std::string_view id, service, endpoint, body, trace_id, span_id, parent_span_id, from, idempotency_key;
  int64_t deadline_unix_ms = 0;
  uint32_t attempt = 0;
  // In wire order; a key given twice means its last value (a map's merge).
  std::vector<std::pair<std::string_view, std::string_view>> metadata;
};

// False when `bytes` is not a tern.v1.Request that protobuf would parse.
// `out` points into `bytes`, which must outlive it.
bool parse_request(std::string_view bytes, RequestView* out);

// The fields a caller sends, written as protobuf would serialize them.
struct RequestFields {
  std::string_view id, service, endpoint, body, trace_id, span_id, parent_span_id, from, idempotency_key;
  int64_t deadline_unix_ms = 0;
  uint32_t attempt = 0;
};
// `metadata`: ranges of pairs of strings, written in order (so a key in a
// later range overrides the same key in an earlier one).
template <class... Metadata>
void encode_request(const RequestFields& f, std::string* out, const Metadata&... metadata);

struct ResponseView {
  std::string_view request_id, body;
  // A tern.v1.Error, serialized: each occurrence in order (protobuf merges
  // them); empty when there is none.
  std::vector<std::string_view> error;
};
bool parse_response(std::string_view bytes, ResponseView* out);

// A successful Response. `request_id` must be valid UTF-8 (see wire.h's
// response_for for one that may not be).
void encode_response(std::string_view request_id, std::string_view body, std::string* out);

namespace detail {
void request_head(const RequestFields& f, std::string* out);
void request_tail(const RequestFields& f, std::string* out);
void metadata_entry(std::string_view k, std::string_view v, std::string* out);
}  // namespace detail

template <class... Metadata>
void encode_request(const RequestFields& f, std::string* out, const Metadata&... metadata) {
  detail::request_head(f, out);
  (
      [&] {
        for (const auto& [k, v] : metadata) detail::metadata_entry(k, v, out);
      }(),
      ...);
  detail::request_tail(f, out);
}

}  // namespace tern::detail::envelope
