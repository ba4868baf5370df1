// tern's side of the events benchmark: tern::publish with confirms, at most
// --window publishes awaiting confirms (one per fiber), into a durable queue.
//
//   tern_publish -n N [--size 100] [--window 1000] [--json]
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <boost/fiber/all.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "greeter.pb.h"
#include "tern/tern.h"

namespace {

constexpr const char* kQueue = "bench.events.tern";

// Declares (or deletes) the durable queue the events land in, with plain
// rabbitmq-c: tern has no subscriber API yet.
void admin(const std::string& url, const std::string& routing_key, bool remove) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) throw std::runtime_error("bad URL");
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK)
    throw std::runtime_error("cannot connect");
  amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  amqp_channel_open(conn, 1);
  if (remove) {
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(kQueue), 0, 0);
  } else {
    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(tern::kEventExchange), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(kQueue), 0, 1, 0, 0, amqp_empty_table);
    amqp_queue_bind(conn, 1, amqp_cstring_bytes(kQueue), amqp_cstring_bytes(tern::kEventExchange),
                    amqp_cstring_bytes(routing_key.c_str()), amqp_empty_table);
    amqp_queue_purge(conn, 1, amqp_cstring_bytes(kQueue));
  }
  if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
    throw std::runtime_error("queue set-up failed");
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

}  // namespace

int main(int argc, char** argv) {
  long n = 50000;
  int size = 100, window = 1000;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::stol(argv[++i]);
    else if (a == "--size" && i + 1 < argc) size = std::stoi(argv[++i]);
    else if (a == "--window" && i + 1 < argc) window = std::stoi(argv[++i]);
    else if (a == "--json") json = true;
    else {
      fmt::print(stderr, "usage: tern_publish -n N [--size 100] [--window 1000] [--json]\n");
      return 2;
    }
  }
  tern::Options options = tern::Options::from_env();
  const std::string key = tern::event_routing_key(greeter::HelloRequest::descriptor());
  admin(options.amqp_url, key, /*remove=*/false);

  greeter::HelloRequest event;
  event.set_name(std::string(static_cast<size_t>(size), 'x'));
  tern::Client client(options, "bench.publish");
  std::map<std::string, long> errors;
  long issued = 0, ok = 0;
  auto start = std::chrono::steady_clock::now();
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int w = 0; w < window; ++w) {
      fibers.emplace_back([&] {
        while (issued < n) {
          ++issued;
          auto ctx = tern::Context::with_timeout(std::chrono::seconds(30));
          tern::Error e = tern::publish(ctx, event);
          if (e.ok()) ++ok;
          else errors[std::string(tern::code_name(e.code))]++;
        }
      });
    }
    for (auto& f : fibers) f.join();
  });
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  admin(options.amqp_url, key, /*remove=*/true);

  std::string errs;
  for (const auto& [code, count] : errors) errs += fmt::format("{}\"{}\":{}", errs.empty() ? "" : ",", code, count);
  if (json) {
    fmt::print("{{\"messages\":{},\"errors\":{{{}}},\"seconds\":{:.3f},\"throughput\":{:.1f}}}\n", ok,
               errs, seconds, static_cast<double>(ok) / seconds);
  } else {
    fmt::print("{} events confirmed in {:.2f} s: {:.0f} events/s; errors: {}\n", ok, seconds,
               static_cast<double>(ok) / seconds, errs.empty() ? "none" : errs);
  }
  return errors.empty() ? 0 : 1;
}
