#include <unistd.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "common/crypto.h"
#include "common/offload.h"
#include "common/sqlite.h"

using common::to_hex;

TEST_CASE("hmac_sha256 matches RFC 4231 test cases 1 and 2") {
  CHECK(to_hex(common::hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(to_hex(common::hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("sha256 matches the FIPS 180-2 'abc' vector") {
  CHECK(to_hex(common::sha256("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("hex round-trips and rejects what is not hex") {
  const std::string bytes("\x00\x7f\x80\xff", 4);
  CHECK(to_hex(bytes) == "007f80ff");
  CHECK(common::from_hex("007F80ff") == bytes);
  CHECK_FALSE(common::from_hex("abc").has_value());
  CHECK_FALSE(common::from_hex("zz").has_value());
}

TEST_CASE("random_hex gives distinct lowercase hex of the asked length") {
  std::string a = common::random_hex(16), b = common::random_hex(16);
  CHECK(a.size() == 32);
  CHECK(a != b);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
}

TEST_CASE("equal_constant_time compares contents and lengths") {
  CHECK(common::equal_constant_time("secret", "secret"));
  CHECK_FALSE(common::equal_constant_time("secret", "secreT"));
  CHECK_FALSE(common::equal_constant_time("secret", "secrets"));
  CHECK(common::equal_constant_time("", ""));
}

TEST_CASE("data_file creates the data directory and names the file after the service") {
  auto dir =
      std::filesystem::temp_directory_path() / ("common-test-" + std::to_string(getpid())) / "a";
  std::string path = common::data_file(dir.string(), "service.balance");
  CHECK(std::filesystem::is_directory(dir));
  CHECK(path == (dir / "service.balance.db").string());
  common::Database db(path);
  common::exec(db.get(), "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)");
  CHECK(db.transaction([&] {
    common::Statement(db.get(), "INSERT INTO t VALUES (?, ?)")
        .bind(1, "x")
        .bind(2, int64_t{7})
        .step();
    return true;
  }));
  CHECK_FALSE(db.transaction([&] {
    common::Statement(db.get(), "INSERT INTO t VALUES ('y', 1)").step();
    return false;
  }));
  CHECK_THROWS(db.transaction([&]() -> bool {
    common::Statement(db.get(), "INSERT INTO t VALUES ('z', 1)").step();
    throw std::runtime_error("no");
  }));
  common::Statement s(db.get(), "SELECT k, v FROM t ORDER BY k");
  REQUIRE(s.step());
  CHECK(s.text(0) == "x");
  CHECK(s.int64(1) == 7);
  CHECK_FALSE(s.step());
  std::filesystem::remove_all(dir.parent_path());
}

TEST_CASE("pbkdf2_sha256 matches RFC 7914's PBKDF2-HMAC-SHA256 vector") {
  // P="passwd", S="salt", c=1: the first 32 bytes of the 64 in RFC 7914 §11.
  CHECK(common::to_hex(common::pbkdf2_sha256("passwd", "salt", 1)) ==
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
  CHECK(common::pbkdf2_sha256("passwd", "salt", 2) != common::pbkdf2_sha256("passwd", "salt", 1));
  CHECK_THROWS(common::pbkdf2_sha256("passwd", "salt", 0));
}

TEST_CASE("offload runs work on the pool while the other fibers of the thread go on") {
  std::atomic<int> ticks{0};
  std::atomic<bool> done{false};
  int ticks_while_working = -1;
  std::thread::id worker;
  boost::fibers::fiber waiting([&] {
    ticks_while_working = common::offload([&] {
      worker = std::this_thread::get_id();
      const int before = ticks.load();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));   // blocking work
      return ticks.load() - before;
    });
    done = true;
  });
  boost::fibers::fiber ticking([&] {
    while (!done) {
      ++ticks;
      boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
    }
  });
  waiting.join();
  ticking.join();
  CHECK(worker != std::this_thread::get_id());
  CHECK(ticks_while_working > 20);   // ~300 if the thread was free; 0 if it was blocked
  CHECK_THROWS_AS(common::offload([]() -> int { throw std::runtime_error("no"); }), std::runtime_error);
}
