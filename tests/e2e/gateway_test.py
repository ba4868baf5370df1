#!/usr/bin/python3
"""The gateway in front of the greeter, over real HTTP and a real broker.

    gateway_test.py GATEWAY_BIN GREETER_BIN
"""
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from checks import check, failures, free_port, report, service_envs


def request(base, method, path, raw=None, headers=None):
    req = urllib.request.Request(base + path, data=raw, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def slow_requests(port, n, delay_ms):
    """n concurrent POST /greeter/slow_hello on n connections; returns statuses."""
    body = json.dumps({"name": "x", "delay_ms": delay_ms}).encode()

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /greeter/slow_hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        data = await reader.read()
        writer.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0

    return await asyncio.gather(*[one() for _ in range(n)])


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def main():
    # Many sockets at once: lift the soft limit on open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    gateway_bin, greeter_bin = sys.argv[1], sys.argv[2]
    if not os.environ.get("TERN_AMQP_URL"):
        print("TERN_AMQP_URL is not set: run through scripts/test")
        return 2
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    routes = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    routes.write("/greeter service.greeter\n/ghost service.ghost\n/{name} api.{name}\n")
    routes.close()
    env = dict(os.environ, TERN_GATEWAY_PORT=str(port), TERN_GATEWAY_ADDRESS="127.0.0.1",
               TERN_GATEWAY_ROUTES=routes.name, TERN_GATEWAY_MAX_BODY_KB="4", TERN_THREADS="2")
    # Each as its own broker user, as scripts/up runs them.
    envs = service_envs(["greeter", "gateway"], env)
    greeter = subprocess.Popen([greeter_bin], env=dict(envs["greeter"], TERN_CONCURRENCY="2000"))
    gateway = subprocess.Popen([gateway_bin], env=envs["gateway"])
    try:
        end = time.monotonic() + 30
        status = 0
        while time.monotonic() < end and status != 200:
            try:
                status, _, _ = request(base, "POST", "/greeter/hello", b'{"name":"Ada"}')
            except OSError:
                time.sleep(0.05)
        check("the gateway starts and reaches the greeter", status == 200)

        status, headers, body = request(base, "POST", "/greeter/hello", b'{"name":"Ada"}',
                                        {"X-Request-Id": "req-123"})
        check("POST /greeter/hello is the greeter's reply as JSON",
              status == 200 and json.loads(body) == {"greeting": "Hello, Ada!"}, f"{status} {body}")
        check("the request id is echoed and a trace id given",
              headers.get("X-Request-Id") == "req-123" and len(headers.get("X-Trace-Id", "")) == 32, f"{headers}")

        status, _, body = request(base, "POST", "/greeter/hello", b'{"name": ')
        check("bad JSON is 400 INVALID_ARGUMENT",
              status == 400 and json.loads(body)["error"]["code"] == "INVALID_ARGUMENT", f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello", b'{"nickname":"x"}')
        check("an unknown field is 400", status == 400, f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello", b'{}')
        check("the handler's INVALID_ARGUMENT is 400", status == 400 and b"name is required" in body, f"{status} {body}")
        status, headers, body = request(base, "GET", "/greeter/hello")
        check("a wrong method is 405 with Allow", status == 405 and headers.get("Allow") == "POST", f"{status} {headers}")
        status, _, body = request(base, "GET", "/greeter/nothing-here")
        check("a path the service has no route for is 404", status == 404, f"{status} {body}")
        status, _, body = request(base, "GET", "/nosuchservice/x")
        check("a path no service is behind is 404", status == 404, f"{status} {body}")
        status, _, body = request(base, "GET", "/ghost/x")
        check("a listed service that is not running is 503", status == 503, f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello?name=%FF")
        check("a query field that is not UTF-8 is 400 at the edge", status == 400 and b"not valid UTF-8" in body,
              f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello", b'{"name":"\xff"}')
        check("a JSON body that is not UTF-8 is 400", status == 400, f"{status} {body}")
        status, _, body = request(base, "GET", "/" + "s" * 300 + "/x")
        check("a first path segment over 255 bytes is 400, not a broken broker connection",
              status == 400, f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello", b'{"name":"Ada"}')
        check("...and the next request is served", status == 200, f"{status} {body}")
        status, _, body = request(base, "POST", "/greeter/hello", b'{"name":"' + b"x" * 5000 + b'"}')
        check("a body over the limit is 413", status == 413, f"{status}")
        start = time.monotonic()
        status, _, body = request(base, "POST", "/greeter/slow_hello", b'{"name":"x","delay_ms":5000}',
                                  {"X-Tern-Timeout-Ms": "500"})
        took = time.monotonic() - start
        check("a request past its deadline is 504 by the deadline", status == 504 and took < 0.5 + 1.0,   # generous: a busy 2-core machine
              f"{status} in {took:.2f} s")

        # A thousand slow requests at once: a fiber each, not a thread each.
        start = time.monotonic()
        statuses = asyncio.run(slow_requests(port, 1000, 1000))
        took = time.monotonic() - start
        threads = threads_of(gateway.pid)
        print(f"1000 concurrent 1 s requests: {statuses.count(200)} ok in {took:.2f} s; gateway threads {threads}")
        check("1000 concurrent slow requests all succeed", statuses.count(200) == 1000,
              f"{len([s for s in statuses if s != 200])} failed")
        check("the gateway holds them on a few threads", 0 < threads < 16, f"{threads} threads")

        gateway.send_signal(signal.SIGTERM)
        check("the gateway exits 0 on SIGTERM", gateway.wait(timeout=30) == 0)
    finally:
        for p in (gateway, greeter):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        os.unlink(routes.name)
    return report()


if __name__ == "__main__":
    sys.exit(main())
