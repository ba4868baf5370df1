#!/usr/bin/python3
"""The gateway over HTTPS in front of the greeter, checked with curl.

Certificates from tests/tls/make_certs.sh, made now in a temporary
directory: curl trusting the test CA gets the greeter's answers; trusting
another CA it refuses the gateway's certificate; plain HTTP to the HTTPS
port is not served. The gateway's own count of failed handshakes (its
/metrics) is the server side's evidence.

    gateway_https_test.py GATEWAY_BIN GREETER_BIN REPO_ROOT
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from checks import check, free_port, report


def curl(*args):
    """curl's exit code, stdout and stderr (never raises on failure)."""
    p = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def handshake_failures(metrics_port):
    """tern_http_tls_handshake_failures_total of the gateway, from its /metrics."""
    _, out, _ = curl(f"http://127.0.0.1:{metrics_port}/metrics")
    m = re.search(r'^tern_http_tls_handshake_failures_total\{service="service.gateway"\} (\d+)$', out, re.M)
    return int(m.group(1)) if m else None


def raw_exchange(port, data):
    """Sends `data` in the clear, returns all the peer sends until it closes
    (a reset too: a peer closing with our bytes unread resets)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


def main():
    gateway_bin, greeter_bin, root = sys.argv[1], sys.argv[2], sys.argv[3]
    if not os.environ.get("TERN_AMQP_URL"):
        print("TERN_AMQP_URL is not set: run through scripts/test")
        return 2
    work = tempfile.mkdtemp(prefix="tern-gateway-https-")
    subprocess.run([os.path.join(root, "tests/tls/make_certs.sh"), work], check=True)
    ca, other_ca = os.path.join(work, "ca.pem"), os.path.join(work, "other-ca.pem")
    port, metrics_port = free_port(), free_port()
    routes = os.path.join(work, "routes.conf")
    with open(routes, "w") as f:
        f.write("/greeter service.greeter\n")
    env = dict(os.environ, TERN_GATEWAY_PORT=str(port), TERN_GATEWAY_ADDRESS="127.0.0.1",
               TERN_GATEWAY_ROUTES=routes, TERN_THREADS="2", TERN_LOG_FORMAT="text",
               TERN_GATEWAY_TLS_CERT=os.path.join(work, "server.pem"),
               TERN_GATEWAY_TLS_KEY=os.path.join(work, "server.key"))
    log_path = os.path.join(work, "gateway.log")
    log = open(log_path, "w")
    greeter = subprocess.Popen([greeter_bin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = subprocess.Popen([gateway_bin], env=dict(env, TERN_METRICS_PORT=str(metrics_port)),
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    hello = ["-H", "Content-Type: application/json", "-d", '{"name":"Ada"}']
    try:
        end = time.monotonic() + 30
        rc, out = 1, ""
        while time.monotonic() < end:
            rc, out, _ = curl("--cacert", ca, *hello, f"{base}/greeter/hello")
            if rc == 0 and "greeting" in out:
                break
            time.sleep(0.1)
        check("curl --cacert ca.pem gets the greeter's answer over HTTPS by address",
              rc == 0 and json.loads(out or "null") == {"greeting": "Hello, Ada!"}, f"rc={rc} {out}")
        rc, out, _ = curl("--cacert", ca, *hello, f"https://localhost:{port}/greeter/hello")
        check("and by the name localhost", rc == 0 and "Hello, Ada!" in out, f"rc={rc} {out}")
        rc, out, _ = curl("--cacert", ca, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                          *hello, f"{base}/greeter/hello", f"{base}/greeter/hello")
        check("two requests on one kept-alive TLS connection (one connect, then none)",
              rc == 0 and out.split("\n")[:2] == ["200 1", "200 0"], f"rc={rc} {out!r}")
        rc, out, _ = curl("--cacert", ca, "-o", "/dev/null", "-w", "%{ssl_verify_result}", *hello,
                          f"{base}/greeter/hello")
        check("curl verified the certificate (ssl_verify_result 0)", rc == 0 and out == "0", out)

        before = handshake_failures(metrics_port)
        rc, out, err = curl("--cacert", other_ca, *hello, f"{base}/greeter/hello")
        check("curl --cacert other-ca.pem fails verification (exit 60)", rc == 60 and not out, f"rc={rc} {err}")
        after = handshake_failures(metrics_port)
        check("the gateway counted that failed handshake", before is not None and after == before + 1,
              f"{before} -> {after}")

        rc, out, err = curl(*hello, f"http://127.0.0.1:{port}/greeter/hello")
        check("curl over plain HTTP to the HTTPS port gets no HTTP answer", rc != 0 and not out, f"rc={rc} {out}")
        body = b'{"name":"Ada"}'
        got = raw_exchange(port, b"POST /greeter/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        check("a plain HTTP request to the HTTPS port is closed, not served",
              b"HTTP/1." not in got and b"Hello" not in got, repr(got[:200]))
        check("both plain attempts were counted as failed handshakes",
              handshake_failures(metrics_port) == after + 2, f"{after} -> {handshake_failures(metrics_port)}")

        gateway.send_signal(signal.SIGTERM)
        check("the gateway exits 0 on SIGTERM", gateway.wait(timeout=30) == 0)
        log.close()
        text = open(log_path).read()
        check("the gateway logs that it listens in HTTPS", f"HTTPS on 127.0.0.1:{port}" in text, text[-2000:])
        key = open(os.path.join(work, "server.key")).read()
        key_body = "".join(key.strip().splitlines()[1:-1])
        check("its log holds no key material",
              "PRIVATE KEY" not in text and key_body[:24] not in text.replace("\n", ""))

        # Settings that cannot work stop start-up with exit 2, saying why.
        for name, extra, want in [
                ("a certificate without its key", {"TERN_GATEWAY_TLS_KEY": ""}, "TERN_GATEWAY_TLS_KEY"),
                ("a certificate file that is not there",
                 {"TERN_GATEWAY_TLS_CERT": os.path.join(work, "missing.pem")}, "missing.pem"),
                ("a key that is not the certificate's",
                 {"TERN_GATEWAY_TLS_KEY": os.path.join(work, "ca.key")}, "ca.key")]:
            p = subprocess.run([gateway_bin], env=dict(env, **extra), capture_output=True, text=True, timeout=30)
            check(f"the gateway refuses {name} with exit 2", p.returncode == 2 and want in p.stderr + p.stdout,
                  f"exit {p.returncode}: {(p.stderr + p.stdout)[-500:]}")
    finally:
        for p in (gateway, greeter):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not log.closed:
            log.close()
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
