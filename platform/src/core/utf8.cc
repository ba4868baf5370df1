#include "core/utf8.h"

#include <cstdint>
#include <cstring>

namespace tern::detail::utf8 {

size_t sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = byte(i);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;  // no overlong forms
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

bool valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    // ASCII, 8 bytes at a time: what ids, names and most paths are.
    if (uint64_t word; i + 8 <= s.size() && (std::memcpy(&word, s.data() + i, 8), (word & 0x8080808080808080u) == 0)) {
      i += 8;
      continue;
    }
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool make_valid(std::string* s) {
  if (valid(*s)) return false;
  std::string out;
  out.reserve(s->size() + 8);
  for (size_t i = 0; i < s->size();) {
    if (static_cast<unsigned char>((*s)[i]) < 0x80) {
      out.push_back((*s)[i++]);
      continue;
    }
    if (const size_t n = sequence_length(*s, i); n > 0) {
      out.append(*s, i, n);
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");   // U+FFFD
      ++i;
    }
  }
  *s = std::move(out);
  return true;
}

}  // namespace tern::detail::utf8
