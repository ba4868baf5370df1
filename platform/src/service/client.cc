#include "tern/client.h"

#include <future>
#include <stdexcept>

#include "service/thread_runtime.h"

namespace tern {

Client::Client(const Options& options, std::string name) : Client(options, std::move(name), {}) {}

Client::Client(const Options& options, std::string name, std::vector<ClientFilter> filters)
    : filters_(std::move(filters)),
      runtime_(std::make_unique<detail::ThreadRuntime>(options, std::move(name), filters_)) {
  runtime_->start();
}

Client::~Client() { runtime_->shutdown(); }

void Client::run_fiber(std::function<void()> fn) {
  if (detail::ThreadRuntime::current() == runtime_.get())
    throw std::logic_error("Client::run called from one of the client's own fibers");
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  runtime_->post([&] {
    try {
      fn();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  finished.get();
}

uint64_t Client::late_replies() const { return runtime_->late_replies(); }

}  // namespace tern
