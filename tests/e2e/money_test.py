#!/usr/bin/python3
"""Money through the gateway under kill -9.

The gateway, auth, auth-api, transaction-api, balance-api, and two
instances each of transaction and balance (each pair sharing its service's
database file), on a broker node of this test's own (money_test.sh). Client
threads POST /transactions, each with its own Idempotency-Key, and retry a
request with the same key and body on any error or timeout, as a real
client would; meanwhile transaction and balance instances are killed with
SIGKILL (and started again), and so is the broker's Erlang VM (started
again on the same data directory).

The evidence is independent of the inbox: the description of each
transaction names the key that made it, so rows are counted by key in
service.transaction's own table; each account's balance in
service.balance's table is compared with the sum of its transactions.

Each service runs as its own broker user (checks.service_envs).

    money_test.py BIN_DIR       (TERN_AMQP_URL, TERN_RABBIT_URL, TERN_CLUSTER_DIR, TERN_RABBIT_LIB set)
"""
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from checks import check, connected_users, free_port, report, service_envs

LOAD_S = 34          # how long requests are sent and things are killed
WORKERS = 8


def rabbit(cmd):
    """Runs a rabbit.sh function against this test's node; (rc, output)."""
    p = subprocess.run(["bash", "-c", f'source "$TERN_RABBIT_LIB"; {cmd}'], capture_output=True, text=True,
                       timeout=90)
    return p.returncode, p.stdout + p.stderr


def beam_pid():
    d = os.path.join(os.environ["TERN_CLUSTER_DIR"], "1")
    with open(os.path.join(d, "server.pid")) as f:
        pgid = f.read().strip()
    out = subprocess.run(["pgrep", "-g", pgid, "-x", "beam.smp"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def consumers(queue):
    rc, out = rabbit("rabbit_cluster_ctl 1 list_queues -q name consumers")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    return 0


def await_true(what, fn, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.1)
    print(f"gave up waiting for {what} after {timeout} s", flush=True)
    return None


class System:
    def __init__(self, bin_dir, data, envs):
        self.bin_dir, self.envs = bin_dir, envs   # each binary's environment, as its own broker user
        self.log = open(os.path.join(data, "services.log"), "a")
        self.procs = {}

    def start(self, name, binary=None):
        self.procs[name] = subprocess.Popen([os.path.join(self.bin_dir, binary or name)], env=self.envs[binary or name],
                                            stdout=self.log, stderr=subprocess.STDOUT)

    def kill9(self, name):
        """SIGKILL; returns how the process ended (-9 when the kill did it)."""
        p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        return p.wait(timeout=10)

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            p.wait()


class Client:
    """HTTP client threads, each retrying its request with the same key until a 2xx."""

    def __init__(self, base, token):
        self.base, self.token = base, token
        self.lock = threading.Lock()
        self.in_flight = 0
        self.sent = self.attempts = self.refused = 0
        self.ok = {}            # key -> (amount, first 2xx body)
        self.failed = {}        # key -> last status, for keys that never got a 2xx
        self.stop_sending = threading.Event()
        self.keys = iter(range(10 ** 6))

    def post(self, key, body, timeout=8):
        req = urllib.request.Request(self.base + "/transactions", data=json.dumps(body).encode(), method="POST")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Idempotency-Key", key)
        with self.lock:
            self.in_flight += 1
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except Exception as e:      # connection refused or reset, timeout
            return 0, str(e)
        finally:
            with self.lock:
                self.in_flight -= 1

    def worker(self, give_up_at):
        while not self.stop_sending.is_set():
            with self.lock:
                n = next(self.keys)
                self.sent += 1
            key = f"e2e-{os.getpid()}-{n}"
            amount = 100 + n
            body = {"amount": amount, "currency": "GBP", "description": f"money {key}"}
            status = 0
            while time.monotonic() < give_up_at:
                with self.lock:
                    self.attempts += 1
                status, got = self.post(key, body)
                if 200 <= status < 300:
                    with self.lock:
                        self.ok[key] = (amount, got)
                    break
                if status == 400:       # a 400 is not worth retrying: and must not happen here
                    with self.lock:
                        self.refused += 1
                    break
                time.sleep(0.1 + random.random() * 0.2)
            else:
                with self.lock:
                    self.failed[key] = status


def main():
    bin_dir = sys.argv[1]
    started = time.monotonic()
    data = tempfile.mkdtemp(prefix="tern-money-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TERN_DATA_DIR=data, TERN_GATEWAY_PORT=str(port), TERN_GATEWAY_ADDRESS="127.0.0.1",
               TERN_GATEWAY_TIMEOUT_MS="5000", TERN_THREADS="1", TERN_EVENT_RETRY_MS="200",
               TERN_OUTBOX_RELAY_MS="200", TERN_LOG_LEVEL="warn",
               # service.auth: the demo account (development mode), a secret of this run's own.
               TERN_AUTH_DEV="1", TERN_AUTH_SECRET=secrets.token_hex(32))
    env["TERN_AUTH_GATEWAY_USER"] = "service.gateway"
    envs = service_envs(["auth", "auth-api", "transaction-api", "balance-api", "transaction", "balance", "gateway"],
                        env)
    system = System(bin_dir, data, envs)
    for name in ["auth", "auth-api", "transaction-api", "balance-api"]:
        system.start(name)
    for name in ["transaction", "balance"]:
        system.start(name + "-0", name)
        system.start(name + "-1", name)
    system.start("gateway")
    try:
        def token():
            req = urllib.request.Request(base + "/auth/token", method="POST",
                                         data=json.dumps({"account_id": "acc_demo", "password": "demo"}).encode())
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())["token"]
        tok = await_true("a token through the gateway", token, 30)
        up = tok and await_true("two consumers each of service.transaction and service.balance's subscription",
                                lambda: consumers("service.transaction") == 2 and
                                consumers("service.balance.on.transaction.created") == 2, 30)
        client = Client(base, tok) if up else None
        up = up and await_true("a first POST /transactions", lambda: 200 <= client.post("warm-up", {
            "amount": 1, "currency": "GBP", "description": "money warm-up"})[0] < 300, 30)
        check("the system starts: gateway, api services, two instances of transaction and balance", bool(up))
        if not up:
            return report()
        want = {e["TERN_AMQP_USER"] for e in envs.values()}
        check("the broker lists every service connected as its own broker user and no other user",
              connected_users() == want, f"{sorted(connected_users())}")

        # Load, and kills meanwhile.
        load_started = time.monotonic()
        give_up_at = load_started + LOAD_S + 40
        threads = [threading.Thread(target=client.worker, args=(give_up_at,)) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        kills = {"transaction": [], "balance": [], "broker": []}    # (how it ended, requests in flight)
        # Two kills of each kind first, so a slow broker restart cannot crowd them out.
        plan = ["transaction-0", "balance-0", "transaction-1", "balance-1", "broker", "transaction-0",
                "balance-0", "broker", "transaction-1", "balance-1"]
        for target in plan:
            time.sleep(2.0)
            if time.monotonic() - load_started > LOAD_S - 2:
                break
            # A moment with requests in flight (between retries all may be asleep).
            await_true("a request in flight", lambda: client.in_flight > 0, 3)
            with client.lock:
                in_flight = client.in_flight
            if target == "broker":
                pid = beam_pid()
                rc, out = rabbit("rabbit_cluster_kill 1")
                gone = pid is not None and rc == 0 and not os.path.exists(f"/proc/{pid}")
                kills["broker"].append((-9 if gone else rc, in_flight))
                rc, out = rabbit("rabbit_cluster_restart 1")
                if rc != 0:
                    print(f"the broker did not start again: {out}", flush=True)
                    kills["broker"].append((None, 0))
                    break
            else:
                how = system.kill9(target)
                kills[target.split("-")[0]].append((how, in_flight))
                system.start(target, target.split("-")[0])
        while time.monotonic() - load_started < LOAD_S:
            time.sleep(0.2)
        client.stop_sending.set()
        for t in threads:
            t.join()
        load_s = time.monotonic() - load_started

        # Evidence: rows by key, balances against their transactions.
        def rows_by_key():
            db = sqlite3.connect(os.path.join(data, "service.transaction.db"), timeout=10)
            try:
                return db.execute("SELECT description, id, amount FROM transactions"
                                  " WHERE description LIKE 'money e2e-%'").fetchall()
            finally:
                db.close()

        def balances():
            tdb = sqlite3.connect(os.path.join(data, "service.transaction.db"), timeout=10)
            bdb = sqlite3.connect(os.path.join(data, "service.balance.db"), timeout=10)
            try:
                sums = dict(tdb.execute("SELECT account_id, SUM(amount) FROM transactions GROUP BY account_id"))
                held = dict(bdb.execute("SELECT account_id, balance FROM balances"))
                txs = {r[0] for r in tdb.execute("SELECT id FROM transactions")}
                applied = {r[0] for r in bdb.execute("SELECT transaction_id FROM applied")}
                return sums, held, txs, applied
            finally:
                tdb.close()
                bdb.close()

        def settled():
            sums, held, txs, applied = balances()
            return sums == held and txs == applied
        await_true("service.balance to apply every transaction", settled, 30)
        sums, held, txs, applied = balances()
        mismatches = sum(1 for a in set(sums) | set(held) if sums.get(a) != held.get(a))
        rows = rows_by_key()
        by_key = {}
        for description, tx_id, amount in rows:
            by_key.setdefault(description[len("money "):], []).append((tx_id, amount))
        duplicates = sum(len(v) - 1 for v in by_key.values())
        ok_once = sum(1 for k, (amount, body) in client.ok.items()
                      if [(body.get("id"), amount)] == by_key.get(k))
        unknown_rows = sum(1 for k in by_key if k not in client.ok and k not in client.failed)

        # A retry after the fact: the same key and body, the same answer.
        same = 0
        for k, (amount, body) in client.ok.items():
            status, got = client.post(k, {"amount": amount, "currency": "GBP", "description": f"money {k}"})
            same += 200 <= status < 300 and got == body

        gw_balance = await_true("GET /balance", lambda: json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/balance", headers={"Authorization": f"Bearer {tok}"}), timeout=5).read()), 10)

        n_ok = len(client.ok)
        print(f"money: sent={client.sent} ok={n_ok} gave up={len(client.failed)} refused={client.refused} "
              f"retried={client.attempts - client.sent} in {load_s:.0f} s of load", flush=True)
        print(f"    kills: transaction={len(kills['transaction'])} balance={len(kills['balance'])} "
              f"broker={len(kills['broker'])}; in flight at each: "
              f"{[k[1] for k in kills['transaction'] + kills['balance'] + kills['broker']]}", flush=True)
        print(f"    transaction rows={len(rows)} (keys with a row: {len(by_key)}) duplicates={duplicates} "
              f"ok keys with exactly their one row={ok_once} rows of keys never sent={unknown_rows}", flush=True)
        print(f"    balance: applied={len(applied)} of {len(txs)} transactions, balance mismatches={mismatches} "
              f"(acc_demo: balance {held.get('acc_demo')}, sum of transactions {sums.get('acc_demo')}, "
              f"GET /balance {gw_balance and gw_balance.get('balance')})", flush=True)
        print(f"    retried after the fact: same response for {same} of {n_ok}", flush=True)

        check("every kill of an instance ended it by SIGKILL, with requests in flight",
              all(how == -signal.SIGKILL and n > 0 for how, n in kills["transaction"] + kills["balance"]),
              str(kills))
        check("the broker's VM was killed (gone after SIGKILL) and started again on its data, with requests in flight",
              len(kills["broker"]) >= 1 and all(how == -9 and n > 0 for how, n in kills["broker"]), str(kills))
        check("at least 2 kills each of transaction and balance instances",
              len(kills["transaction"]) >= 2 and len(kills["balance"]) >= 2)
        check("the client's requests were retried (the kills were felt)", client.attempts > client.sent)
        check("most requests got a 2xx, none was refused", n_ok >= client.sent * 0.9 and client.refused == 0,
              f"ok={n_ok} sent={client.sent} refused={client.refused}")
        check("no key made two transactions (duplicates=0)", duplicates == 0)
        check("every 2xx names the one transaction its key made", ok_once == n_ok, f"{ok_once} of {n_ok}")
        check("no transaction from a key the client never sent", unknown_rows == 0)
        check("each transaction applied to the balance exactly once (balance = sum of transactions, every one applied)",
              mismatches == 0 and txs == applied and len(sums) > 0)
        check("the gateway's GET /balance says the same", gw_balance is not None and
              gw_balance.get("balance") == str(sums.get("acc_demo")) or
              (gw_balance or {}).get("balance") == sums.get("acc_demo"))
        check("a retry of each key afterwards gets the same response", same == n_ok, f"{same} of {n_ok}")
        print(f"money: {time.monotonic() - started:.0f} s in all", flush=True)
    finally:
        system.stop_all()
    rc = report()
    if rc == 0:
        shutil.rmtree(data, ignore_errors=True)
    else:
        print(f"the services' log and databases are in {data}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
