#include "handlers.h"

#include <tern/json.h>
#include <tern/log.h>

#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "common/crypto.h"

namespace webhook {
namespace {

tern::Error invalid_url(std::string why) {
  return tern::Error{tern::Code::kInvalidArgument, "url " + why}.with_param("field", "url");
}

}  // namespace

int64_t system_now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// The url after its scheme, if the scheme is http:// or https://.
std::optional<std::string_view> after_scheme(std::string_view url) {
  for (std::string_view scheme : {"http://", "https://"})
    if (url.starts_with(scheme)) return url.substr(scheme.size());
  return std::nullopt;
}

}  // namespace

tern::Error check_url(std::string_view url) {
  if (url.empty()) return invalid_url("is required");
  if (url.size() > kMaxUrlBytes)
    return invalid_url("is longer than " + std::to_string(kMaxUrlBytes) + " bytes");
  const auto rest = after_scheme(url);
  if (!rest) return invalid_url("must start with https:// or http://");
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f)
      return invalid_url("must not hold spaces, control or non-ASCII characters");
  if (url.find('#') != std::string_view::npos) return invalid_url("must not have a fragment");
  std::string_view authority = rest->substr(0, rest->find_first_of("/?"));
  if (authority.find('@') != std::string_view::npos) return invalid_url("must not hold user info");
  std::string_view host = authority;
  if (auto colon = authority.rfind(':');
      colon != std::string_view::npos && authority.back() != ']') {
    host = authority.substr(0, colon);
    std::string_view port = authority.substr(colon + 1);
    int n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || n < 1 || n > 65535)
      return invalid_url("has a bad port");
  }
  if (host.empty()) return invalid_url("must name a host");
  return tern::ok();
}

namespace {

// The host of a url check_url accepted, brackets kept ("[::1]").
std::string_view host_of(std::string_view url) {
  std::string_view authority = after_scheme(url).value_or(url);
  authority = authority.substr(0, authority.find_first_of("/?"));
  if (authority.starts_with("[")) return authority.substr(0, authority.find(']') + 1);
  return authority.substr(0, authority.rfind(':'));
}

}  // namespace

tern::Error check_destination(std::string_view url, const tern::http::EgressPolicy& policy) {
  auto literal = tern::http::IpAddress::numeric_host(host_of(url));
  if (!literal) return tern::ok();
  if (auto what = policy.denial(*literal))
    return invalid_url(fmt::format("points at a {} address ({}), which webhooks may not reach",
                                   *what, literal->to_string()));
  return tern::ok();
}

std::string failure_class(const tern::Error& e) {
  switch (e.code) {
    case tern::Code::kPermissionDenied: return "refused by the egress policy";
    case tern::Code::kDeadlineExceeded: return "timed out";
    case tern::Code::kResourceExhausted: return "response too large";
    default: break;
  }
  auto stage = e.params.find("stage");
  if (stage != e.params.end() && stage->second == "response") return "no valid HTTP response";
  if (stage != e.params.end() && stage->second == "tls") {
    // Which CA, which names, what OpenSSL said: the debug log only.
    auto tls = e.params.find("tls");
    if (tls != e.params.end() &&
        (tls->second == tern::http::kTlsUntrusted || tls->second == tern::http::kTlsNameMismatch))
      return "TLS certificate not accepted";
    return "TLS handshake failed";
  }
  return "could not connect";   // DNS failures too: whether an inside name exists is not told
}

std::string failure_class(int status) {
  if (status >= 300 && status < 400) return "HTTP 3xx (redirects are not followed)";
  if (status >= 100 && status < 600) return fmt::format("HTTP {}xx", status / 100);
  return "no valid HTTP response";
}

tern::Result<tern::http::Response> fetch_over_http(const tern::Context& ctx, std::string_view url,
                                                   tern::http::Request req,
                                                   const tern::http::FetchOptions& options) {
  return tern::http::fetch(ctx, url, std::move(req), options);
}

tern::Result<RegisterResponse> Webhooks::register_webhook(tern::Context&,
                                                          const RegisterRequest& req) {
  if (req.account_id().empty())
    return tern::Error{tern::Code::kInvalidArgument, "account_id is required"};
  if (tern::Error e = check_url(req.url()); !e.ok()) return e;
  if (tern::Error e = check_destination(req.url(), config_.egress); !e.ok()) return e;
  if (store_.count(req.account_id()) >= kMaxWebhooksPerAccount)
    return tern::Error{
        tern::Code::kFailedPrecondition,
        "an account may register at most " + std::to_string(kMaxWebhooksPerAccount) + " webhooks"};
  Webhook w;
  w.set_id("wh_" + common::random_hex(12));
  w.set_account_id(req.account_id());
  w.set_url(req.url());
  w.set_created_at_unix_ms(now_());
  RegisterResponse rsp;
  rsp.set_id(w.id());
  rsp.set_secret("whsec_" + common::random_hex(24));
  store_.add(w, rsp.secret());
  return rsp;
}

tern::Result<ListResponse> Webhooks::list(tern::Context&, const ListRequest& req) {
  if (req.account_id().empty())
    return tern::Error{tern::Code::kInvalidArgument, "account_id is required"};
  ListResponse rsp;
  for (Webhook& w : store_.list(req.account_id())) *rsp.add_webhooks() = std::move(w);
  return rsp;
}

tern::Result<DeregisterResponse> Webhooks::deregister(tern::Context&,
                                                      const DeregisterRequest& req) {
  if (!store_.remove(req.account_id(), req.id()))
    return tern::Error{tern::Code::kNotFound, "no webhook " + req.id()};
  return DeregisterResponse{};
}

tern::Error Webhooks::on_transaction_created(tern::Context& ctx,
                                             const transaction::Created& event) {
  const transaction::Transaction& tx = event.transaction();
  if (tx.id().empty() || tx.account_id().empty())
    return tern::Error{tern::Code::kInvalidArgument,
                       "transaction.created without a transaction id or account"};
  // Keyed on the transaction id, which stays the same when the event comes
  // again (even published anew by service.transaction's outbox).
  int queued = store_.fan_out(ctx, tx.account_id(), "transaction.created:" + tx.id(),
                              "transaction.created", tern::json::to_json(tx));
  if (queued > 0) store_.relay(ctx);  // what fails to go out now, the periodic relay sends
  return tern::ok();
}

tern::Error Webhooks::on_delivery(tern::Context& ctx, const Delivery& delivery) {
  auto target = store_.find(delivery.webhook_id());
  if (!target) {
    tern::log::info("webhook {} is gone: {} not delivered", delivery.webhook_id(),
                    delivery.event_id());
    return tern::ok();
  }
  tern::http::Request req;
  req.method = "POST";
  req.body = delivery.body();
  req.headers = {{"Content-Type", "application/json"},
                 {std::string(kSignatureHeader), sign(target->secret, now_() / 1000, req.body)},
                 {"X-Tern-Event", delivery.event_type()},
                 {"X-Tern-Event-Id", delivery.event_id()},
                 {"X-Tern-Webhook-Id", delivery.webhook_id()}};
  const tern::http::FetchOptions options{.timeout = config_.timeout,
                                         .connect_timeout = config_.connect_timeout,
                                         .max_response_bytes = config_.max_response_bytes,
                                         .egress = &config_.egress,
                                         .ca_file = config_.ca_file};
  auto rsp = fetch_(ctx, target->webhook.url(), std::move(req), options);
  std::string failure;
  if (!rsp.ok()) {
    failure = failure_class(rsp.error());
    // The system's reason (errno text, the resolved address) is for the
    // operator's debug log only, never for the error the account can see.
    tern::log::debug("webhook {}: {}", delivery.webhook_id(), rsp.error().to_string());
  } else if (rsp->status < 200 || rsp->status > 299) {
    failure = failure_class(rsp->status);
  }
  if (!failure.empty())
    return tern::Error{tern::Code::kUnavailable, "webhook " + delivery.webhook_id() + ": " + failure}
        .with_param("failure", failure);
  tern::log::debug("delivered {} to webhook {}", delivery.event_id(), delivery.webhook_id());
  return tern::ok();
}

}  // namespace webhook
