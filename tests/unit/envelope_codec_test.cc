// The hand codec of the request path against protobuf's generated code, the
// reference: on envelopes protobuf writes, on envelopes the codec writes, and
// on tens of thousands of mangled ones, they must accept the same inputs and
// read the same fields from them.
#include <catch2/catch.hpp>

#include <map>
#include <random>

#include "core/envelope_codec.h"
#include "core/pb_wire.h"
#include "tern/envelope.pb.h"

#include <google/protobuf/stubs/logging.h>

namespace envelope = tern::detail::envelope;
namespace pb = tern::detail::pb;

namespace {

std::string random_text(std::mt19937_64& rng, size_t max) {
  static const char* pieces[] = {"a", "Z", "0", "-", ".", " ", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x90\xA6", "/"};
  std::string s;
  const size_t n = rng() % (max + 1);
  for (size_t i = 0; i < n; ++i) s += pieces[rng() % std::size(pieces)];
  return s;
}

std::string random_bytes(std::mt19937_64& rng, size_t max) {
  std::string s(rng() % (max + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

tern::v1::Request random_request(std::mt19937_64& rng) {
  tern::v1::Request r;
  r.set_id(random_text(rng, 40));
  r.set_service(random_text(rng, 20));
  r.set_endpoint(random_text(rng, 12));
  r.set_body(random_bytes(rng, 300));
  r.set_deadline_unix_ms(rng() % 3 == 0 ? -static_cast<int64_t>(rng() % 1000) : static_cast<int64_t>(rng() >> (rng() % 64)));
  r.set_trace_id(random_text(rng, 32));
  r.set_span_id(random_text(rng, 16));
  r.set_parent_span_id(random_text(rng, 16));
  r.set_from(random_text(rng, 16));
  for (size_t i = rng() % 4; i > 0; --i) (*r.mutable_metadata())[random_text(rng, 8)] = random_text(rng, 20);
  r.set_attempt(static_cast<uint32_t>(rng() >> (rng() % 64)));
  if (rng() % 2) r.set_idempotency_key(random_text(rng, 24));
  return r;
}

std::map<std::string, std::string> merged(const envelope::RequestView& v) {
  std::map<std::string, std::string> m;
  for (const auto& [k, val] : v.metadata) m[std::string(k)] = std::string(val);
  return m;
}

// The view reads exactly what protobuf read.
void check_same(const tern::v1::Request& want, const envelope::RequestView& got) {
  CHECK(got.id == want.id());
  CHECK(got.service == want.service());
  CHECK(got.endpoint == want.endpoint());
  CHECK(got.body == want.body());
  CHECK(got.deadline_unix_ms == want.deadline_unix_ms());
  CHECK(got.trace_id == want.trace_id());
  CHECK(got.span_id == want.span_id());
  CHECK(got.parent_span_id == want.parent_span_id());
  CHECK(got.from == want.from());
  CHECK(got.attempt == want.attempt());
  CHECK(got.idempotency_key == want.idempotency_key());
  CHECK(merged(got) == std::map<std::string, std::string>(want.metadata().begin(), want.metadata().end()));
}

// Both parse `bytes` or neither does, and then read the same fields.
bool agree_on_request(const std::string& bytes) {
  tern::v1::Request want;
  const bool want_ok = want.ParseFromString(bytes);
  envelope::RequestView got;
  const bool got_ok = envelope::parse_request(bytes, &got);
  if (want_ok != got_ok) {
    UNSCOPED_INFO("protobuf " << (want_ok ? "parses" : "refuses") << " what the codec "
                              << (got_ok ? "parses" : "refuses") << ": " << Catch::Detail::stringify(bytes));
    return false;
  }
  if (want_ok) check_same(want, got);
  return true;
}

// One of the ways a message gets mangled, picked at random.
std::string mangle(std::mt19937_64& rng, std::string s) {
  auto at = [&] { return s.empty() ? size_t{0} : rng() % (s.size() + 1); };
  switch (rng() % 9) {
    case 0: if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng()); break;       // a byte
    case 1: s.resize(at()); break;                                                             // cut short
    case 2: s.insert(at(), random_bytes(rng, 6)); break;                                       // noise
    case 3: {   // an unknown field, of any wire type
      std::string f;
      const uint32_t field = 13 + static_cast<uint32_t>(rng() % 2000);
      switch (rng() % 4) {
        case 0: pb::key(f, field, pb::kVarint); pb::varint(f, rng()); break;
        case 1: pb::bytes(f, field, random_bytes(rng, 10)); break;
        case 2: pb::key(f, field, pb::kFixed64); f += random_bytes(rng, 0) + std::string(8, 'x'); break;
        default: pb::key(f, field, pb::kStartGroup); pb::key(f, field + 1, pb::kVarint); pb::varint(f, 5);
                 pb::key(f, field, pb::kEndGroup);
      }
      s += f;   // at the end: a field boundary
      break;
    }
    case 4: {   // a known field again, or with the wrong wire type
      std::string f;
      const uint32_t field = 1 + static_cast<uint32_t>(rng() % 12);
      if (rng() % 2) pb::bytes(f, field, random_text(rng, 10));
      else { pb::key(f, field, pb::kVarint); pb::varint(f, rng()); }
      s += f;
      break;
    }
    case 5: {   // a string field that is not UTF-8
      std::string f;
      pb::bytes(f, 1 + static_cast<uint32_t>(rng() % 12), std::string("ok\xFF", 3));
      s += f;
      break;
    }
    case 6: {   // a metadata entry with odd insides
      std::string entry;
      pb::bytes(entry, static_cast<uint32_t>(1 + rng() % 3), random_text(rng, 5));
      if (rng() % 2) { pb::key(entry, 7, pb::kVarint); pb::varint(entry, 1); }
      if (rng() % 4 == 0) entry += "\x80";
      std::string f;
      pb::bytes(f, 10, entry);
      s += f;
      break;
    }
    case 7: s.insert(at(), 1, static_cast<char>(rng() % 2 ? 0x00 : 0x0C)); break;   // tag 0, end group
    default: s = s + s; break;                                                      // everything twice
  }
  return s;
}

}  // namespace

TEST_CASE("envelope codec: the request view reads what protobuf reads from 2,000 random requests") {
  std::mt19937_64 rng(16);
  for (int i = 0; i < 2000; ++i) {
    const tern::v1::Request r = random_request(rng);
    const std::string wire = r.SerializeAsString();   // the view points into it
    envelope::RequestView v;
    REQUIRE(envelope::parse_request(wire, &v));
    check_same(r, v);
  }
}

TEST_CASE("envelope codec: protobuf reads back every field of 2,000 hand-encoded requests") {
  std::mt19937_64 rng(17);
  for (int i = 0; i < 2000; ++i) {
    const tern::v1::Request r = random_request(rng);
    envelope::RequestFields f{r.id(),      r.service(), r.endpoint(),       r.body(), r.trace_id(),
                              r.span_id(), r.parent_span_id(), r.from(), r.idempotency_key(),
                              r.deadline_unix_ms(), r.attempt()};
    std::string wire;
    envelope::encode_request(f, &wire, r.metadata());
    tern::v1::Request back;
    REQUIRE(back.ParseFromString(wire));
    CHECK(back.SerializeAsString().size() == wire.size());
    envelope::RequestView v;
    REQUIRE(envelope::parse_request(wire, &v));
    check_same(r, v);
    check_same(back, v);
  }
}

TEST_CASE("envelope codec: on 30,000 mangled requests the codec and protobuf accept and read the same") {
  google::protobuf::LogSilencer quiet;   // its refusals of bad UTF-8 are logged
  std::mt19937_64 rng(18);
  int refused = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string bytes = random_request(rng).SerializeAsString();
    for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) bytes = mangle(rng, std::move(bytes));
    REQUIRE(agree_on_request(bytes));
    tern::v1::Request probe;
    refused += probe.ParseFromString(bytes) ? 0 : 1;
  }
  // Both outcomes were exercised, many times each.
  CHECK(refused > 3000);
  CHECK(refused < 27000);
}

TEST_CASE("envelope codec: the edges of the wire format are read as protobuf reads them") {
  google::protobuf::LogSilencer quiet;
  auto field = [](uint32_t n, std::string_view s) {
    std::string f;
    pb::bytes(f, n, s);
    return f;
  };
  std::string tenth;   // deadline as a 10-byte varint, bits past 64 dropped
  pb::key(tenth, 5, pb::kVarint);
  tenth += std::string(9, '\xFF') + "\x7F";
  std::string eleven = tenth;   // an 11-byte varint
  eleven.insert(eleven.size() - 1, "\xFF");
  std::string group;   // an unknown group with a group inside
  pb::key(group, 20, pb::kStartGroup);
  pb::key(group, 21, pb::kStartGroup);
  group += field(1, "x");
  pb::key(group, 21, pb::kEndGroup);
  pb::key(group, 20, pb::kEndGroup);
  std::string crossed;   // groups that close out of order
  pb::key(crossed, 20, pb::kStartGroup);
  pb::key(crossed, 21, pb::kStartGroup);
  pb::key(crossed, 20, pb::kEndGroup);
  pb::key(crossed, 21, pb::kEndGroup);
  const std::string cases[] = {
      "",
      field(1, "id") + field(1, "again"),
      field(4, std::string("\xFF\x00\xC0", 3)),   // bytes: any bytes
      field(2, "\xED\xA0\x80"),                    // a surrogate
      field(2, "\xC0\xAF"),                        // an overlong '/'
      field(2, "\xF4\x90\x80\x80"),                // past U+10FFFF
      field(2, "\xF0\x9F\x90\xA6"),
      tenth,
      eleven,
      group + field(3, "hello"),
      crossed,
      std::string("\x00", 1),
      std::string("\x0C", 1),
      std::string("\x0E", 1),   // wire type 6
      field(10, field(1, "k") + field(2, "v")) + field(10, field(1, "k") + field(2, "w")),
      field(10, field(2, "no key")),
      field(10, field(1, "k\xFF")),
      std::string("\x0A\x05" "ab", 4),   // a length past the end
      std::string("\x0A\xFF\xFF\xFF\xFF\x0F", 6),
  };
  for (const std::string& c : cases) CHECK(agree_on_request(c));
}

namespace {

bool agree_on_response(const std::string& bytes) {
  tern::v1::Response want;
  const bool want_ok = want.ParseFromString(bytes);
  envelope::ResponseView got;
  // As decode_response reads it: the error, if any, by protobuf.
  tern::v1::Error e;
  bool got_ok = envelope::parse_response(bytes, &got);
  std::string parts;   // back to back, as decode_response merges them
  for (std::string_view part : got.error) parts.append(part);
  if (got_ok && !got.error.empty()) got_ok = e.ParseFromString(parts);
  if (want_ok != got_ok) {
    UNSCOPED_INFO("protobuf " << (want_ok ? "parses" : "refuses") << " a response the codec "
                              << (got_ok ? "parses" : "refuses") << ": " << Catch::Detail::stringify(bytes));
    return false;
  }
  if (!want_ok) return true;
  CHECK(got.request_id == want.request_id());
  CHECK(got.body == want.body());
  CHECK(!got.error.empty() == want.has_error());
  CHECK(e.SerializeAsString() == want.error().SerializeAsString());
  return true;
}

}  // namespace

TEST_CASE("envelope codec: responses, hand-encoded and mangled, read as protobuf reads them") {
  google::protobuf::LogSilencer quiet;
  std::mt19937_64 rng(19);
  for (int i = 0; i < 2000; ++i) {
    const std::string id = random_text(rng, 40), body = random_bytes(rng, 200);
    std::string wire;
    envelope::encode_response(id, body, &wire);
    tern::v1::Response back;
    REQUIRE(back.ParseFromString(wire));
    CHECK(back.request_id() == id);
    CHECK(back.body() == body);
    CHECK_FALSE(back.has_error());
  }
  int refused = 0;
  for (int i = 0; i < 20000; ++i) {
    tern::v1::Response r;
    r.set_request_id(random_text(rng, 40));
    r.set_body(random_bytes(rng, 100));
    if (rng() % 2) {
      r.mutable_error()->set_code(static_cast<tern::v1::Code>(rng() % 17));
      r.mutable_error()->set_message(random_text(rng, 30));
      (*r.mutable_error()->mutable_params())[random_text(rng, 5)] = random_text(rng, 5);
    }
    std::string bytes = r.SerializeAsString();
    if (rng() % 4 == 0) {   // an error given twice, apart: protobuf merges them
      tern::v1::Response more;
      more.mutable_error()->set_retryable(true);
      more.mutable_error()->set_message(random_text(rng, 10));
      bytes += more.SerializeAsString() + r.SerializeAsString().substr(0, 0) + std::string("\x0A\x01z", 3);
      bytes += more.SerializeAsString();
    }
    if (rng() % 2) bytes = mangle(rng, std::move(bytes));
    REQUIRE(agree_on_response(bytes));
    refused += tern::v1::Response().ParseFromString(bytes) ? 0 : 1;
  }
  CHECK(refused > 1000);
}
