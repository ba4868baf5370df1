#!/usr/bin/python3
"""The README's walk-through, over real HTTP through the gateway.

Starts the example system's binaries (gateway, auth, auth-api, webhook,
webhook-api, transaction, transaction-api, balance, balance-api) against the
broker at TERN_RABBIT_URL, each as its own broker user with least-privilege
permissions (made as scripts/up makes them), plus a local HTTP receiver for
webhooks, then:
token; 401 without one; register a webhook; create a transaction; the
receiver gets the webhook, signed over its time and body (loopback
allow-listed with TERN_WEBHOOK_ALLOW); the balance; list and delete webhooks;
400 for bad JSON; 404 for an unknown route; 503/504 by the deadline for a
stopped service.

    walkthrough_test.py BIN_DIR
"""
import hashlib
import hmac
import http.server
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import secrets
import time
import urllib.error
import urllib.request

SERVICES = ["auth", "auth-api", "webhook", "webhook-api", "transaction", "transaction-api",
            "balance", "balance-api"]

from checks import check, connected_users, failures, free_port, report, service_envs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "scripts", "lib"))
from webhook_signature import verify  # noqa: E402


def await_true(what, fn, timeout=30.0):
    """Polls fn until it returns a true value (returned) or timeout (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    print(f"gave up waiting for {what} after {timeout} s", flush=True)
    return None


_dead = []


def dead_letters(queue):
    """Every message taken so far from `queue` (consumed: kept here), as
    (body, headers) pairs; an empty list (false) while there is none."""
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["TERN_AMQP_URL"]))
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            _dead.append((body, props.headers or {}))
    finally:
        conn.close()
    return list(_dead)


class Firehose:
    """Every message published or delivered on the broker while it runs
    (RabbitMQ's firehose tracer, rabbitmqctl trace_on), kept in a queue of
    its own: requests, replies, events and span batches alike."""

    def __init__(self):
        import pika
        self.queue = f"walkthrough.firehose.{secrets.token_hex(4)}"
        self.params = pika.URLParameters(os.environ["TERN_AMQP_URL"])
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        ch.queue_declare(self.queue)
        ch.queue_bind(self.queue, "amq.rabbitmq.trace", "#")
        conn.close()
        self.ctl("trace_on")

    @staticmethod
    def ctl(*args):
        root = os.path.join(os.path.dirname(__file__), "..", "..")
        subprocess.run(["bash", "-c", 'source scripts/lib/rabbit.sh && rabbit_ctl "$@"', "ctl", *args],
                       cwd=root, check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        """Tracing off; returns [(routing key, correlation id, bytes)]."""
        import pika
        self.ctl("trace_off")
        conn = pika.BlockingConnection(self.params)
        seen = []
        try:
            ch = conn.channel()
            while True:
                method, props, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    break
                h = props.headers or {}
                keys = h.get("routing_keys") or [b""]
                key = keys[0].decode() if isinstance(keys[0], bytes) else str(keys[0])
                corr = (h.get("properties") or {}).get("correlation_id")
                corr = corr.decode() if isinstance(corr, bytes) else corr
                seen.append((key, corr, body + repr(h).encode()))
            ch.queue_delete(self.queue)
        finally:
            conn.close()
        return seen


def forced_dead_letter(token):
    """Publishes to api.webhook, as a direct bus caller would, a request
    whose body is not a DeregisterRequest (a string field that is not
    UTF-8), with `token` as its metadata authorization."""
    import pika
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", f"--python_out={out}", "-I", "proto", "proto/tern/envelope.proto"],
                   cwd=os.path.join(os.path.dirname(__file__), "..", ".."), check=True)
    open(os.path.join(out, "tern", "__init__.py"), "w").close()
    sys.path.insert(0, out)
    from tern import envelope_pb2  # noqa: E402
    req = envelope_pb2.Request(id=secrets.token_hex(16), service="api.webhook", endpoint="deregister",
                               body=b"\x0a\x02\xff\xfe", attempt=1, trace_id=secrets.token_hex(16),
                               span_id=secrets.token_hex(8), **{"from": "walkthrough"},
                               deadline_unix_ms=int(time.time() * 1000) + 10000)
    req.metadata["authorization"] = f"Bearer {token}"
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["TERN_AMQP_URL"]))
    try:
        ch = conn.channel()
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
        ch.basic_publish("", "api.webhook", req.SerializeToString(), pika.BasicProperties(
            correlation_id=req.id, reply_to="amq.rabbitmq.reply-to", type="deregister",
            content_type="application/x-protobuf"))
        conn.process_data_events(time_limit=1)
    finally:
        conn.close()
    return req.id


def forged_token(account):
    """What anyone can sign with service.auth's published development secret
    (services/auth/config.h), in its token format (services/auth/tokens.h)."""
    secret = b"tern-dev-secret-change-me-0123456789"
    kid = hashlib.sha256(b"tern.auth.kid:" + secret).hexdigest()[:8]
    expiry = int(time.time() * 1000) + 3_600_000
    signed = f"v2.{kid}." + f"{account}\n{expiry}".encode().hex()
    return signed + "." + hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()


class Receiver(http.server.BaseHTTPRequestHandler):
    """The external provider: keeps every POST it gets."""
    got = []
    lock = threading.Lock()
    cond = threading.Condition(lock)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Receiver.cond:
            Receiver.got.append((self.path, dict(self.headers), body))
            Receiver.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    # Many sockets at once: lift the soft limit on open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    bin_dir = sys.argv[1]
    if not os.environ.get("TERN_AMQP_URL"):
        print("TERN_AMQP_URL is not set: run through scripts/test")
        return 2
    data = tempfile.mkdtemp(prefix="tern-walkthrough-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The receiver is on loopback, which webhooks may reach only when
    # allow-listed: said here explicitly, as scripts/up does.
    env = dict(os.environ, TERN_DATA_DIR=data, TERN_GATEWAY_PORT=str(port),
               TERN_GATEWAY_ADDRESS="127.0.0.1", TERN_EVENT_RETRY_MS="200", TERN_THREADS="1",
               TERN_WEBHOOK_ALLOW="127.0.0.1/32,::1/128",
               # The demo account (development mode), signed with a secret of this run's own.
               TERN_AUTH_DEV="1", TERN_AUTH_SECRET=secrets.token_hex(32),
               # Accounts in the metadata only from the gateway, as scripts/up has it.
               TERN_AUTH_GATEWAY_USER="service.gateway")
    envs = service_envs(SERVICES + ["gateway"], env)

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    procs = {}
    log = open(os.path.join(data, "services.log"), "w")
    for name in SERVICES + ["gateway"]:
        procs[name] = subprocess.Popen([os.path.join(bin_dir, name)], env=envs[name], stdout=log,
                                       stderr=subprocess.STDOUT)

    def request(method, path, body=None, token=None, headers=None, raw=None):
        data_bytes = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(base + path, data=data_bytes, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    firehose = Firehose()
    try:
        # Up: the gateway answers and the auth path works end to end.
        up = await_true("the system to answer POST /auth/token", lambda: request(
            "POST", "/auth/token", {"account_id": "acc_demo", "password": "demo"})[0] == 200)
        # Every api service consuming: without a token each answers 401 (503 until it is up).
        for method, path in [("GET", "/balance"), ("GET", "/webhooks"), ("POST", "/transactions")]:
            up = up and await_true(f"{method} {path} to reach its service",
                                   lambda: request(method, path)[0] == 401)
        check("the system starts and answers through the gateway", up)
        if not up:
            return 1
        # The broker's own account of who is connected (this test runs
        # alone: nothing else is): each service as its user, nobody else.
        want = {e["TERN_AMQP_USER"] for e in envs.values()}
        got = connected_users()
        check("every service is connected as its own broker user, and no one as another",
              got == want, f"connected: {sorted(got)}, expected: {sorted(want)}")

        status, body = request("POST", "/auth/token", {"account_id": "acc_demo", "password": "demo"})
        token = body.get("token") if isinstance(body, dict) else None
        check("POST /auth/token gives a token", status == 200 and token, f"{status} {body}")
        status, body = request("POST", "/auth/token", {"accountId": "acc_demo", "password": "wrong"})
        check("a wrong password is 401", status == 401, f"{status} {body}")

        status, body = request("GET", "/webhooks")
        check("a missing token is 401", status == 401, f"{status} {body}")
        status, body = request("GET", "/balance", token="not-a-token")
        check("a bad token is 401", status == 401, f"{status} {body}")
        status, body = request("GET", "/balance", token=forged_token("acc_demo"))
        check("a token forged with the public development secret is 401", status == 401, f"{status} {body}")
        status, body = request("GET", "/balance", token=token.replace("v2.", "v1.", 1) if token else None)
        check("a token with its version changed is 401", status == 401, f"{status} {body}")

        status, hook = request("POST", "/webhooks", {"url": hook_url}, token=token)
        check("POST /webhooks gives exactly id and secret",
              status == 200 and isinstance(hook, dict) and set(hook) == {"id", "secret"}, f"{status} {hook}")
        status, listed = request("GET", "/webhooks", token=token)
        check("GET /webhooks lists the webhook", status == 200 and hook["id"] in json.dumps(listed),
              f"{status} {listed}")

        status, tx = request("POST", "/transactions",
                             {"amount": 1250, "currency": "GBP", "description": "coffee"}, token=token)
        check("POST /transactions gives the transaction with its id",
              status == 200 and tx.get("id") and tx.get("amount") == 1250, f"{status} {tx}")

        with Receiver.cond:
            Receiver.cond.wait_for(lambda: len(Receiver.got) >= 1, timeout=30)
            got = list(Receiver.got)
        check("the registered URL receives the webhook", len(got) >= 1)
        if got:
            path, headers, raw = got[0]
            sent = json.loads(raw)
            sig = {k.lower(): v for k, v in headers.items()}.get("tern-signature") or ""
            t = sig.split(",")[0][2:]
            want_sig = "t=" + t + ",v1=" + hmac.new(hook["secret"].encode(), t.encode() + b"." + raw,
                                                    hashlib.sha256).hexdigest()
            check("the webhook body holds the transaction",
                  sent.get("id") == tx["id"] and sent.get("amount") == 1250 and sent.get("currency") == "GBP"
                  and sent.get("description") == "coffee", f"{sent}")
            check("Tern-Signature is t= and the hex HMAC-SHA256 of t.body by the webhook's secret",
                  sig == want_sig and t.isdigit() and abs(int(t) - time.time()) < 60, f"{sig} != {want_sig}")
            check("the receiver's documented check accepts it now and refuses it replayed 301 s later",
                  verify(hook["secret"], sig, raw) == "valid"
                  and verify(hook["secret"], sig, raw, now=int(t) + 301) == "outside the replay window",
                  sig)

        balance = await_true("the balance to reflect the transaction", lambda: (lambda r: r[0] == 200 and r[1].get(
            "balance") == 1250 and r)(request("GET", "/balance", token=token)), timeout=30)
        check("GET /balance reflects the transaction",
              balance and balance[1] == {"balance": 1250, "currency": "GBP"}, f"{balance}")

        status, body = request("POST", "/transactions", raw=b'{"amount": 12', token=token)
        check("bad JSON is 400", status == 400, f"{status} {body}")
        status, body = request("GET", "/nowhere/at/all", token=token)
        check("an unknown route is 404", status == 404, f"{status} {body}")

        # The path names the resource: a query field of the same name does not.
        status, _ = request("DELETE", f"/webhooks/{hook['id']}?id=wh_someone_elses", token=token)
        status2, listed = request("GET", "/webhooks", token=token)
        check("DELETE /webhooks/<id>?id=other removes <id>: the path capture wins",
              status == 200 and hook["id"] not in json.dumps(listed), f"{status} {listed}")
        status, body = request("DELETE", f"/webhooks/{hook['id']}", token=token)
        check("deleting it again is 404", status == 404, f"{status} {body}")

        # Not UTF-8 in a path capture: refused at the edge, before any call.
        status, body = request("DELETE", "/webhooks/%FF", token=token)
        check("a path capture that is not UTF-8 is 400 at the gateway", status == 400, f"{status} {body}")
        # The token goes no further than where it was sent: a direct bus
        # caller (as the CLI would) sends it as metadata with a request
        # api.webhook cannot parse, which is dead-lettered; then look for
        # the token where it could have gone.
        forced_id = forced_dead_letter(token) if token else None
        dead = await_true("the forced dead letter", lambda: dead_letters("api.webhook.dead-letter"), timeout=10)
        check("a request api.webhook cannot parse is dead-lettered (the premise)", dead)
        if dead and token:
            blob = b"".join(b + repr(h).encode() for b, h in dead)
            check("the dead letter is that request", b"deregister" in blob, f"{blob[:300]}")
            check("the token is in no dead letter", token.encode() not in blob)
        # Every message on the bus meanwhile: the token only in service.auth's
        # own traffic (the login's reply, the gateway's validate calls) and
        # in the forced request above, nowhere else: no other call, reply,
        # event, span batch or dead letter.
        traffic = firehose.stop()
        auth_calls = {corr for key, corr, _ in traffic if key in ("service.auth", "api.auth") and corr}
        elsewhere = [key for key, corr, blob in traffic
                     if token and token.encode() in blob and corr not in auth_calls
                     and not (key == "api.webhook" and corr == forced_id)]
        check("the firehose saw the walk-through's traffic, span batches included (the premise)",
              len(traffic) > 50 and any(key == "tern.v1.span_batch" for key, _, _ in traffic),
              f"{len(traffic)} messages")
        check("the token is in no message on the bus but service.auth's own", not elsewhere, f"{elsewhere[:5]}")
        log.flush()
        with open(os.path.join(data, "services.log"), "rb") as f:
            logged = f.read()
            check("the token is in no service's log line", token and token.encode() not in logged)
        passwords = [open(e["TERN_AMQP_PASSWORD_FILE"], "rb").read().strip() for e in envs.values()]
        check("no service's broker password is in any log line", all(p and p not in logged for p in passwords))

        # Guessing from one address: past TERN_AUTH_MAX_FAILURES (5) failed
        # logins (the wrong password above, and these), even the right
        # password is refused for the rest of the window.
        for i in range(5):
            request("POST", "/auth/token", {"account_id": f"acc_guess_{i}", "password": "guess"})
        status, body = request("POST", "/auth/token", {"account_id": "acc_demo", "password": "demo"})
        check("after failed logins from one address even the right password is 429", status == 429,
              f"{status} {body}")

        # A stopped service: the gateway answers by the request's deadline.
        procs["balance-api"].send_signal(signal.SIGTERM)
        procs["balance-api"].wait(timeout=30)
        start = time.monotonic()
        status, body = request("GET", "/balance", token=token, headers={"X-Tern-Timeout-Ms": "1000"})
        took = time.monotonic() - start
        check("a stopped service is 503 or 504 by the deadline", status in (503, 504) and took < 1.0 + 1.0,
              f"{status} in {took:.2f} s: {body}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                failures.append(f"{name} did not stop on SIGTERM")
        receiver.shutdown()
        log.close()
        if failures:
            print(open(os.path.join(data, "services.log")).read()[-6000:])

    return report()


if __name__ == "__main__":
    sys.exit(main())
