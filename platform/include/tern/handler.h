// What the platform keeps of a typed handler: the thin templates of
// tern::Service turn `Result<Resp>(Context&, const Req&)` into functions of
// bytes, so the rest of the platform is compiled once, not per handler.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <google/protobuf/descriptor.h>

#include "tern/context.h"
#include "tern/error.h"

namespace tern {
namespace detail {

// What the server keeps per endpoint. `invoke` parses `body` as the request
// type, runs the handler and serializes its reply into *out; it returns an
// Error (code kOk on success). It may throw whatever the handler throws.
struct Endpoint {
  const google::protobuf::Descriptor* request_type = nullptr;
  const google::protobuf::Descriptor* response_type = nullptr;
  std::function<Error(Context&, std::string_view body, std::string* out)> invoke;
};

// INVALID_ARGUMENT: the body is not a `type`. Marked to be dead-lettered
// (Error::local), which no error from a downstream ever is.
Error unparsable_request(const google::protobuf::Descriptor* type);

// What the server keeps per subscription. `invoke` parses the event body and
// runs the handler; an Error with a code other than kOk (or a throw) makes
// the event be retried.
struct EventSubscription {
  std::string exchange;
  std::string pattern;
  // If not empty: the only broker users whose events it handles (the
  // publisher as the broker verified it); others are dead-lettered.
  std::vector<std::string> publishers;
  std::function<Error(Context&, std::string_view body)> invoke;
};

// Deduces Req and Resp from `Result<Resp>(Context&, const Req&)`, for
// functions, function pointers, lambdas and other callables.
template <class F>
struct handler_traits : handler_traits<decltype(&std::remove_cvref_t<F>::operator())> {};
template <class R, class Req>
struct handler_traits<R (*)(Context&, const Req&)> {
  using Request = Req;
  using Response = typename R::value_type;
};
template <class R, class Req>
struct handler_traits<R(Context&, const Req&)> : handler_traits<R (*)(Context&, const Req&)> {};
template <class C, class R, class Req>
struct handler_traits<R (C::*)(Context&, const Req&) const>
    : handler_traits<R (*)(Context&, const Req&)> {};
template <class C, class R, class Req>
struct handler_traits<R (C::*)(Context&, const Req&)>
    : handler_traits<R (*)(Context&, const Req&)> {};

}  // namespace detail
}  // namespace tern
