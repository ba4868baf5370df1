#include "core/current.h"

namespace tern::detail {
namespace {
thread_local Transport* t_transport = nullptr;
}  // namespace

Transport* thread_transport() { return t_transport; }
void set_thread_transport(Transport* transport) { t_transport = transport; }

}  // namespace tern::detail
