// Raw publishes into a service's request queue, for the fault suite:
// garbage, no reply_to, oversized and wrong-typed messages, with publisher
// confirms, and what became of them (the service's answers to our own reply
// queue, and the copies in its dead-letter queue). Every rabbitmq-c call's
// result is checked: a step that fails is named in `failure`.
#pragma once

#include <chrono>
#include <string>

struct BadMessages {
  static constexpr int kRounds = 5;              // of each kind
  static constexpr int kPublished = 4 * kRounds;
  // Answered INVALID_ARGUMENT: all with a reply_to (garbage, oversized, wrong type).
  static constexpr int kExpectedAnswers = 3 * kRounds;
  // Dead-lettered: garbage, no reply_to, wrong type (an oversized request is
  // only refused).
  static constexpr int kExpectedDeadLetters = 3 * kRounds;

  int confirmed = 0;      // acked by the broker (publisher confirms)
  int returned = 0;       // unroutable (mandatory): the queue was not there
  int answers = 0;        // INVALID_ARGUMENT replies that came back
  int dead_letters = 0;   // copies found in <service>.dead-letter
  std::string failure;    // the first step that failed; empty: none

  bool as_expected() const {
    return failure.empty() && confirmed == kPublished && returned == 0 && answers == kExpectedAnswers &&
           dead_letters == kExpectedDeadLetters;
  }
  std::string to_string() const;
};

// Publishes them to `service` at the broker of $TERN_AMQP_URL, waits for
// the confirms, then (bounded by `limit`) for the answers and dead letters.
BadMessages send_bad_messages(const std::string& service,
                              std::chrono::milliseconds limit = std::chrono::seconds(15));
