// The broker topology, checked against a recording Declarer: every queue,
// exchange, binding, consumer and argument tern asks the broker for.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "transport/amqp/topology.h"

namespace topology = tern::detail::topology;
using topology::QueueArg;
using topology::QueueArgs;

namespace {

struct Recorder final : topology::Declarer {
  std::vector<std::string> steps;
  std::vector<std::pair<std::string, QueueArgs>> queues;
  int private_queues = 0;

  void declare_queue(const std::string& name, const QueueArgs& args) override {
    steps.push_back("queue " + name);
    queues.emplace_back(name, args);
  }
  std::string declare_private_queue() override {
    std::string name = "amq.gen-" + std::to_string(++private_queues);
    steps.push_back("private " + name);
    return name;
  }
  void declare_exchange(const std::string& name, const char* type) override {
    steps.push_back("exchange " + name + " " + type);
  }
  void bind(const std::string& queue, const std::string& exchange, const std::string& key) override {
    steps.push_back("bind " + queue + " " + exchange + " " + key);
  }
  void qos(uint16_t prefetch) override { steps.push_back("qos " + std::to_string(prefetch)); }
  void consume(const std::string& queue, const std::string& tag, bool no_ack) override {
    steps.push_back("consume " + queue + " " + tag + (no_ack ? " no-ack" : " ack"));
  }
  void open_event_channel() override { steps.push_back("event channel"); }

  const QueueArgs& args_of(const std::string& queue) const {
    for (const auto& [name, args] : queues)
      if (name == queue) return args;
    FAIL("queue " << queue << " was not declared");
    static QueueArgs none;
    return none;
  }
};

topology::Spec service_spec() {
  topology::Spec spec;
  spec.service = "service.x";
  spec.prefetch = 64;
  spec.max_queue_length = 500;
  spec.event_attempts = 3;
  spec.event_retry_ms = 100;
  spec.max_deliveries = 4;
  spec.subscriptions.push_back({topology::subscription_queue("service.x", "tern.events", "order.*"), "tern.events",
                                "order.*"});
  return spec;
}

}  // namespace

TEST_CASE("queue names come from the service's name") {
  CHECK(topology::overflow_queue("service.x") == "service.x.overflow");
  CHECK(topology::dead_letter_queue("service.x") == "service.x.dead-letter");
  CHECK(topology::subscription_queue("service.x", "tern.events", "order.*") == "service.x.on.order.*");
  CHECK(topology::subscription_queue("service.x", "tern.traces", "#") == "service.x.on.tern.traces.#");
  CHECK(topology::retry_queue("service.x.on.a", 2000) == "service.x.on.a.retry.2000ms");
  CHECK(topology::retry_delay_ms(1000, 1) == 1000);
  CHECK(topology::retry_delay_ms(1000, 3) == 4000);
  CHECK(topology::event_dead_letter_queue("service.x.on.a") == "service.x.on.a.dead-letter");
  CHECK(topology::subscription_tag(3) == "tern.sub.3");
  CHECK(topology::suspect_queue("service.x.on.a") == "service.x.on.a.suspects");
  CHECK(topology::suspect_tag(3) == "tern.suspect.3");
}

TEST_CASE("the publishing connection consumes direct reply-to and declares the exchanges") {
  Recorder r;
  topology::declare_publisher(r, service_spec());
  CHECK(r.steps == std::vector<std::string>{
                       "consume amq.rabbitmq.reply-to tern.replies no-ack",
                       "event channel",
                       "exchange tern.events topic",
                       "exchange tern.cancel direct",
                       "exchange tern.traces topic",
                   });
  topology::Spec quiet = service_spec();
  quiet.tracing = false;
  Recorder q;
  topology::declare_publisher(q, quiet);
  CHECK(std::find(q.steps.begin(), q.steps.end(), "exchange tern.traces topic") == q.steps.end());
}

TEST_CASE("a service's consuming connection declares its queues, cancel notices and subscriptions") {
  Recorder r;
  topology::declare_consumer(r, service_spec());
  CHECK(r.steps == std::vector<std::string>{
                       "queue service.x.overflow",
                       "queue service.x",
                       "queue service.x.dead-letter",
                       "consume service.x.overflow tern.overflow no-ack",
                       "private amq.gen-1",
                       "bind amq.gen-1 tern.cancel service.x",
                       "consume amq.gen-1 tern.cancel no-ack",
                       "qos 64",
                       "queue service.x.on.order.*",
                       "queue service.x.on.order.*.suspects",
                       "bind service.x.on.order.* tern.events order.*",
                       "queue service.x.on.order.*.retry.100ms",
                       "queue service.x.on.order.*.retry.200ms",
                       "queue service.x.on.order.*.dead-letter",
                   });
  // A full request queue dead-letters refused publishes to the overflow queue.
  CHECK(r.args_of("service.x") == QueueArgs{{"x-max-length", int64_t{500}},
                                            {"x-overflow", std::string("reject-publish-dlx")},
                                            {"x-dead-letter-exchange", std::string()},
                                            {"x-dead-letter-routing-key", std::string("service.x.overflow")}});
  // Retry n waits retry_ms * 2^(n-1), then goes back to the subscription queue.
  CHECK(r.args_of("service.x.on.order.*.retry.100ms") ==
        QueueArgs{{"x-message-ttl", int64_t{100}},
                  {"x-dead-letter-exchange", std::string()},
                  {"x-dead-letter-routing-key", std::string("service.x.on.order.*")}});
  CHECK(r.args_of("service.x.on.order.*.retry.200ms") ==
        QueueArgs{{"x-message-ttl", int64_t{200}},
                  {"x-dead-letter-exchange", std::string()},
                  {"x-dead-letter-routing-key", std::string("service.x.on.order.*")}});
  CHECK(r.args_of("service.x.on.order.*").empty());
  CHECK(r.args_of("service.x.on.order.*.suspects").empty());
}

TEST_CASE("quorum queues: drop-head overflow and a delivery limit on subscriptions") {
  topology::Spec spec = service_spec();
  spec.quorum_requests = true;
  spec.quorum_events = true;
  Recorder r;
  topology::declare_consumer(r, spec);
  CHECK(r.args_of("service.x") == QueueArgs{{"x-max-length", int64_t{500}},
                                            {"x-overflow", std::string("drop-head")},
                                            {"x-dead-letter-exchange", std::string()},
                                            {"x-dead-letter-routing-key", std::string("service.x.overflow")},
                                            {"x-queue-type", std::string("quorum")}});
  // The subscription's delivery limit is a backstop (the subscriber counts
  // crashes in the suspects queue), and the same on both.
  for (const char* q : {"service.x.on.order.*", "service.x.on.order.*.suspects"})
    CHECK(r.args_of(q) == QueueArgs{{"x-delivery-limit", int64_t{4}},
                                    {"x-dead-letter-exchange", std::string()},
                                    {"x-dead-letter-routing-key", std::string("service.x.on.order.*.dead-letter")},
                                    {"x-queue-type", std::string("quorum")}});
  for (const auto& [name, args] : r.queues) {
    INFO(name);
    CHECK(std::find(args.begin(), args.end(), QueueArg{"x-queue-type", std::string("quorum")}) != args.end());
  }
}

TEST_CASE("a subscription to another exchange declares that exchange") {
  topology::Spec spec = service_spec();
  spec.subscriptions = {{topology::subscription_queue("service.x", "tern.traces", "#"), "tern.traces", "#"}};
  Recorder r;
  topology::declare_consumer(r, spec);
  CHECK(std::find(r.steps.begin(), r.steps.end(), "exchange tern.traces topic") != r.steps.end());
  CHECK(std::find(r.steps.begin(), r.steps.end(), "bind service.x.on.tern.traces.# tern.traces #") != r.steps.end());
}

TEST_CASE("requests and subscriptions are consumed with acks by tag and a client consumes nothing") {
  Recorder r;
  topology::consume(r, service_spec());
  // Suspects one at a time: qos applies to the consumers started after it.
  CHECK(r.steps == std::vector<std::string>{"qos 1",
                                            "consume service.x.on.order.*.suspects tern.suspect.0 ack",
                                            "qos 64",
                                            "consume service.x tern.requests ack",
                                            "consume service.x.on.order.* tern.sub.0 ack"});
  Recorder client;
  topology::Spec none;
  topology::declare_consumer(client, none);
  topology::consume(client, none);
  CHECK(client.steps.empty());
}

TEST_CASE("a consumer the broker cancelled is put back with its queue's declarations, arguments and bindings") {
  const topology::Spec spec = service_spec();
  Recorder requests;
  CHECK(topology::redeclare(requests, spec, topology::kRequestTag));
  CHECK(requests.steps == std::vector<std::string>{"queue service.x.overflow", "queue service.x",
                                                   "queue service.x.dead-letter",
                                                   "consume service.x tern.requests ack"});
  Recorder fresh;
  topology::declare_consumer(fresh, spec);
  CHECK(requests.args_of("service.x") == fresh.args_of("service.x"));   // the same arguments as at start
  Recorder sub;
  CHECK(topology::redeclare(sub, spec, topology::subscription_tag(0)));
  CHECK(sub.steps == std::vector<std::string>{
                         "queue service.x.on.order.*",
                         "queue service.x.on.order.*.suspects",
                         "bind service.x.on.order.* tern.events order.*",
                         "queue service.x.on.order.*.retry.100ms",
                         "queue service.x.on.order.*.retry.200ms",
                         "queue service.x.on.order.*.dead-letter",
                         "consume service.x.on.order.* tern.sub.0 ack",
                     });
  // The suspects queue comes back consumed one at a time.
  Recorder suspects;
  CHECK(topology::redeclare(suspects, spec, topology::suspect_tag(0)));
  CHECK(std::vector<std::string>(suspects.steps.end() - 3, suspects.steps.end()) ==
        std::vector<std::string>{"qos 1", "consume service.x.on.order.*.suspects tern.suspect.0 ack", "qos 64"});
  CHECK(sub.args_of("service.x.on.order.*.retry.200ms") == fresh.args_of("service.x.on.order.*.retry.200ms"));
  // Not by name: the cancel notices' server-named queue, direct reply-to, unknown tags.
  Recorder none;
  CHECK_FALSE(topology::redeclare(none, spec, topology::kCancelTag));
  CHECK_FALSE(topology::redeclare(none, spec, topology::kReplyTag));
  CHECK_FALSE(topology::redeclare(none, spec, topology::subscription_tag(1)));
  CHECK(none.steps.empty());
}

TEST_CASE("a consuming channel opened again gets its qos and every consumer back") {
  Recorder r;
  topology::consume_again(r, service_spec(), /*requests_too=*/true);
  CHECK(r.steps == std::vector<std::string>{"qos 64", "consume service.x.overflow tern.overflow no-ack",
                                            "private amq.gen-1", "bind amq.gen-1 tern.cancel service.x",
                                            "consume amq.gen-1 tern.cancel no-ack", "qos 1",
                                            "consume service.x.on.order.*.suspects tern.suspect.0 ack", "qos 64",
                                            "consume service.x tern.requests ack",
                                            "consume service.x.on.order.* tern.sub.0 ack"});
  Recorder stopping;
  topology::consume_again(stopping, service_spec(), /*requests_too=*/false);
  CHECK(stopping.steps.size() == 5);   // no consumer of requests, events or suspects
}
