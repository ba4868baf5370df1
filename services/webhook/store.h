// service.webhook's SQLite database: webhooks, the deliveries each event
// caused, and (through tern::Outbox) the webhook.delivery events for them.
#pragma once

#include <tern/context.h>
#include <tern/outbox.h>

#include <boost/fiber/mutex.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "webhook.pb.h"

namespace webhook {

// Safe to use from every fiber and thread of the service: one fiber mutex
// serializes all use of the connection (tern::Outbox is not thread-safe).
// Only relay() suspends while holding it (on the broker's confirms), which
// parks waiting fibers, never threads. Database errors throw std::runtime_error.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests).
  explicit Store(const std::string& path);

  // Saves a webhook with its secret.
  void add(const Webhook& webhook, std::string_view secret);
  // The account's webhooks, oldest first.
  std::vector<Webhook> list(std::string_view account_id);
  int count(std::string_view account_id);
  // Deletes webhook `id` if it is the account's; whether it did.
  bool remove(std::string_view account_id, std::string_view id);

  struct Target {
    Webhook webhook;
    std::string secret;
  };
  // Webhook `id` with its secret, for a delivery; nullopt if it is gone.
  std::optional<Target> find(std::string_view id);

  // Fans an event out to the webhooks of `account_id`, in one local
  // transaction: records a delivery (event_id, webhook) for each webhook
  // that does not have one yet, and queues a webhook.delivery event for
  // each such new record only. A second call with the same event_id (the
  // event delivered again) adds nothing; a webhook registered in between
  // gets it. Returns the number of deliveries queued.
  int fan_out(const tern::Context& ctx, std::string_view account_id, std::string_view event_id,
              std::string_view event_type, std::string_view body);

  // Publishes the webhook.delivery events not yet confirmed (see
  // tern::Outbox::relay); from a tern fiber.
  int relay(const tern::Context& ctx);
  int pending();

 private:
  boost::fibers::mutex mu_;
  tern::Outbox outbox_;
};

}  // namespace webhook
