// Errors and results: the one error model of tern, on the wire and in code.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tern {

// Numbered as google.rpc.Code and as tern.v1.Code on the wire.
enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// The wire name of a code: "INVALID_ARGUMENT". Unknown numbers give "UNKNOWN".
std::string_view code_name(Code code);
// The inverse of code_name; false if the name is not a code.
bool parse_code(std::string_view name, Code* out);
// Whether a failure with this code may succeed if the same call is retried
// (by default only UNAVAILABLE: the request was not processed).
bool retryable_by_default(Code code);
// The HTTP status for a code: the one table the gateway and tools use.
int http_status(Code code);

struct Error {
  Code code = Code::kUnknown;
  std::string message;
  // For the caller to read; they travel on the wire with the error.
  std::map<std::string, std::string> params;
  bool retryable = false;

  // What this process decided about its own failure. Never serialized:
  // an Error rebuilt from a reply has all of these unset, so params (or
  // anything else) from a downstream can never steer this process's policy.
  struct Local {
    // Server: the message itself is unusable (not an envelope, a body of
    // the wrong type): keep it in the dead-letter queue, never requeue.
    bool dead_letter = false;
    // Client: this process's own broker link failed; says nothing about the
    // downstream, so it does not count against the downstream's breaker.
    bool link_failed = false;
    // Client: the request went out but no answer can come (the link was
    // lost): it may or may not have run. Retried only when the call is
    // idempotent or carries an idempotency key.
    bool outcome_unknown = false;
    // Client: the broker had no queue for the service (nothing declared it).
    bool no_route = false;
    // HTTP edge: the methods the path allows, for 405 and its Allow header.
    std::string allow{};
  } local;

  Error() = default;
  Error(Code c, std::string msg)
      : code(c), message(std::move(msg)), retryable(retryable_by_default(c)) {}

  // Functions that return an Error rather than a Result (publish) use code
  // kOk for success.
  bool ok() const { return code == Code::kOk; }

  Error&& with_param(std::string key, std::string value) && {
    params[std::move(key)] = std::move(value);
    return std::move(*this);
  }
  Error&& with_local(Local l) && {
    local = std::move(l);
    return std::move(*this);
  }
  // "DEADLINE_EXCEEDED: no reply from service.x/y within 2000 ms"
  std::string to_string() const;
};

// Success, for functions that return an Error rather than a Result
// (publish, event handlers): `return tern::ok();`.
inline Error ok() { return Error{Code::kOk, {}}; }

// A value or an Error. Handlers return Result<Resp>: `return resp;` or
// `return tern::Error{tern::Code::kNotFound, "no such user"};`.
template <class T>
class Result {
 public:
  using value_type = T;

  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Precondition for value(), *, ->: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !ok().
  const Error& error() const { return std::get<1>(v_); }
  Error& error() { return std::get<1>(v_); }
  Code code() const { return ok() ? Code::kOk : error().code; }

 private:
  std::variant<T, Error> v_;
};

}  // namespace tern
