// Faults of the broker itself and of the link to it, for the fault suite's
// --broker and --network runs: each runs against a private node of its own
// (tests/fault/private_broker.sh starts it), never scripts/test's.
#pragma once

#include <set>
#include <string>

#include "ledger.h"
#include "load.h"
#include "scenario.h"
#include "tern/tern.h"

// --broker: kill -9 of the broker with persistent events in flight, then a
// restart on the same data dir.
void broker_kill9(tern::Client& client, const Attempts& attempts, Scenario& s);
// --broker: SIGSTOP of the broker for 3 heartbeats with large requests in
// flight, then SIGCONT.
void broker_sigstop(tern::Client& client, const Attempts& attempts, Scenario& s);
// --network (run inside the client's namespace): all traffic on the veth
// dropped both ways for 3 heartbeats, then let through again.
void link_half_open(tern::Client& client, const Attempts& attempts, Scenario& s);
// --network: a slow (tbf) and lossy (random DROP) link under load.
void link_slow_lossy(tern::Client& client, const Attempts& attempts, Scenario& s);

// Helpers the scenarios share (broker_faults.cc).
namespace faults {
// Milliseconds a GET /metrics on host:port took until its status
// line, or -1 if it failed or took over 1 s.
int http_get_ms(const std::string& host, int port);
// A TCP port nobody listens on now (bound to 0, then closed).
int free_port();
// Keyed calls applied by two instances: the per-process idempotency
// store's known gap (a connection lost between a handler's effect and its
// reply or ack, and the call retried on, or redelivered to, the other).
std::set<std::string> applied_by_two(const ledger::Ledger& l);
// Of those, the keys whose two effects carry different attempt numbers: the
// client's retry (its attempt timed out on a slow instance or link) ran on
// the other instance while the first attempt was still running.
std::set<std::string> retried_on_two(const ledger::Ledger& l);
}  // namespace faults
