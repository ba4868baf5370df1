#!/usr/bin/python3
"""What tests/compose_up_test.sh checks in the running containers, over the
gateway's published port (127.0.0.1:8080, host networking) and
Prometheus's (127.0.0.1:9090).

    stack.py walkthrough STATE_FILE   the README's walk-through: a token, a
        webhook to a receiver here, a transaction, the signed webhook, the
        balance; then every service scraped by Prometheus. Writes what it
        made (token, transaction, balance) to STATE_FILE.
    stack.py persisted STATE_FILE     after `down` and `up` without -v: the
        transaction and the balance STATE_FILE names are still there.
"""
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "scripts", "lib"))
from checks import check, json_request as request, report  # noqa: E402
from webhook_signature import verify  # noqa: E402

GATEWAY = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"


def await_true(what, fn, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.25)
    print(f"gave up waiting for {what} after {timeout} s", flush=True)
    return None


def token():
    status, body = request("POST", GATEWAY + "/auth/token", {"account_id": "acc_demo", "password": "demo"})
    return body.get("token") if status == 200 and isinstance(body, dict) else None


class Receiver(http.server.BaseHTTPRequestHandler):
    got = []
    cond = threading.Condition()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Receiver.cond:
            Receiver.got.append((dict(self.headers), body))
            Receiver.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def walkthrough(state_file):
    tok = await_true("POST /auth/token through the gateway", token)
    check("POST /auth/token through the gateway's published port gives a token", tok)
    if not tok:
        return
    status, body = request("GET", GATEWAY + "/balance")
    check("without a token GET /balance is 401", status == 401, f"{status} {body}")

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    status, hook = request("POST", GATEWAY + "/webhooks", {"url": hook_url}, token=tok)
    check("POST /webhooks registers the receiver", status == 200 and "secret" in hook, f"{status} {hook}")
    _, before = request("GET", GATEWAY + "/balance", token=tok)
    start = before.get("balance", 0) if isinstance(before, dict) else 0

    status, tx = request("POST", GATEWAY + "/transactions",
                         {"amount": 1250, "currency": "GBP", "description": "coffee"}, token=tok)
    check("POST /transactions gives the transaction", status == 200 and tx.get("id"), f"{status} {tx}")
    with Receiver.cond:
        Receiver.cond.wait_for(lambda: Receiver.got, timeout=60)
        got = list(Receiver.got)
    check("the receiver gets the webhook", got)
    if got and status == 200:
        headers, raw = got[0]
        sig = {k.lower(): v for k, v in headers.items()}.get("tern-signature", "")
        check("the webhook holds the transaction and its signature verifies with the webhook's secret",
              json.loads(raw).get("id") == tx["id"] and verify(hook["secret"], sig, raw) == "valid", f"{sig} {raw}")
    want = start + 1250
    balance = await_true("the balance", lambda: (lambda r: r[0] == 200 and r[1].get("balance") == want and r[1])(
        request("GET", GATEWAY + "/balance", token=tok)))
    check(f"GET /balance reflects it ({want})", balance, f"{balance}")

    # Every service's /metrics scraped: Prometheus's own account of its targets.
    expected = int(os.environ["TERN_COMPOSE_SERVICES"])

    def targets_up():
        status, body = request("GET", PROMETHEUS + "/api/v1/targets")
        active = body["data"]["activeTargets"] if status == 200 else []
        up = [t for t in active if t.get("health") == "up"]
        return len(active) == expected and len(up) == expected and active
    active = await_true("Prometheus to scrape every service", targets_up, timeout=90)
    check(f"Prometheus scrapes all {expected} services and each is up", active,
          f"{request('GET', PROMETHEUS + '/api/v1/targets')}")
    with open(state_file, "w") as f:
        json.dump({"transaction": tx, "balance": want}, f)


def persisted(state_file):
    with open(state_file) as f:
        state = json.load(f)
    tok = await_true("POST /auth/token through the gateway after the restart", token)
    check("after down and up the gateway gives a token again", tok)
    if not tok:
        return
    tx = state["transaction"]
    status, got = request("GET", GATEWAY + f"/transactions/{tx['id']}", token=tok)
    check("the transaction made before the restart is still there",
          status == 200 and got.get("id") == tx["id"] and got.get("amount") == 1250, f"{status} {got}")
    status, balance = request("GET", GATEWAY + "/balance", token=tok)
    check(f"and so is the balance ({state['balance']})",
          status == 200 and balance.get("balance") == state["balance"], f"{status} {balance}")


if __name__ == "__main__":
    {"walkthrough": walkthrough, "persisted": persisted}[sys.argv[1]](sys.argv[2])
    sys.exit(report())
