#include "core/envelope_codec.h"

#include "core/pb_wire.h"
#include "core/utf8.h"

namespace tern::detail::envelope {

namespace {

// A proto3 `string` field: its bytes, which must be UTF-8.
bool read_string(pb::Reader& r, std::string_view* out) {
  *out = r.bytes_value();
  return r.ok() && utf8::valid(*out);
}

// A map<string, string> entry: key (1) and value (2), each defaulting to "".
bool read_map_entry(std::string_view entry, std::string_view* k, std::string_view* v) {
  *k = {};
  *v = {};
  pb::Reader r(entry);
  while (r.next()) {
    if (r.field() == 1 && r.type() == pb::kBytes) {
      if (!read_string(r, k)) return false;
    } else if (r.field() == 2 && r.type() == pb::kBytes) {
      if (!read_string(r, v)) return false;
    } else {
      r.skip();
    }
  }
  return r.ok();
}

}  // namespace

bool parse_request(std::string_view bytes, RequestView* out) {
  RequestView fresh;
  fresh.metadata = std::move(out->metadata);   // its capacity, when reused
  fresh.metadata.clear();
  *out = std::move(fresh);
  pb::Reader r(bytes);
  while (r.next()) {
    const uint32_t f = r.field();
    if (r.type() == pb::kBytes) {
      std::string_view* s = nullptr;
      switch (f) {
        case 1: s = &out->id; break;
        case 2: s = &out->service; break;
        case 3: s = &out->endpoint; break;
        case 4:   // bytes: no UTF-8 rule
          out->body = r.bytes_value();
          continue;
        case 6: s = &out->trace_id; break;
        case 7: s = &out->span_id; break;
        case 8: s = &out->parent_span_id; break;
        case 9: s = &out->from; break;
        case 10: {
          std::string_view k, v;
          if (!read_map_entry(r.bytes_value(), &k, &v)) return false;
          out->metadata.emplace_back(k, v);
          continue;
        }
        case 12: s = &out->idempotency_key; break;
        default: break;
      }
      if (s == nullptr) r.skip();
      else if (!read_string(r, s)) return false;
    } else if (r.type() == pb::kVarint && f == 5) {
      out->deadline_unix_ms = static_cast<int64_t>(r.varint_value());
    } else if (r.type() == pb::kVarint && f == 11) {
      out->attempt = static_cast<uint32_t>(r.varint_value());
    } else {
      // Unknown, or a known number with another wire type: protobuf keeps
      // those as unknown fields, which tern never reads.
      r.skip();
    }
  }
  return r.ok();
}

bool parse_response(std::string_view bytes, ResponseView* out) {
  ResponseView fresh;
  fresh.error = std::move(out->error);
  fresh.error.clear();
  *out = std::move(fresh);
  pb::Reader r(bytes);
  while (r.next()) {
    if (r.type() != pb::kBytes) {
      r.skip();
      continue;
    }
    switch (r.field()) {
      case 1:
        if (!read_string(r, &out->request_id)) return false;
        break;
      case 2: out->body = r.bytes_value(); break;
      case 3:
        // A message field given more than once is merged by protobuf: each
        // part is parsed onto the one before.
        out->error.push_back(r.bytes_value());
        break;
      default: r.skip();
    }
  }
  return r.ok();
}

void encode_response(std::string_view request_id, std::string_view body, std::string* out) {
  out->clear();
  pb::string(*out, 1, request_id);
  pb::string(*out, 2, body);
}

namespace detail {

void request_head(const RequestFields& f, std::string* out) {
  out->clear();
  pb::string(*out, 1, f.id);
  pb::string(*out, 2, f.service);
  pb::string(*out, 3, f.endpoint);
  pb::string(*out, 4, f.body);
  pb::number(*out, 5, static_cast<uint64_t>(f.deadline_unix_ms));
  pb::string(*out, 6, f.trace_id);
  pb::string(*out, 7, f.span_id);
  pb::string(*out, 8, f.parent_span_id);
  pb::string(*out, 9, f.from);
}

void metadata_entry(std::string_view k, std::string_view v, std::string* out) { pb::map_entry(*out, 10, k, v); }

void request_tail(const RequestFields& f, std::string* out) {
  pb::number(*out, 11, f.attempt);
  pb::string(*out, 12, f.idempotency_key);
}

}  // namespace detail

}  // namespace tern::detail::envelope
