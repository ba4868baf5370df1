// service.webhook's endpoints and event handlers, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/egress.h>
#include <tern/error.h>
#include <tern/http.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "signature.h"
#include "store.h"
#include "transaction.pb.h"
#include "webhook.pb.h"

namespace webhook {

// Webhooks one account may register: bounds the fan-out of one event.
inline constexpr int kMaxWebhooksPerAccount = 20;
inline constexpr size_t kMaxUrlBytes = 2048;

// INVALID_ARGUMENT unless `url` is https://host[:port][/path][?query] or
// the same with http:// (what tern::http::fetch speaks), a host, a port in
// 1..65535 if any, no user info, fragment, spaces or control characters, at
// most kMaxUrlBytes. Code kOk otherwise.
tern::Error check_url(std::string_view url);

// INVALID_ARGUMENT if the url's host is an address literal (in any form
// http::fetch reads: 127.1, [::ffff:127.0.0.1], 2130706433...) that `policy`
// denies. A host name passes: it is checked when a delivery resolves it.
tern::Error check_destination(std::string_view url, const tern::http::EgressPolicy& policy);

// What a failed delivery is, in words that say nothing of what sits behind
// the address: "refused by the egress policy", "could not connect", "timed
// out", "TLS handshake failed", "TLS certificate not accepted" (untrusted,
// expired or not naming the host: which, the debug log says), "no valid
// HTTP response", "response too large", "HTTP 3xx (redirects are not
// followed)", "HTTP 4xx", "HTTP 5xx". This, never the
// system's reason or the peer's answer, is what the event's error carries,
// and so what traces, dead letters and their logs show.
std::string failure_class(const tern::Error& fetch_error);
std::string failure_class(int status);

// How deliveries reach the outside: tern::http::fetch, or a test's stand-in.
using Fetch = std::function<tern::Result<tern::http::Response>(
    const tern::Context&, std::string_view url, tern::http::Request, const tern::http::FetchOptions&)>;
tern::Result<tern::http::Response> fetch_over_http(const tern::Context& ctx, std::string_view url,
                                                   tern::http::Request req,
                                                   const tern::http::FetchOptions& options);
using Clock = std::function<int64_t()>;  // Unix ms now
int64_t system_now_unix_ms();

struct Config {
  // TERN_WEBHOOK_TIMEOUT_MS: how long one POST to a webhook may take in all.
  std::chrono::milliseconds timeout{10000};
  // TERN_WEBHOOK_CONNECT_TIMEOUT_MS: of which resolving, connecting and the
  // TLS handshake (https://).
  std::chrono::milliseconds connect_timeout{3000};
  // A receiver's answer is read up to this (its body is then ignored);
  // larger fails the delivery.
  size_t max_response_bytes = 64 * 1024;
  // TERN_WEBHOOK_ALLOW: the address ranges a webhook may reach although
  // the default policy denies them (loopback, private, link-local...).
  tern::http::EgressPolicy egress;
  // TERN_WEBHOOK_CA_FILE: PEM file of the CAs an https:// receiver's
  // certificate must chain to; empty: the system's store (ca-certificates).
  std::string ca_file;
};

// Handlers may run on any thread at once (the store serializes itself).
class Webhooks {
 public:
  Webhooks(Store& store, Config config = {}, Fetch fetch = fetch_over_http,
           Clock now = system_now_unix_ms)
      : store_(store), config_(config), fetch_(std::move(fetch)), now_(std::move(now)) {}

  // account_id + url -> a new webhook's id and secret. INVALID_ARGUMENT for
  // a bad url, an address literal the egress policy denies, or no account;
  // FAILED_PRECONDITION past kMaxWebhooksPerAccount.
  tern::Result<RegisterResponse> register_webhook(tern::Context& ctx, const RegisterRequest& req);
  // The account's webhooks, without their secrets.
  tern::Result<ListResponse> list(tern::Context& ctx, const ListRequest& req);
  // NOT_FOUND unless `id` is one of the account's webhooks. Deliveries
  // still queued for it are dropped when they come up.
  tern::Result<DeregisterResponse> deregister(tern::Context& ctx, const DeregisterRequest& req);

  // transaction.created: queues one webhook.delivery per webhook of the
  // transaction's account (once per transaction and webhook, however often
  // the event arrives), body = the transaction as JSON, then relays them.
  tern::Error on_transaction_created(tern::Context& ctx, const transaction::Created& event);

  // webhook.delivery: POSTs the body to the webhook, signed now
  // (Tern-Signature), through the egress policy, following no redirect.
  // A webhook that is gone: done (kOk). A refused address, a connection
  // failure, timeout or a non-2xx answer: UNAVAILABLE with failure_class()
  // as its message, so the platform retries the event with backoff and,
  // after TERN_EVENT_ATTEMPTS tries, dead-letters it. (A refusal is retried
  // too: the host's DNS may change; it costs no connection.)
  tern::Error on_delivery(tern::Context& ctx, const Delivery& delivery);

 private:
  Store& store_;
  Config config_;
  Fetch fetch_;
  Clock now_;
};

}  // namespace webhook
