// service.webhook's endpoints and event handlers, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>
#include <tern/http.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "store.h"
#include "transaction.pb.h"
#include "webhook.pb.h"

namespace webhook {

// Webhooks one account may register: bounds the fan-out of one event.
inline constexpr int kMaxWebhooksPerAccount = 20;
inline constexpr size_t kMaxUrlBytes = 2048;

// INVALID_ARGUMENT unless `url` is http://host[:port][/path][?query]: plain
// HTTP (what tern::http::fetch speaks), a host, a port in 1..65535 if any,
// no user info, fragment, spaces or control characters, at most
// kMaxUrlBytes. Code kOk otherwise.
tern::Error check_url(std::string_view url);

// X-Tern-Signature: lowercase hex HMAC-SHA256 of the exact body bytes,
// keyed by the webhook's secret.
std::string sign(std::string_view secret, std::string_view body);

// How deliveries reach the outside: tern::http::fetch, or a test's stand-in.
using Fetch = std::function<tern::Result<tern::http::Response>(
    const tern::Context&, std::string_view url, tern::http::Request,
    std::chrono::milliseconds timeout)>;
using Clock = std::function<int64_t()>;  // Unix ms now
int64_t system_now_unix_ms();

struct Config {
  // TERN_WEBHOOK_TIMEOUT_MS: how long one POST to a webhook may take.
  std::chrono::milliseconds timeout{10000};
};

// Handlers may run on any thread at once (the store serializes itself).
class Webhooks {
 public:
  Webhooks(Store& store, Config config = {}, Fetch fetch = tern::http::fetch,
           Clock now = system_now_unix_ms)
      : store_(store), config_(config), fetch_(std::move(fetch)), now_(std::move(now)) {}

  // account_id + url -> a new webhook's id and secret. INVALID_ARGUMENT for
  // a bad url or no account; FAILED_PRECONDITION past kMaxWebhooksPerAccount.
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

  // webhook.delivery: POSTs the body to the webhook with X-Tern-Signature.
  // A webhook that is gone: done (kOk). A connection failure, timeout or a
  // non-2xx answer: UNAVAILABLE, so the platform retries the event with
  // backoff and, after TERN_EVENT_ATTEMPTS tries, dead-letters it.
  tern::Error on_delivery(tern::Context& ctx, const Delivery& delivery);

 private:
  Store& store_;
  Config config_;
  Fetch fetch_;
  Clock now_;
};

}  // namespace webhook
