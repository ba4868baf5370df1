#!/usr/bin/python3
"""A tern client in Python, written from docs/protocol.md and the .proto files
alone, run against the real greeter: proof that the wire protocol is
documented well enough to call a tern service from another language, and
that bad input from one gets a typed error (a body over the size limit
without being read into memory).

    TERN_AMQP_URL=amqp://USER:PASSWORD@127.0.0.1:PORT/ TERN_RABBIT_URL=amqp://127.0.0.1:PORT/ \\
        /usr/bin/python3 tests/integration/pika_client_test.py \\
        --repo-root . --greeter build/bin/greeter

Needs Debian's python3-pika and python3-protobuf, and protoc (run it with
/usr/bin/python3, which sees them). Starts the greeter itself, checks seven
calls, stops it with SIGTERM; prints one line per passed check, then
"N passed, M failed". Exits non-zero at the first failure.
"""

import argparse
import os
import secrets
import signal
import subprocess
import threading
import sys
import tempfile
import time

import pika

# The greeter runs as its own broker user, made as scripts/up makes it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "e2e"))
from checks import service_envs  # noqa: E402

SERVICE = "service.greeter"
REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class CheckFailed(Exception):
    pass


def generate_modules(repo_root, out_dir):
    """protoc --python_out; returns (envelope_pb2, greeter_pb2)."""
    subprocess.run(
        ["protoc", f"--python_out={out_dir}", "-I", "proto", "-I", "services/greeter",
         "proto/tern/envelope.proto", "services/greeter/greeter.proto"],
        cwd=repo_root, check=True)
    # A regular package, so no other "tern" on sys.path can shadow it.
    open(os.path.join(out_dir, "tern", "__init__.py"), "w").close()
    sys.path.insert(0, out_dir)
    from tern import envelope_pb2  # noqa: E402
    import greeter_pb2  # noqa: E402
    return envelope_pb2, greeter_pb2


class Client:
    """One connection, one channel: requests go out on the channel that
    consumes amq.rabbitmq.reply-to (direct reply-to requires it)."""

    def __init__(self, url, pb):
        self.pb = pb
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        self.replies = {}    # correlation_id -> (properties, body)
        self.returned = {}   # correlation_id -> (reply_code, reply_text)
        self.ch.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
        self.ch.add_on_return_callback(self._on_return)

    def _on_reply(self, _ch, _method, props, body):
        self.replies[props.correlation_id] = (props, body)

    def _on_return(self, _ch, method, props, _body):
        self.returned[props.correlation_id] = (method.reply_code, method.reply_text)

    def new_request(self, endpoint, body, deadline_ms_from_now):
        req = self.pb.Request(
            id=secrets.token_hex(16), service=SERVICE, endpoint=endpoint, body=body,
            deadline_unix_ms=int(time.time() * 1000) + deadline_ms_from_now,
            trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8),
            parent_span_id="", attempt=1)
        setattr(req, "from", "pika_client_test")  # `from` is a Python keyword
        return req

    def publish(self, correlation_id, endpoint, payload, expiration_ms):
        props = pika.BasicProperties(
            content_type="application/x-protobuf", delivery_mode=1,
            correlation_id=correlation_id, reply_to=REPLY_TO, type=endpoint,
            expiration=None if expiration_ms is None else str(expiration_ms))
        self.ch.basic_publish("", SERVICE, payload, props, mandatory=True)

    def await_reply(self, correlation_id, timeout_s, alive=None):
        """The tern.v1.Response for correlation_id, as (properties, Response)."""
        give_up = time.monotonic() + timeout_s
        while correlation_id not in self.replies:
            if correlation_id in self.returned:
                code, text = self.returned.pop(correlation_id)
                raise CheckFailed(f"the broker returned the request: {code} {text}")
            if alive is not None:
                alive()
            left = give_up - time.monotonic()
            if left <= 0:
                raise CheckFailed(f"no reply within {timeout_s:.0f} s")
            self.conn.process_data_events(time_limit=min(left, 0.25))
        props, body = self.replies.pop(correlation_id)
        resp = self.pb.Response()
        try:
            resp.ParseFromString(body)
        except Exception as e:  # google.protobuf.message.DecodeError
            raise CheckFailed(f"the reply is not a tern.v1.Response: {e}") from None
        return props, resp

    def call(self, endpoint, body, deadline_ms=5000, expiration=True, timeout_s=REPLY_TIMEOUT_S,
             alive=None):
        req = self.new_request(endpoint, body, deadline_ms)
        self.publish(req.id, endpoint, req.SerializeToString(),
                     deadline_ms if expiration else None)
        return req, *self.await_reply(req.id, timeout_s, alive)

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def code_name(pb, resp):
    return pb.Code.Name(resp.error.code) if resp.HasField("error") else "OK"


def expect_error(pb, resp, code, message=None):
    if not resp.HasField("error"):
        raise CheckFailed(f"expected {code}, got a success reply")
    got = code_name(pb, resp)
    if got != code:
        raise CheckFailed(f"expected {code}, got {got}: {resp.error.message}")
    if resp.error.retryable:
        raise CheckFailed(f"{code} should not be retryable")
    if message is not None and resp.error.message != message:
        raise CheckFailed(f"expected message {message!r}, got {resp.error.message!r}")
    return f"{got}: {resp.error.message}"


def expect_hello(pb, gpb, req, props, resp, name):
    if resp.HasField("error"):
        raise CheckFailed(f"error reply {code_name(pb, resp)}: {resp.error.message}")
    if props.correlation_id != req.id:
        raise CheckFailed(f"reply correlation_id {props.correlation_id!r} != request id {req.id!r}")
    if resp.request_id != req.id:
        raise CheckFailed(f"Response.request_id {resp.request_id!r} != request id {req.id!r}")
    hello = gpb.HelloResponse()
    hello.ParseFromString(resp.body)
    if hello.greeting != f"Hello, {name}!":
        raise CheckFailed(f"greeting {hello.greeting!r}")
    return repr(hello.greeting)


def peak_rss_kib(pid):
    """The process's peak resident set (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise CheckFailed(f"no VmHWM for pid {pid}")


def run_checks(client, pb, gpb, pid):
    """Yields (name, detail) per passed check; raises CheckFailed(name: why)."""
    def hello(name):
        req, props, resp = client.call("hello", gpb.HelloRequest(name=name).SerializeToString())
        return expect_hello(pb, gpb, req, props, resp, name)

    def garbage():
        cid = secrets.token_hex(16)
        client.publish(cid, "hello", b"\xff\x00garbage", 5000)
        props, resp = client.await_reply(cid, REPLY_TIMEOUT_S)
        if props.correlation_id != cid or resp.request_id != cid:
            raise CheckFailed("the reply does not carry the request's correlation_id")
        return expect_error(pb, resp, "INVALID_ARGUMENT",
                            "message body is not a tern.v1.Request envelope")

    def unknown_endpoint():
        _, _, resp = client.call("no_such_endpoint", b"")
        return expect_error(pb, resp, "UNIMPLEMENTED")

    def expired_deadline():
        # Already past: no AMQP expiration (it must be positive), or the
        # broker could drop the request before the service sees it.
        _, _, resp = client.call("hello", gpb.HelloRequest(name="Late").SerializeToString(),
                                 deadline_ms=-1000, expiration=False)
        return expect_error(pb, resp, "DEADLINE_EXCEEDED")

    def bad_endpoint_body():
        _, _, resp = client.call("hello", b"\xff\xff\xff")
        return expect_error(pb, resp, "INVALID_ARGUMENT")

    def oversized():
        # 64 MiB, over the greeter's 4 MiB limit: answered from the content
        # header alone, its body never read into memory (the peak resident
        # set of the greeter would grow by 64 MiB or more if it were).
        before = peak_rss_kib(pid)
        cid = secrets.token_hex(16)
        client.publish(cid, "hello", b"\x00" * (64 << 20), 5000)
        props, resp = client.await_reply(cid, 4 * REPLY_TIMEOUT_S)
        detail = expect_error(pb, resp, "INVALID_ARGUMENT")
        if "67108864 bytes, over service.greeter's 4194304 byte limit" not in resp.error.message:
            raise CheckFailed(f"message {resp.error.message!r}")
        grew = peak_rss_kib(pid) - before
        if grew > 16 * 1024:
            raise CheckFailed(f"the greeter's peak RSS grew by {grew} KiB")
        return f"{detail}; peak RSS grew {grew} KiB"

    checks = [
        ("a. hello(Ada)", lambda: hello("Ada")),
        ("b. garbage message body", garbage),
        ("c. unknown endpoint", unknown_endpoint),
        ("d. expired deadline", expired_deadline),
        ("e. endpoint body not a HelloRequest", bad_endpoint_body),
        ("g. a 64 MiB request over the limit", oversized),
        ("f. hello still answers", lambda: hello("Grace")),
    ]
    for name, check in checks:
        try:
            detail = check()
        except CheckFailed as e:
            raise CheckFailed(f"{name}: {e}") from None
        yield name, detail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo-root", required=True)
    ap.add_argument("--greeter", required=True, help="the greeter binary")
    args = ap.parse_args()
    url = os.environ.get("TERN_AMQP_URL")
    if not url:
        print("FAIL: TERN_AMQP_URL is not set", file=sys.stderr)
        return 2
    repo_root = os.path.abspath(args.repo_root)
    greeter_bin = os.path.abspath(args.greeter)

    passed = 0
    with tempfile.TemporaryDirectory(prefix="tern-pika-") as tmp:
        pb, gpb = generate_modules(repo_root, tmp)
        try:
            client = Client(url, pb)
        except pika.exceptions.AMQPError as e:
            print(f"FAIL cannot connect to TERN_AMQP_URL (not shown: it holds a password): {e!r}", file=sys.stderr)
            return 2
        log_path = os.path.join(tmp, "greeter.log")
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen([greeter_bin], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=service_envs(["greeter"], os.environ)["greeter"])
        except OSError as e:
            print(f"FAIL cannot start the greeter: {e}", file=sys.stderr)
            client.close()
            return 2

        def alive():
            if proc.poll() is not None:
                raise CheckFailed(f"the greeter exited with status {proc.returncode}")

        def show_log():
            log.flush()
            with open(log_path, "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-30:]
            print("----- greeter output (tail) -----", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)

        # The greeter declares its own queue (with its limits) and logs
        # "serving" once it consumes it: wait for that line, not a timer.
        serving = threading.Event()

        def copy_output():
            for raw in proc.stdout:
                log.write(raw)
                if b" serving: " in raw:
                    serving.set()

        threading.Thread(target=copy_output, daemon=True).start()

        try:
            if not serving.wait(STARTUP_TIMEOUT_S):
                alive()
                raise CheckFailed(f"startup: the greeter did not serve within {STARTUP_TIMEOUT_S} s")
            try:
                _, _, resp = client.call(
                    "_health", pb.HealthRequest().SerializeToString(),
                    deadline_ms=int(STARTUP_TIMEOUT_S * 1000), timeout_s=STARTUP_TIMEOUT_S,
                    alive=alive)
            except CheckFailed as e:
                raise CheckFailed(f"startup: greeter not healthy: {e}") from None
            health = pb.HealthResponse()
            health.ParseFromString(resp.body)
            if resp.HasField("error") or health.status != "SERVING":
                raise CheckFailed(f"startup: _health answered {code_name(pb, resp)} "
                                  f"{resp.error.message} status={health.status!r}")
            print(f"greeter is serving ({health.instance})")

            for name, detail in run_checks(client, pb, gpb, proc.pid):
                passed += 1
                print(f"PASS {name}: {detail}", flush=True)

            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"the greeter did not exit within {STOP_TIMEOUT_S:.0f} s "
                                  "of SIGTERM") from None
            if rc != 0:
                raise CheckFailed(f"the greeter exited with status {rc} after SIGTERM")
        except CheckFailed as e:
            print(f"FAIL {e}", file=sys.stderr)
            show_log()
            print(f"{passed} passed, 1 failed")
            return 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            client.close()
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
