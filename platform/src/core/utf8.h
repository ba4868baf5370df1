// UTF-8 (RFC 3629): is a string well-formed, and making it so. For what
// crosses into protobuf string fields and JSON from outside (paths, error
// texts, header values): protobuf refuses to parse invalid UTF-8 there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tern::detail::utf8 {

// The length of the well-formed sequence starting at s[i], a non-ASCII
// byte; 0 if there is none: a lone continuation byte, a truncated
// sequence, an overlong form, a surrogate, or past U+10FFFF.
size_t sequence_length(std::string_view s, size_t i);

bool valid(std::string_view s);

// No byte of s is past 0x7F (so it is UTF-8). Inline: 8 bytes a step.
inline bool ascii(std::string_view s) {
  uint64_t any = 0;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    any |= word;
  }
  for (; i < s.size(); ++i) any |= static_cast<unsigned char>(s[i]);
  return (any & 0x8080808080808080u) == 0;
}

// Replaces each byte that starts no well-formed sequence with U+FFFD.
// Returns whether anything changed. ASCII costs one pass and no copy.
bool make_valid(std::string* s);

}  // namespace tern::detail::utf8
