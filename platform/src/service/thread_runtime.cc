#include "service/thread_runtime.h"

#include <algorithm>

#include "core/current.h"
#include "observability/telemetry.h"

namespace tern::detail {
namespace {
thread_local ThreadRuntime* t_current = nullptr;
}  // namespace

topology::Spec ThreadRuntime::spec_of(const Options& options, const Serving& serving) {
  topology::Spec spec;
  spec.tracing = options.tracing == "on";
  spec.quorum_requests = options.request_queue_type == "quorum";
  spec.quorum_events = options.event_queue_type == "quorum";
  spec.max_queue_length = options.max_queue_length;
  spec.max_deliveries = options.max_deliveries;
  spec.event_attempts = options.event_attempts;
  spec.event_retry_ms = options.event_retry_ms;
  if (serving.def == nullptr) return spec;
  spec.service = serving.def->name;
  spec.prefetch = serving.prefetch;
  if (serving.subscriptions != nullptr)
    for (const EventSubscription& s : *serving.subscriptions)
      spec.subscriptions.push_back({topology::subscription_queue(spec.service, s.exchange, s.pattern), s.exchange,
                                    s.pattern});
  return spec;
}

ThreadRuntime::ThreadRuntime(const Options& options, std::string name, const std::vector<ClientFilter>& call_filters,
                             Serving serving)
    : options_(options),
      name_(std::move(name)),
      spec_(spec_of(options_, serving)),
      reactor_(static_cast<size_t>(std::max(options_.stack_kb, 16)) * 1024),
      link_(reactor_,
            LinkOptions{options_.amqp_urls(), options_.heartbeat_s, name_,
                        static_cast<size_t>(options_.max_message_kb) * 1024},
            spec_),
      spans_(name_, spec_.tracing,
             SamplingOptions{options_.trace_sample_rate(), std::chrono::milliseconds(options_.trace_slow_ms)}),
      confirms_(link_),
      caller_(reactor_, link_, spans_,
              CallerOptions{name_, options_.max_in_flight, static_cast<size_t>(options_.max_message_kb) * 1024,
                            options_.circuit_open_ms},
              call_filters),
      publisher_(link_, confirms_, spans_, name_, static_cast<size_t>(options_.max_message_kb) * 1024) {
  link_.on_idle([this](bool busy) { flush_spans(busy); });
  if (serving.def == nullptr) return;
  const size_t max_bytes = static_cast<size_t>(options_.max_message_kb) * 1024;
  responder_ = std::make_unique<Responder>(
      link_, confirms_, ResponderOptions{spec_.service, options_.max_deliveries, options_.max_queue_length});
  server_ = std::make_unique<ServerPipeline>(*serving.def, serving.replay, *responder_, cancellations_, spans_,
                                             *this, max_bytes);
  link_.on_consumer(topology::kRequestTag, [this](Message&& m) {
    run_handler([this, p = take(m)]() mutable {
      server_->handle(std::move(*p));
      give_back(std::move(p));
    });
  });
  link_.on_consumer(topology::kOverflowTag, [this](Message&& m) { responder_->refuse_overflow(m); });
  link_.on_consumer(topology::kCancelTag, [this](Message&& m) { cancellations_.cancel(m.body); });
  if (serving.subscriptions == nullptr || serving.subscriptions->empty()) return;
  subscriber_ = std::make_unique<Subscriber>(
      link_, confirms_, spans_, *this, SubscriberOptions{spec_.service, options_.event_attempts, spec_.event_retry_ms,
                                                      options_.event_timeout_ms, options_.max_deliveries},
      *serving.subscriptions, spec_.subscriptions);
  for (size_t i = 0; i < spec_.subscriptions.size(); ++i) {
    auto deliver = [this, i](Message&& m) {
      run_handler([this, i, p = take(m)]() mutable {
        subscriber_->handle(std::move(*p), i);
        give_back(std::move(p));
      });
    };
    link_.on_consumer(topology::subscription_tag(i), deliver);
    link_.on_consumer(topology::suspect_tag(i), deliver);
  }
}

ThreadRuntime::~ThreadRuntime() { shutdown(); }

ThreadRuntime* ThreadRuntime::current() { return t_current; }

std::unique_ptr<Message> ThreadRuntime::take(Message& delivered) {
  std::unique_ptr<Message> m;
  if (spare_messages_.empty()) {
    m = std::make_unique<Message>();
  } else {
    m = std::move(spare_messages_.back());
    spare_messages_.pop_back();
  }
  m->swap(delivered);
  return m;
}

void ThreadRuntime::give_back(std::unique_ptr<Message> m) {
  // Bounded: a few dozen spares of small requests; a large body's buffer
  // is not kept.
  constexpr size_t kSpares = 64, kKeptBodyBytes = 4096;
  if (spare_messages_.size() >= kSpares || m->body.capacity() > kKeptBodyBytes) return;
  m->reset();
  spare_messages_.push_back(std::move(m));
}

template <class F>
void ThreadRuntime::run_handler(F&& fn) {
  if (!dispatching_.load(std::memory_order_acquire)) return;
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  reactor_.spawn([this, fn = std::forward<F>(fn)]() mutable {
    fn();
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  });
}

void ThreadRuntime::start() {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread([this, &ready] { thread_main(&ready); });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

void ThreadRuntime::thread_main(std::promise<void>* ready) {
  t_current = this;
  set_thread_transport(this);
  reactor_.attach();
  try {
    link_.connect();
  } catch (...) {
    reactor_.detach();
    set_thread_transport(nullptr);
    t_current = nullptr;
    ended_.set_value();
    ready->set_exception(std::current_exception());
    return;
  }
  ready->set_value();  // `ready` is gone after this line

  // Until shutdown() the fibers run; this, the thread's main fiber, waits
  // in close() for the link's IO fiber to end, then closes the link (the
  // broker requeues what we did not ack), which fails calls still waiting.
  // Handler fibers run to their end; their replies and acks are no-ops now.
  link_.close();
  while (in_flight_.load() > 0) boost::this_fiber::sleep_for(std::chrono::milliseconds(2));
  reactor_.detach();
  set_thread_transport(nullptr);
  t_current = nullptr;
  ended_.set_value();
}

void ThreadRuntime::shutdown() {
  if (!thread_.joinable()) return;
  reactor_.stop();
  thread_.join();
}

bool ThreadRuntime::shutdown_within(std::chrono::milliseconds within) {
  if (!thread_.joinable()) return true;
  reactor_.stop();
  if (ended_future_.wait_for(within) != std::future_status::ready) {
    thread_.detach();
    return false;
  }
  thread_.join();
  return true;
}

void ThreadRuntime::flush_spans(bool busy) {
  const auto now = std::chrono::steady_clock::now();
  if (!spans_.due(now, busy)) return;
  // Batches wait behind nothing: with the broker pushing back (output not
  // draining, or publishing blocked by an alarm), they are dropped rather
  // than queued.
  if (link_.output_bytes() > (1u << 20) || link_.blocked()) {
    spans_.drop_all();
    return;
  }
  size_t n = 0;
  const std::string wire = spans_.take_batch(now, &n);
  if (n == 0) return;
  AmqpConnection::Publish p;
  p.exchange = topology::kTraceExchange;
  p.routing_key = topology::kSpanBatchKey;
  p.body = wire;
  p.expiration_ms = topology::kSpanBatchTtlMs;
  p.channel = AmqpConnection::kNoticeChannel;
  if (link_.publish(p)) metric::spans_sent(name_).inc(n);
  else metric::spans_dropped(name_).inc(n);
}

Result<std::string> ThreadRuntime::call(const Context& ctx, std::string_view service, std::string_view endpoint,
                                        std::string body, const CallOptions& opts) {
  return caller_.call(ctx, service, endpoint, std::move(body), opts);
}

Error ThreadRuntime::publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                             std::string body) {
  return publisher_.publish(ctx, type, routing_key, std::move(body));
}

Error ThreadRuntime::publish_with_id(const Context& ctx, std::string_view event_id, std::string_view type,
                                     std::string_view routing_key, std::string body) {
  return publisher_.publish(ctx, type, routing_key, std::move(body), event_id);
}

}  // namespace tern::detail
