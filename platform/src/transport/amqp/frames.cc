// The frame IO of AmqpConnection: publishes, acks and cancels appended to
// the output buffer as whole frames, the buffer's non-blocking flush, and
// the frames read back (deliveries, returns, confirms), read by us through
// BrokerSocket (TCP or TLS), split into frames and the message path's read
// by hand (codec.h), other methods decoded by rabbitmq-c.
#include "transport/amqp/connection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "tern/log.h"
#include "transport/amqp/codec.h"

namespace tern::detail {
namespace {

constexpr size_t kFlushEarlyBytes = 64 * 1024;

using amqp_codec::kFrameHeader;
void put16(char* p, uint16_t v) { p[0] = static_cast<char>(v >> 8); p[1] = static_cast<char>(v); }
void put32(char* p, uint32_t v) { put16(p, static_cast<uint16_t>(v >> 16)); put16(p + 2, static_cast<uint16_t>(v)); }

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

}  // namespace

void AmqpConnection::cancel(const std::string& consumer_tag) {
  if (failed_) return;
  amqp_basic_cancel_t m{};
  m.consumer_tag = bytes(consumer_tag);
  m.nowait = 0;
  append_method(kChannel, AMQP_BASIC_CANCEL_METHOD, &m);
}

uint64_t AmqpConnection::publish(const Publish& p) {
  if (failed_ || (output_full() && !p.answers_delivery)) return 0;
  refused_.clear();
  // Who publishes: the broker refuses a user_id that is not the login's
  // (PRECONDITION_FAILED), so consumers can trust it.
  const bool idle = sent_ == out_.size();
  if (const auto why = amqp_codec::append_publish(&out_, p, user_, frame_max_); why != amqp_codec::Refusal::kNone) {
    refused_ = why == amqp_codec::Refusal::kProperty
                   ? "cannot encode the message's properties (a property over 255 bytes, or headers over the frame size)"
                   : fmt::format("cannot encode the publish (routing key of {} bytes, exchange of {}; 255 at most)",
                                 p.routing_key.size(), p.exchange.size());
    return 0;
  }
  if (idle) output_since_ = std::chrono::steady_clock::now();
  // Write early when much is queued: bounds memory and keeps the pipe busy.
  if (out_.size() - sent_ >= kFlushEarlyBytes) flush();
  if (failed_) return 0;
  return p.channel == kEventChannel ? next_event_tag_++ : 1;
}

bool AmqpConnection::ack(uint64_t delivery_tag) {
  if (failed_) return false;
  if (sent_ == out_.size()) output_since_ = std::chrono::steady_clock::now();
  amqp_codec::append_ack(&out_, kChannel, delivery_tag);
  return true;
}

bool AmqpConnection::requeue(uint64_t delivery_tag) {
  if (failed_) return false;
  if (sent_ == out_.size()) output_since_ = std::chrono::steady_clock::now();
  amqp_codec::append_requeue(&out_, kChannel, delivery_tag);
  return true;
}

void AmqpConnection::append_frame(uint8_t type, amqp_channel_t ch, std::string_view head,
                                  std::string_view payload) {
  if (sent_ == out_.size()) output_since_ = std::chrono::steady_clock::now();
  const size_t size = head.size() + payload.size();
  char header[kFrameHeader];
  header[0] = static_cast<char>(type);
  put16(header + 1, ch);
  put32(header + 3, static_cast<uint32_t>(size));
  out_.append(header, kFrameHeader);
  out_.append(head);
  out_.append(payload);
  out_.push_back(static_cast<char>(AMQP_FRAME_END));
}

bool AmqpConnection::encode_method(amqp_method_number_t id, void* decoded, std::string* out) {
  char buf[4 + 4096];  // short strings, and a queue's few arguments
  put32(buf, id);
  const int n = amqp_encode_method(id, decoded, amqp_bytes_t{sizeof buf - 4, buf + 4});
  if (n < 0) return false;
  out->assign(buf, 4 + static_cast<size_t>(n));
  return true;
}

void AmqpConnection::append_method(amqp_channel_t ch, amqp_method_number_t id, void* decoded) {
  std::string method;
  if (!encode_method(id, decoded, &method)) {
    fail(fmt::format("cannot encode AMQP method 0x{:08x}", id));
    return;
  }
  append_frame(AMQP_FRAME_METHOD, ch, method, {});
}

bool AmqpConnection::flush() {
  if (failed_) return false;
  while (sent_ < out_.size()) {
    const auto r = socket_->send_some(out_.data() + sent_, out_.size() - sent_);
    if (r.status == BrokerSocket::Status::kAgain) break;
    if (r.status != BrokerSocket::Status::kOk) return fail(socket_->error());
    sent_ += r.n;
    heartbeat_.sent(std::chrono::steady_clock::now());
  }
  if (sent_ == out_.size()) {
    out_.clear();
    sent_ = 0;
    if (out_.capacity() > 4 * kFlushEarlyBytes) out_.shrink_to_fit();
  } else if (sent_ > out_.size() / 2) {
    out_.erase(0, sent_);
    sent_ = 0;
  }
  return true;
}

bool AmqpConnection::decode(const char* data, size_t len, Sink& sink) {
  std::string_view in(data, len);
  amqp_codec::FrameView f;
  // A frame the last read ended inside is completed first, from a copy:
  // its header, then the rest (split_frame refuses a size over frame_max).
  while (!partial_.empty() && !in.empty() && !failed_) {
    const size_t want =
        partial_.size() < amqp_codec::kFrameHeader ? amqp_codec::kFrameHeader : amqp_codec::frame_bytes(partial_);
    const size_t take = std::min(want - partial_.size(), in.size());
    partial_.append(in.substr(0, take));
    in.remove_prefix(take);
    const long used = amqp_codec::split_frame(partial_, frame_max_, &f);
    if (used < 0) return fail("cannot decode a frame: malformed");
    if (used == 0) continue;
    on_frame(f, sink);
    partial_.clear();
  }
  while (!in.empty() && !failed_) {
    const long used = amqp_codec::split_frame(in, frame_max_, &f);
    if (used < 0) return fail("cannot decode a frame: malformed");
    if (used == 0) {
      partial_.assign(in);
      break;
    }
    on_frame(f, sink);
    in.remove_prefix(static_cast<size_t>(used));
  }
  return !failed_;
}

bool AmqpConnection::poll_messages(Sink& sink) {
  if (failed_) return false;
  // What set-up read and did not take (a delivery behind a consume-ok, the
  // start of the next frame) comes first.
  if (!stash_.empty() || !setup_in_.empty()) {
    std::string early = std::move(stash_);
    early += setup_in_;
    stash_.clear();
    setup_in_.clear();
    if (!decode(early.data(), early.size(), sink)) return false;
  }
  // Then one recv() of what the socket holds: the caller polls the socket
  // again before the next round, which saves a recv() and a poll() per
  // wake-up. Reading ourselves is how we know that anything, a heartbeat
  // frame included, came in. Over TLS each read gives one record (16 KiB at
  // most): a few per round, and never leaving decrypted bytes inside the
  // session, where no poll would see them.
  if (in_.empty()) in_.resize(128 * 1024);
  for (int reads = 0;; ++reads) {
    const auto r = socket_->recv_some(in_.data(), in_.size());
    if (r.status == BrokerSocket::Status::kAgain) return !failed_;
    if (r.status != BrokerSocket::Status::kOk) return fail(socket_->error());
    heartbeat_.received(std::chrono::steady_clock::now());
    if (!decode(in_.data(), r.n, sink)) return false;
    if (!socket_->tls() || (reads >= 7 && !socket_->pending())) return !failed_;
  }
}

void AmqpConnection::on_frame(const amqp_codec::FrameView& f, Sink& sink) {
  if (f.type == AMQP_FRAME_HEARTBEAT) return;
  if (f.type == AMQP_FRAME_METHOD) {
    uint32_t id = 0;
    std::string_view args;
    if (!amqp_codec::split_method(f.payload, &id, &args)) {
      fail("cannot decode a frame: a method frame of " + std::to_string(f.payload.size()) + " bytes");
      return;
    }
    if (id == AMQP_BASIC_DELIVER_METHOD) {   // the message path, read by hand
      amqp_codec::Deliver d;
      if (!amqp_codec::read_deliver(args, &d)) {
        fail("cannot decode a frame: a malformed basic.deliver");
        return;
      }
      current_.reset();
      current_.delivery_tag = d.delivery_tag;
      current_.redelivered = d.redelivered;
      current_.consumer_tag = d.consumer_tag;
      // (Its routing key is not kept: nothing reads a delivery's, and a
      // reply's is its caller's long reply-to name.)
      expect_ = Expect::kHeader;
      return;
    }
    // Every other method through rabbitmq-c's decoder.
    amqp_frame_t m{};
    m.frame_type = AMQP_FRAME_METHOD;
    m.channel = f.channel;
    m.payload.method.id = id;
    const int rc = amqp_decode_method(id, &pool_, amqp_bytes_t{args.size(), const_cast<char*>(args.data())},
                                      &m.payload.method.decoded);
    if (rc < 0) {
      recycle_amqp_pool(&pool_);
      fail(fmt::format("cannot decode a frame: method 0x{:08x}: {}", id, amqp_error_string2(rc)));
      return;
    }
    on_method(m, sink);
    recycle_amqp_pool(&pool_);
    return;
  }
  if (f.type == AMQP_FRAME_HEADER && expect_ == Expect::kHeader) {
    amqp_codec::ContentHeader h;
    const bool read = amqp_codec::read_content_header(f.payload, &h) &&
                      amqp_codec::for_each_string_header(h.headers, [this](std::string_view k, std::string_view v) {
                        current_.headers.emplace_back(k, v);
                        if (k == "x-tern-deliveries") current_.deliveries = Message::parse_count(v);
                      });
    if (!read) {
      fail("cannot decode a frame: a malformed content header");
      return;
    }
    current_.correlation_id = h.correlation_id;
    current_.reply_to = h.reply_to;
    current_.user_id = h.user_id;
    current_.body_size = h.body_size;
    body_received_ = 0;
    keep_body_ = current_.body_size <= max_body_ ||
                 std::find(limited_tags_.begin(), limited_tags_.end(), current_.consumer_tag) == limited_tags_.end();
    // What the header says, up to 1 MiB: a larger body grows as it comes,
    // so memory follows the bytes that arrived, not a number in a frame.
    if (keep_body_) current_.body.reserve(std::min<size_t>(current_.body_size, size_t{1} << 20));
    expect_ = Expect::kBody;
  } else if (f.type == AMQP_FRAME_BODY && expect_ == Expect::kBody) {
    body_received_ += f.payload.size();
    if (keep_body_) current_.body.append(f.payload);
  } else {
    fail(fmt::format("unexpected AMQP frame type {}", f.type));
    return;
  }
  if (expect_ == Expect::kBody && body_received_ >= current_.body_size) {
    expect_ = Expect::kMethod;
    // Handed over as it is: the next basic.deliver or basic.return starts
    // current_ afresh.
    sink.on_message(std::move(current_));
  }
}

void AmqpConnection::on_method(const amqp_frame_t& f, Sink& sink) {
  switch (f.payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD: {
      auto* r = static_cast<amqp_basic_return_t*>(f.payload.method.decoded);
      current_.reset();
      current_.returned = true;
      current_.reply_code = r->reply_code;
      current_.reply_text = str(r->reply_text);
      current_.routing_key = str(r->routing_key);
      expect_ = Expect::kHeader;
      break;
    }
    case AMQP_BASIC_ACK_METHOD: {
      auto* m = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
      if (f.channel == kEventChannel) sink.on_confirm(m->delivery_tag, m->multiple != 0, true);
      break;
    }
    case AMQP_BASIC_NACK_METHOD: {
      auto* m = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
      if (f.channel == kEventChannel) sink.on_confirm(m->delivery_tag, m->multiple != 0, false);
      break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      // A channel error (404, 403, 406...): the channel goes, not the
      // connection. Our close-ok follows the frames already queued (the
      // broker discards those on this channel), and the channel opens again
      // at once: what is queued after it goes to the new one.
      auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
      std::string why = fmt::format("channel {} closed by the broker: {} {}", f.channel, m->reply_code,
                                    str(m->reply_text));
      // Through the output buffer, after whole frames: never a write of
      // rabbitmq-c's own into a half-written frame of ours.
      amqp_channel_close_ok_t ok{};
      append_method(f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      amqp_channel_open_t open{};
      append_method(f.channel, AMQP_CHANNEL_OPEN_METHOD, &open);
      if (f.channel == kEventChannel) {
        amqp_confirm_select_t select{};
        select.nowait = 1;
        append_method(f.channel, AMQP_CONFIRM_SELECT_METHOD, &select);
        next_event_tag_ = 1;
      }
      if (!failed_) sink.on_channel_closed(*this, f.channel, why);
      break;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
    case AMQP_CONNECTION_UNBLOCKED_METHOD: {
      blocked_ = f.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD;
      if (blocked_) blocked_reason_ = str(static_cast<amqp_connection_blocked_t*>(f.payload.method.decoded)->reason);
      sink.on_blocked(*this, blocked_, blocked_reason_);
      break;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
      std::string why = fmt::format("connection closed by broker: {} {}", m->reply_code, str(m->reply_text));
      amqp_connection_close_ok_t ok{};
      append_method(0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      flush();
      closed_ = true;
      fail(std::move(why));
      break;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
      // The broker cancelled one of our consumers (consumer_cancel_notify):
      // its queue was deleted.
      auto* m = static_cast<amqp_basic_cancel_t*>(f.payload.method.decoded);
      if (m->nowait == 0) {
        amqp_basic_cancel_ok_t ok{};
        ok.consumer_tag = m->consumer_tag;
        append_method(f.channel, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
      }
      sink.on_consumer_cancelled(*this, str(m->consumer_tag));
      break;
    }
    case AMQP_BASIC_CANCEL_OK_METHOD:
    default:
      break;
  }
}

}  // namespace tern::detail
