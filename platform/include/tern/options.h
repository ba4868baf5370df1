// Runtime configuration, parsed once at start-up: environment first, then flags.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "tern/env.h"  // ConfigError

namespace tern {

struct Options {
  // TERN_AMQP_URL, --amqp-url: the broker, or the nodes of a RabbitMQ
  // cluster as a comma-separated list of URLs (spaces around commas are
  // ignored; a comma inside a URL must be written %2C). Each connection goes
  // to the first URL that answers, trying them in order from a random one,
  // so instances spread over the nodes; after a lost connection the next
  // attempt, 1-2 s later (while the cluster elects new queue leaders),
  // starts with the next URL. amqp_urls() gives the list. The login is
  // best left out of it and given by amqp_user and amqp_password.
  std::string amqp_url = "amqp://localhost:5672/";
  // TERN_AMQP_USER: the broker user every URL of amqp_url logs in as,
  // in place of the URL's own. Environment only: no flag, so it is never in
  // argv (where any local user can read it in /proc).
  std::string amqp_user;
  // TERN_AMQP_PASSWORD, or TERN_AMQP_PASSWORD_FILE (the file's contents,
  // trailing newlines stripped; setting both is a ConfigError): the
  // password of every URL, in place of the URL's own. Environment only, like
  // amqp_user. Nothing tern prints or logs shows it, nor a URL that may hold
  // it: ConfigErrors name a URL by its position in the list.
  std::string amqp_password;
  // TERN_THREADS, --threads: worker threads, each with its own broker
  // connection and fibers. 0 means the number of cores.
  int threads = 0;
  // TERN_CONCURRENCY, --concurrency: requests one instance handles at once
  // (the prefetch, split across threads).
  int concurrency = 256;
  // TERN_HEARTBEAT_S, --heartbeat-s: AMQP heartbeat; a dead broker is noticed
  // within about twice this. 0 disables heartbeats.
  int heartbeat_s = 10;
  // TERN_DRAIN_TIMEOUT_MS, --drain-timeout-ms: on SIGTERM, how long in-flight
  // handlers get to finish before the connection closes.
  int drain_timeout_ms = 10000;
  // TERN_WATCHDOG_MS, --watchdog-ms: a loop thread that goes this long
  // without switching fibers (a handler blocking it) is logged with what
  // held it and counted in tern_loop_stalls_total. 0: no watchdog.
  int watchdog_ms = 200;
  // TERN_STACK_KB, --stack-kb: stack of each handler fiber.
  int stack_kb = 128;
  // TERN_MAX_MESSAGE_KB, --max-message-kb: the largest request, reply or
  // event (envelope included) sent or accepted. RabbitMQ's own limit is
  // 16 MiB by default; past it the broker closes the channel.
  int max_message_kb = 4096;
  // TERN_CIRCUIT_OPEN_MS, --circuit-open-ms: how long a circuit to a failing
  // downstream endpoint stays open before a probe is let through.
  int circuit_open_ms = 5000;
  // TERN_MAX_QUEUE_LENGTH, --max-queue-length: requests a service's queue
  // holds; past it callers get RESOURCE_EXHAUSTED at once. All instances of
  // a service must agree (it is part of the queue's declaration).
  int max_queue_length = 10000;
  // TERN_MAX_IN_FLIGHT, --max-in-flight: calls one worker thread (or a
  // Client) may have waiting for replies; more fail with RESOURCE_EXHAUSTED.
  int max_in_flight = 100000;
  // TERN_MAX_DELIVERIES, --max-deliveries: a request delivered this many
  // times without being answered (its instances crashed or were killed
  // running it) goes to the service's dead-letter queue instead.
  int max_deliveries = 5;
  // TERN_EVENT_ATTEMPTS, --event-attempts: how often a subscriber's handler
  // is tried on one event before it goes to the subscription's dead-letter
  // queue. Part of the retry queues' declaration: instances must agree.
  int event_attempts = 5;
  // TERN_EVENT_RETRY_MS, --event-retry-ms: delay before the first retry of
  // an event; it doubles with each further retry.
  int event_retry_ms = 1000;
  // TERN_EVENT_TIMEOUT_MS, --event-timeout-ms: the deadline of an event
  // handler's context (and so of the calls it makes).
  int event_timeout_ms = 30000;
  // TERN_EVENT_QUEUE_TYPE, --event-queue-type: "classic" (one node) or
  // "quorum" (replicated, for a RabbitMQ cluster) subscription queues.
  std::string event_queue_type = "classic";
  // TERN_REQUEST_QUEUE_TYPE, --request-queue-type: "classic" or "quorum" for
  // a service's request queue and its .overflow and .dead-letter queues. A
  // quorum queue survives the loss of a minority of a cluster's nodes; past
  // max_queue_length it drops its *oldest* request (whose caller gets
  // RESOURCE_EXHAUSTED), where a classic queue refuses the newest. All
  // instances must agree (it is part of the queues' declaration).
  std::string request_queue_type = "classic";
  // TERN_TRACING, --tracing: "on" records a span for every call, request
  // and event and sends them, batched, to the exchange tern.traces; "off".
  std::string tracing = "on";
  // TERN_TRACE_SAMPLE, --trace-sample: the fraction of traces whose spans
  // are kept (0 to 1, e.g. 0.1), decided by the trace id so every process
  // keeps or drops the same traces. Failed and slow spans are always kept.
  std::string trace_sample = "1";
  // TERN_TRACE_SLOW_MS, --trace-slow-ms: a span at least this long is kept
  // whatever TERN_TRACE_SAMPLE says.
  int trace_slow_ms = 100;
  // trace_sample as a number (validated by from_env and parse_args).
  double trace_sample_rate() const;
  // TERN_METRICS_PORT, --metrics-port: serve Prometheus metrics at
  // http://<http_addr>:PORT/metrics (at most 65535); 0 (the default) serves none.
  int metrics_port = 0;
  // TERN_HTTP_ADDR, --http-addr: the IPv4 address the observability port
  // (/metrics) binds to. Loopback by default, so metrics are not public
  // unless a deployment says so ("0.0.0.0" in containers, where Prometheus
  // scrapes from another one). service.trace's pages follow it too.
  std::string http_addr = "127.0.0.1";

  // Defaults overridden by the TERN_* variables present (and not empty) in
  // the environment, read with tern::env. Throws ConfigError naming the
  // variable on a malformed value: "TERN_THREADS='x' is not a number".
  static Options from_env();
  // Applies --name=value or --name value flags over *this. Throws ConfigError
  // on an unknown flag or a malformed value; --help throws with the usage text.
  void parse_args(int argc, char** argv);
  // The URLs of amqp_url, in order, each with amqp_user and amqp_password
  // (when set) as its login, percent-encoded; the rest of each URL (host,
  // port, vhost, a ?query) as written. Throws ConfigError when the list is
  // empty, has an empty entry, an entry that is not an amqp:// or amqps://
  // URL or holds a space, or a password but no user to go with it.
  std::vector<std::string> amqp_urls() const;
  // threads, with 0 resolved to the core count.
  int resolved_threads() const;
};

}  // namespace tern
