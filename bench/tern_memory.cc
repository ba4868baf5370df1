// Resident memory per in-flight call: one client process starts K fibers,
// each waiting on service.greeter/slow_hello, and measures its RSS growth
// while all K calls are in flight.
//
//   tern_memory [-k 10000] [--delay-ms 3000] [--stack-kb KB] [--json]
#include <boost/fiber/all.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "greeter.pb.h"
#include "tern/tern.h"

namespace {

long rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 10000;
  int delay_ms = 3000;
  bool json = false;
  int stack_kb = 0;  // 0: Boost's default fiber stack
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-k" && i + 1 < argc) calls = std::stoi(argv[++i]);
    else if (a == "--delay-ms" && i + 1 < argc) delay_ms = std::stoi(argv[++i]);
    else if (a == "--json") json = true;
    else if (a == "--stack-kb" && i + 1 < argc) stack_kb = std::stoi(argv[++i]);
    else {
      fmt::print(stderr, "usage: tern_memory [-k CALLS] [--delay-ms MS] [--json]\n");
      return 2;
    }
  }
  tern::Options options = tern::Options::from_env();
  tern::Client client(options, "bench.memory");
  const auto timeout = std::chrono::milliseconds(delay_ms) + std::chrono::seconds(30);

  greeter::SlowHelloRequest req;
  req.set_name("memory");
  req.set_delay_ms(static_cast<uint32_t>(delay_ms));
  {  // warm-up: connection buffers, protobuf and allocator state
    greeter::HelloRequest hello;
    hello.set_name("warm-up");
    auto ctx = tern::Context::with_timeout(std::chrono::seconds(5));
    if (!client.call<greeter::HelloResponse>(ctx, "service.greeter", "hello", hello).ok()) {
      fmt::print(stderr, "service.greeter does not answer\n");
      return 1;
    }
  }

  const long base = rss_kib();
  long peak = 0;
  std::atomic<int> ok{0};
  std::map<std::string, int> errors;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    fibers.reserve(static_cast<size_t>(calls));
    int started = 0;
    for (int i = 0; i < calls; ++i) {
      auto body = [&] {
        ++started;
        auto ctx = tern::Context::with_timeout(timeout);
        auto r = tern::call<greeter::HelloResponse>(ctx, "service.greeter", "slow_hello", req,
                                                    {.timeout = timeout});
        if (r.ok()) ok.fetch_add(1);
        else errors[std::string(tern::code_name(r.code()))]++;
      };
      if (stack_kb > 0)
        fibers.emplace_back(std::allocator_arg,
                            boost::fibers::fixedsize_stack(static_cast<size_t>(stack_kb) * 1024), body);
      else
        fibers.emplace_back(body);
    }
    // Every fiber runs up to its wait (the request published) before this
    // one is scheduled again.
    while (started < calls) boost::this_fiber::yield();
    boost::this_fiber::yield();
    peak = rss_kib();
    for (auto& f : fibers) f.join();
  });
  const double per_call = static_cast<double>(peak - base) * 1024.0 / calls;
  if (json) {
    fmt::print("{{\"calls\":{},\"ok\":{},\"base_kib\":{},\"peak_kib\":{},\"bytes_per_call\":{:.0f}}}\n",
               calls, ok.load(), base, peak, per_call);
  } else {
    fmt::print("{} calls in flight: RSS {} KiB -> {} KiB, {:.0f} bytes per call; {} succeeded\n",
               calls, base, peak, per_call, ok.load());
    for (const auto& [code, n] : errors) fmt::print("  {} {}\n", code, n);
  }
  return ok.load() == calls ? 0 : 1;
}
