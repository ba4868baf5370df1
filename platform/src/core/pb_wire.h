// The protobuf wire format by hand, for the few messages on every request's
// path (the tern.v1 envelopes, span batches): written straight into a reused
// buffer and read as views into the bytes received, with no message object,
// string or allocation per field. Everything else uses the generated code.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tern::detail::pb {

constexpr uint32_t kVarint = 0, kFixed64 = 1, kBytes = 2, kStartGroup = 3, kEndGroup = 4, kFixed32 = 5;

// ---- writing
//
// Into any Out with push_back(char) and append(const char*, size_t): a
// std::string, a Cursor writing into room made beforehand, or a Counter
// that only adds up how many bytes the same calls would write.

struct Counter {
  size_t n = 0;
  void push_back(char) { ++n; }
  void append(const char*, size_t k) { n += k; }
};
struct Cursor {
  char* p;
  void push_back(char c) { *p++ = c; }
  void append(const char* d, size_t k) {
    if (k != 0) std::memcpy(p, d, k);
    p += k;
  }
};

template <class Out>
inline void varint(Out& out, uint64_t v) {
  if (v < 0x80) {   // most keys and lengths
    out.push_back(static_cast<char>(v));
    return;
  }
  char buf[10];
  size_t n = 0;
  for (; v >= 0x80; v >>= 7) buf[n++] = static_cast<char>(v | 0x80);
  buf[n++] = static_cast<char>(v);
  out.append(buf, n);
}
template <class Out>
inline void key(Out& out, uint32_t field, uint32_t type) { varint(out, uint64_t{field} << 3 | type); }
template <class Out>
inline void bytes(Out& out, uint32_t field, std::string_view s) {
  key(out, field, kBytes);
  varint(out, s.size());
  out.append(s.data(), s.size());
}
// proto3: an empty string or a zero is not written at all.
template <class Out>
inline void string(Out& out, uint32_t field, std::string_view s) {
  if (!s.empty()) bytes(out, field, s);
}
template <class Out>
inline void number(Out& out, uint32_t field, uint64_t v) {
  if (v == 0) return;
  key(out, field, kVarint);
  varint(out, v);
}
inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}
// A map<string, string> entry: a message of key (1) and value (2).
template <class Out>
inline void map_entry(Out& out, uint32_t field, std::string_view k, std::string_view v) {
  key(out, field, kBytes);
  varint(out, 1 + varint_size(k.size()) + k.size() + 1 + varint_size(v.size()) + v.size());
  bytes(out, 1, k);
  bytes(out, 2, v);
}

// ---- reading

// Reads the fields of one message in order. next() is false at the end and
// on malformed input; ok() tells the two apart. Unknown fields are the
// caller's to skip(); groups are skipped whole, as protobuf's parser does.
class Reader {
 public:
  explicit Reader(std::string_view in) : p_(in.data()), end_(in.data() + in.size()) {}

  bool next() {
    if (p_ == end_ || !ok_) return false;
    uint32_t tag = 0;
    if (!read_tag(&tag)) return fail();
    field_ = tag >> 3;
    type_ = tag & 7;
    // Field 0, a stray end of group and wire types 6 and 7 end protobuf's
    // parse short of the input's end: a failure there too.
    if (field_ == 0 || type_ == kEndGroup || type_ > kFixed32) return fail();
    return true;
  }
  uint32_t field() const { return field_; }
  uint32_t type() const { return type_; }
  bool ok() const { return ok_; }

  // The current field's value, by its wire type (check type() first).
  uint64_t varint_value() {
    uint64_t v = 0;
    if (!read_varint(&v, 10)) fail();
    return v;
  }
  std::string_view bytes_value() {
    uint64_t n = 0;
    if (!read_varint(&n, 5) || n > static_cast<uint64_t>(INT32_MAX) || n > static_cast<uint64_t>(end_ - p_)) {
      fail();
      return {};
    }
    std::string_view s(p_, static_cast<size_t>(n));
    p_ += n;
    return s;
  }
  void skip() {
    switch (type_) {
      case kVarint: varint_value(); break;
      case kFixed64: advance(8); break;
      case kBytes: bytes_value(); break;
      case kFixed32: advance(4); break;
      case kStartGroup: skip_group(); break;
      default: fail();
    }
  }

 private:
  bool fail() {
    ok_ = false;
    p_ = end_;
    return false;
  }
  void advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) fail();
    else p_ += n;
  }
  // At most `max` bytes; a 10th byte's bits past 64 are dropped, as protobuf does.
  bool read_varint(uint64_t* v, int max) {
    uint64_t r = 0;
    for (int i = 0; i < max; ++i) {
      if (p_ == end_) return false;
      const auto b = static_cast<unsigned char>(*p_++);
      r |= uint64_t{b & 0x7Fu} << (7 * i);
      if (b < 0x80) {
        *v = r;
        return true;
      }
    }
    return false;
  }
  // A tag is a varint of at most 5 bytes, kept to its low 32 bits (as
  // protobuf's ReadTag keeps them).
  bool read_tag(uint32_t* tag) {
    uint64_t v = 0;
    if (!read_varint(&v, 5)) return false;
    *tag = static_cast<uint32_t>(v);
    return true;
  }
  // From just after a start-group tag to its matching end-group tag.
  void skip_group() {
    constexpr int kMaxDepth = 100;   // protobuf's default recursion limit
    uint32_t open[kMaxDepth];
    int depth = 0;
    open[depth++] = field_;
    while (depth > 0) {
      uint32_t tag = 0;
      if (!read_tag(&tag) || (tag >> 3) == 0) {
        fail();
        return;
      }
      const uint32_t field = tag >> 3;
      const uint32_t type = tag & 7;
      if (type == kEndGroup) {
        if (open[depth - 1] != field) {
          fail();
          return;
        }
        --depth;
      } else if (type == kStartGroup) {
        if (depth == kMaxDepth) {
          fail();
          return;
        }
        open[depth++] = field;
      } else {
        type_ = type;
        skip();
        if (!ok_) return;
      }
    }
  }

  const char* p_;
  const char* end_;
  uint32_t field_ = 0;
  uint32_t type_ = 0;
  bool ok_ = true;
};

}  // namespace tern::detail::pb
