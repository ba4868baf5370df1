// Which tern runtime the calling thread belongs to. A runtime thread sets
// it once at start; code on any other thread sees null.
#pragma once

#include "tern/call.h"
#include "tern/context.h"

namespace tern::detail {

// The transport of the runtime whose thread is calling, or null.
Transport* thread_transport();
// For the runtime, on its own thread: at start, and null at the end.
void set_thread_transport(Transport* transport);

// The one lookup of where a call or publish made with `ctx` goes: the
// context's transport if it has one, else the calling thread's runtime;
// null outside any runtime.
inline Transport* transport_for(const Context& ctx) {
  return ctx.transport() != nullptr ? ctx.transport() : thread_transport();
}

}  // namespace tern::detail
