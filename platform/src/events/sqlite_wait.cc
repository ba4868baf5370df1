#include "events/sqlite_wait.h"

#include <sqlite3.h>

#include <algorithm>

#include <boost/fiber/operations.hpp>

namespace tern::detail {

FiberBusyWait::FiberBusyWait(sqlite3* db, std::chrono::milliseconds budget) : budget_(budget) {
  sqlite3_busy_handler(db, &FiberBusyWait::on_busy, this);
}

// SQLite calls this while `count` earlier calls for the same statement
// found the lock taken; returning 0 ends the statement with SQLITE_BUSY.
int FiberBusyWait::on_busy(void* p, int count) {
  auto* self = static_cast<FiberBusyWait*>(p);
  const auto now = Clock::now();
  if (count == 0) self->started_ = now;
  const Clock::time_point until =
      self->until_ != Clock::time_point{} ? self->until_ : self->started_ + self->budget_;
  if (now >= until) return 0;
  // 1 ms doubling to 16 ms: a commit takes a millisecond or two here.
  const auto step = std::chrono::milliseconds(1 << std::min(count, 4));
  boost::this_fiber::sleep_for(std::min<Clock::duration>(step, until - now));
  return 1;
}

}  // namespace tern::detail
