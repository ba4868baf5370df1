// UTF-8 (RFC 3629): is a string well-formed, and making it so. For what
// crosses into protobuf string fields and JSON from outside (paths, error
// texts, header values): protobuf refuses to parse invalid UTF-8 there.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tern::detail::utf8 {

// The length of the well-formed sequence starting at s[i], a non-ASCII
// byte; 0 if there is none: a lone continuation byte, a truncated
// sequence, an overlong form, a surrogate, or past U+10FFFF.
size_t sequence_length(std::string_view s, size_t i);

bool valid(std::string_view s);

// Replaces each byte that starts no well-formed sequence with U+FFFD.
// Returns whether anything changed. ASCII costs one pass and no copy.
bool make_valid(std::string* s);

}  // namespace tern::detail::utf8
