#include "tern/client.h"

#include <future>
#include <stdexcept>

#include "service/loop.h"

namespace tern {

Client::Client(const Options& options, std::string name)
    : loop_(std::make_unique<detail::Loop>(options, std::move(name))) {
  loop_->start();
}

Client::~Client() { loop_->shutdown(); }

void Client::run_fiber(std::function<void()> fn) {
  if (detail::Loop::current() == loop_.get())
    throw std::logic_error("Client::run called from one of the client's own fibers");
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  loop_->post([&] {
    try {
      fn();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  finished.get();
}

uint64_t Client::late_replies() const { return loop_->late_replies(); }

}  // namespace tern
