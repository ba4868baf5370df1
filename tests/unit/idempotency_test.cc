#include <catch2/catch.hpp>

#include <thread>

#include "tern/idempotency.h"

using State = tern::IdempotencyStore::State;

TEST_CASE("the first request with a key runs and repeats see it in progress then done") {
  tern::MemoryIdempotencyStore store;
  CHECK(store.begin("k").state == State::kNew);
  CHECK(store.begin("k").state == State::kInProgress);
  store.finish("k", "answer");
  auto e = store.begin("k");
  CHECK(e.state == State::kDone);
  CHECK(e.reply == "answer");
  CHECK(store.begin("other").state == State::kNew);
}

TEST_CASE("an abandoned key runs again") {
  tern::MemoryIdempotencyStore store;
  REQUIRE(store.begin("k").state == State::kNew);
  store.abandon("k");
  CHECK(store.begin("k").state == State::kNew);
}

TEST_CASE("the store keeps at most its capacity and forgets the oldest first") {
  tern::MemoryIdempotencyStore store({.capacity = 3});
  for (std::string k : {"a", "b", "c", "d"}) {
    REQUIRE(store.begin(k).state == State::kNew);
    store.finish(k, k);
  }
  CHECK(store.size() <= 3);
  CHECK(store.begin("d").state == State::kDone);
  CHECK(store.begin("a").state == State::kNew);  // forgotten
}

TEST_CASE("answers are replayed only within the window") {
  tern::MemoryIdempotencyStore store({.window = std::chrono::milliseconds(30)});
  REQUIRE(store.begin("k").state == State::kNew);
  store.finish("k", "x");
  CHECK(store.begin("k").state == State::kDone);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  CHECK(store.begin("k").state == State::kNew);
}

TEST_CASE("keys in progress are never evicted, however full the store") {
  tern::MemoryIdempotencyStore store({.capacity = 2});
  REQUIRE(store.begin("running").state == State::kNew);
  for (std::string k : {"a", "b", "c", "d"}) {
    REQUIRE(store.begin(k).state == State::kNew);
    store.finish(k, k);
  }
  // Still in progress: a repeat waits for it rather than running it again.
  CHECK(store.begin("running").state == State::kInProgress);
  CHECK(store.begin("a").state == State::kNew);   // done answers went first
}

TEST_CASE("the store is bounded in bytes, the oldest answers going first") {
  tern::MemoryIdempotencyStore store({.capacity = 1000, .max_bytes = 3000});
  const std::string big(1000, 'x');
  for (std::string k : {"1", "2", "3", "4", "5"}) {
    REQUIRE(store.begin(k).state == State::kNew);
    store.finish(k, big);
  }
  CHECK(store.bytes() <= 3000);
  CHECK(store.begin("5").state == State::kDone);
  CHECK(store.begin("1").state == State::kNew);   // forgotten
}
