// Reading a service's configuration from the environment, once at start-up.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace common {

// The variable's value, or `fallback` when it is unset or empty.
inline std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// A positive integer variable, or `fallback` when unset or empty. Throws
// std::invalid_argument naming the variable when it is malformed.
inline long env_positive(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n <= 0)
    throw std::invalid_argument(std::string(name) + " must be a positive integer, not '" + v + "'");
  return n;
}

}  // namespace common
