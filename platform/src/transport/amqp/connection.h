// A thin C++ layer over one rabbitmq-c connection with one channel.
// Not thread-safe: owned and used by exactly one runtime thread.
#pragma once

#include <amqp.h>

#include <charconv>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "transport/amqp/broker_socket.h"
#include "transport/amqp/heartbeat.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

// A message received from the broker: a delivery to one of our consumers, or
// a mandatory publish the broker returned as unroutable.
struct Message {
  bool returned = false;          // basic.return rather than basic.deliver
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string consumer_tag;
  std::string routing_key;        // for returns: the key that found no queue
  uint16_t reply_code = 0;        // for returns: 312 NO_ROUTE, ...
  std::string reply_text;
  std::string correlation_id;
  std::string reply_to;
  std::string user_id;            // the publisher's broker user, checked by the broker
  std::string body;
  // What the content header announced. Over the connection's body limit
  // for its consumer (AmqpConnection::limit_bodies) the body is not kept:
  // `body` stays empty and only the size is known.
  size_t body_size = 0;
  uint32_t deliveries = 1;        // header x-tern-deliveries: this is the n-th delivery
  std::vector<std::pair<std::string, std::string>> headers;  // the string-valued ones
  std::string header(std::string_view key) const {
    for (const auto& [k, v] : headers)
      if (k == key) return v;
    return {};
  }
  // A count header (x-tern-attempt): its value if it is a whole number
  // >= 1, else 1. Strict: "2x", "-3" or "" count as 1.
  uint32_t count_header(std::string_view key) const { return parse_count(header(key)); }
  static uint32_t parse_count(std::string_view text) {
    uint32_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    return ec == std::errc() && end == text.data() + text.size() && n >= 1 ? n : 1;
  }
  uint64_t generation = 0;        // the BrokerLink connection it arrived on
  // Who published it, verified: its user_id; but a copy this process's own
  // user (`own`) republished (a retry, a recount) names the original
  // publisher in the header x-tern-on-behalf-of, trusted only then: nobody
  // else can publish as `own`.
  std::string verified_user(const std::string& own) const {
    if (!own.empty() && user_id == own) {
      for (const auto& [k, v] : headers)
        if (k == kOnBehalfOf) return v;
    }
    return user_id;
  }
  static constexpr const char* kOnBehalfOf = "x-tern-on-behalf-of";
  // Every field back to its default, the strings' buffers kept: a Message
  // used again holds the next delivery without allocating.
  void reset();
  void swap(Message& other) noexcept;
};

// A queue's arguments as an AMQP table, pointing into *entries (and into
// args): both must outlive the table. For the blocking and the nowait
// declarations alike.
amqp_table_t queue_arguments(const topology::QueueArgs& args, std::vector<amqp_table_entry_t>* entries);

struct AmqpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace amqp_codec {
struct FrameView;
}

class AmqpConnection final : public topology::Declarer {
 public:
  static constexpr amqp_channel_t kChannel = 1;       // requests, replies, acks
  static constexpr amqp_channel_t kEventChannel = 2;  // events, in confirm mode
  // Cancel notices and span batches: publishes to exchanges an operator can
  // delete or forbid, whose channel error must not close kChannel (and with
  // it the direct reply-to consumer every waiting call needs).
  static constexpr amqp_channel_t kNoticeChannel = 3;
  // publish() refuses more once this much output waits for the socket
  // (a blocked connection, a slow broker), except Publish::answers_delivery.
  static constexpr size_t kMaxOutputBytes = size_t{16} << 20;

  // Connects (over TLS for amqps://), logs in and opens the channel. Blocks,
  // up to 5 s to connect and 10 s for each reply; throws AmqpError. `url`
  // as BrokerUrl parses it.
  AmqpConnection(const std::string& url, int heartbeat_s, const std::string& connection_name);
  ~AmqpConnection() override;
  AmqpConnection(const AmqpConnection&) = delete;
  AmqpConnection& operator=(const AmqpConnection&) = delete;

  int fd() const;
  // The broker user it logged in as: the user_id of everything it publishes.
  const std::string& user() const { return user_; }
  // Deliveries to the consumer tags `tags` whose content header announces
  // more than `max_bytes` are not kept: their body frames are counted and
  // dropped as they come, and the Message goes on with only body_size, so a
  // body over the limit costs no memory however large it is.
  void limit_bodies(size_t max_bytes, std::vector<std::string> tags) {
    max_body_ = max_bytes;
    limited_tags_ = std::move(tags);
  }

  // topology::Declarer: synchronous set-up methods on kChannel; they block
  // until the broker answers and throw AmqpError. Call only before serving.
  using QueueArgs = topology::QueueArgs;
  void declare_queue(const std::string& name, const QueueArgs& args) override;
  std::string declare_private_queue() override;
  void declare_exchange(const std::string& name, const char* type) override;
  void bind(const std::string& queue, const std::string& exchange, const std::string& key) override;
  void qos(uint16_t prefetch) override;
  void consume(const std::string& queue, const std::string& consumer_tag, bool no_ack) override;
  // Opens kEventChannel in publisher-confirm mode, and kNoticeChannel.
  void open_event_channel() override;
  // The exclusive queue declare_private_queue() made, or empty.
  const std::string& private_queue() const { return private_queue_; }

  // Output is buffered: publish, ack and cancel append whole frames to an
  // output buffer, and flush() writes as much of it as the socket takes in
  // one send(). So a reply and its ack, or many requests, leave in one
  // system call, and a full socket never blocks the thread.

  // Asynchronous: the cancel-ok arrives later and is ignored.
  void cancel(const std::string& consumer_tag);

  struct Publish {
    std::string_view routing_key;
    std::string_view body;
    std::string_view correlation_id;
    std::string_view reply_to;       // empty: none
    std::string_view expiration_ms;  // empty: none
    std::string_view type;           // empty: none
    std::string_view message_id;     // empty: none
    std::string_view exchange;       // empty: the default exchange
    amqp_channel_t channel = kChannel;
    // AMQP headers, all string-valued; null for none.
    const std::vector<std::pair<std::string, std::string>>* headers = nullptr;
    bool mandatory = false;
    bool persistent = false;
    // A reply or a republish: one per delivery in flight, so bounded by the
    // prefetch; never refused for a full output buffer.
    bool answers_delivery = false;
  };
  // Queues a publish. Returns its delivery tag on kEventChannel (the number
  // the broker's confirm will carry), 1 on other channels, 0 if the
  // connection failed (error() tells why), or if this message cannot be
  // encoded (refused() tells why; the connection is fine), or, output_full(),
  // if kMaxOutputBytes wait already (nothing was queued). Header values
  // are cut to kMaxHeaderValueBytes.
  uint64_t publish(const Publish& p);
  static constexpr size_t kMaxHeaderValueBytes = 1024;
  // Why the last publish() was refused for the message itself, or empty.
  const std::string& refused() const { return refused_; }
  // v cut to at most max bytes, not inside a UTF-8 sequence.
  static std::string_view truncated(std::string_view v, size_t max);
  bool output_full() const { return output_bytes() >= kMaxOutputBytes; }
  // Queues a method frame (a nowait declaration: see AsyncDeclarer).
  void queue_method(amqp_channel_t ch, amqp_method_number_t id, void* decoded) { append_method(ch, id, decoded); }
  bool ack(uint64_t delivery_tag);
  // basic.reject with requeue: the broker delivers it again (redelivered).
  bool requeue(uint64_t delivery_tag);

  // Writes buffered output without blocking. false if the connection failed.
  bool flush();
  // Output is waiting for the socket to take it.
  bool has_output() const { return sent_ < out_.size(); }
  // When the oldest byte still waiting was queued.
  std::chrono::steady_clock::time_point output_since() const { return output_since_; }
  size_t output_bytes() const { return out_.size() - sent_; }

  // Reads what the socket holds (one recv(), without blocking) and calls
  // on_message for each complete message. Never writes to the socket, so it
  // may be called while a frame is half written: what the connection must
  // answer (channel.close-ok) is appended to the output buffer. Returns
  // false once the connection is unusable.
  struct Sink {
    virtual void on_message(Message&& m) = 0;
    // A publisher confirm on kEventChannel: every tag up to `tag` if multiple.
    virtual void on_confirm(uint64_t tag, bool multiple, bool ack) = 0;
    // connection.blocked (blocked) or connection.unblocked: the broker
    // stopped or resumed reading `c` for a resource alarm; reason is the
    // broker's ("low on memory", "low on disk space").
    virtual void on_blocked(AmqpConnection& c, bool blocked, const std::string& reason) = 0;
    // basic.cancel from the broker: the consumer `tag` is gone (its queue
    // was deleted). Unhandled, the Sink calls c.fail_with().
    virtual void on_consumer_cancelled(AmqpConnection& c, const std::string& tag) = 0;
    // channel.close from the broker: `c` has queued close-ok and opened `ch`
    // again (in confirm mode, for kEventChannel, with its tags from 1), with
    // no consumers and no qos. The broker discarded every frame on `ch` from
    // the one that caused the error until our close-ok.
    virtual void on_channel_closed(AmqpConnection& c, amqp_channel_t ch, const std::string& why) = 0;
  };
  bool poll_messages(Sink& sink);
  // Input already inside this process (frames read during set-up, or a TLS
  // record's rest): poll_messages has work whatever the socket says.
  bool has_buffered_input() const { return !stash_.empty() || !setup_in_.empty() || (socket_ && socket_->pending()); }

  // Heartbeats: kept from login on, by whichever thread uses the
  // connection (the set-up thread while it waits for replies, then the
  // serving thread): keep_heartbeat() appends a heartbeat frame to the
  // output buffer, after whole frames, and judges the broker's silence.
  // own_heartbeats() hands the connection to the serving thread, whose
  // looks wake_up() then checks. false once failed.
  bool own_heartbeats();
  // Appends a heartbeat frame when nothing was written for heartbeat / 2
  // (and nothing waits to be written); fails the connection ("missed
  // heartbeats: ...") once nothing at all was received for 2 heartbeats,
  // whatever output is waiting. false once the connection failed.
  bool keep_heartbeat(std::chrono::steady_clock::time_point now);
  // Before reading, each round: fails the connection if this round comes 2
  // heartbeats later than keep_heartbeat() said the next one was due (the
  // process was stopped, or its thread blocked), so deliveries the broker
  // has requeued meanwhile are not run here as well. false once failed.
  bool wake_up(std::chrono::steady_clock::time_point now);
  // The next moment keep_heartbeat() has something to do; time_point::max()
  // with heartbeats off.
  std::chrono::steady_clock::time_point heartbeat_due() const {
    return heartbeat_.next_due(!has_output());
  }
  // The heartbeat negotiated at login, in seconds (0: off).
  int heartbeat_s() const { return static_cast<int>(heartbeat_.interval().count()); }

  // Why the connection failed, once it has.
  const std::string& error() const { return error_; }
  bool failed() const { return failed_; }
  // Fails the connection now (the Sink gave up on recovering part of it).
  void fail_with(std::string why) { fail(std::move(why)); }
  // Between connection.blocked and connection.unblocked.
  bool blocked() const { return blocked_; }
  const std::string& blocked_reason() const { return blocked_reason_; }

  // Closes gracefully (blocks up to 2 s for close-ok).
  void close();

 private:
  bool fail(std::string why);
  void login(const BrokerUrl& url, int heartbeat_s, const std::string& connection_name);
  // Set-up: queues a method and waits (blocking, up to 10 s) for its reply
  // on channel ch, which stays valid until the next call. Throws AmqpError
  // "<what>: <why>" (a close from the broker, no reply, a lost socket).
  amqp_frame_t rpc(amqp_channel_t ch, amqp_method_number_t id, void* decoded, amqp_method_number_t reply,
                   std::string_view what);
  amqp_frame_t await(amqp_channel_t ch, amqp_method_number_t reply, std::chrono::steady_clock::time_point deadline,
                     std::string_view what);
  // Splits bytes read into frames, each whole one to on_frame.
  bool decode(const char* data, size_t len, Sink& sink);
  void on_frame(const amqp_codec::FrameView& f, Sink& sink);
  void on_method(const amqp_frame_t& f, Sink& sink);
  void append_method(amqp_channel_t ch, amqp_method_number_t id, void* decoded);
  bool encode_method(amqp_method_number_t id, void* decoded, std::string* out);
  void append_frame(uint8_t type, amqp_channel_t ch, std::string_view head, std::string_view payload);

  amqp_connection_state_t conn_ = nullptr;   // rabbitmq-c: codec only, no socket
  std::unique_ptr<BrokerSocket> socket_;
  std::string setup_in_;   // read during set-up, not yet split into frames
  std::string stash_;      // whole frames set-up read that were not its replies: for poll_messages
  bool failed_ = false;
  bool closed_ = false;
  std::string error_;
  std::string refused_;
  std::string user_;
  bool blocked_ = false;
  std::string blocked_reason_;
  std::string private_queue_;
  size_t frame_max_ = 131072;
  uint64_t next_event_tag_ = 1;   // delivery tag of the next publish on kEventChannel
  std::string out_;   // whole frames; out_[0, sent_) already written
  std::chrono::steady_clock::time_point output_since_{};
  size_t sent_ = 0;
  Heartbeat heartbeat_{std::chrono::seconds(0), std::chrono::steady_clock::now()};
  bool own_heartbeats_ = false;
  std::vector<char> in_;   // what one recv() reads
  std::string partial_;    // a frame the last read ended inside
  amqp_pool_t pool_;       // for methods rabbitmq-c decodes

  // Content being assembled: method, then header, then body frames.
  enum class Expect { kMethod, kHeader, kBody } expect_ = Expect::kMethod;
  Message current_;
  size_t body_received_ = 0;
  bool keep_body_ = true;
  size_t max_body_ = SIZE_MAX;
  std::vector<std::string> limited_tags_;
};

}  // namespace tern::detail
