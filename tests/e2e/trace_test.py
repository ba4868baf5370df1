#!/usr/bin/python3
"""service.trace end to end: spans in over tern.traces, out through
`tern trace`, the HTTP pages, Zipkin JSON, headless Chromium, and pushed on
to a Zipkin-compatible receiver (TERN_TRACE_EXPORT_URL).

    trace_test.py BIN_DIR REPO_ROOT [--screenshot PNG]

Part 1 publishes SpanBatch events itself (with pika, as any process may) and
checks what comes out, exactly. Part 2 makes one HTTP call through the gateway and two
chain services (gateway -> test.chain.a -> test.chain.b) and checks the trace
the processes themselves recorded: one trace, parent-linked, nested in time.
Part 3 sends a W3C traceparent with the HTTP call and checks the trace
continues it, in the response, in tern trace, and in the Zipkin v2 JSON a
local receiver (this script, on 127.0.0.1) got from service.trace's exporter.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika

from checks import add_service_users, as_user, check, failures, free_port, report, service_envs

CLOCK_SLACK_US = 5000  # processes on one host; spans timed by each process's clock


def get(url, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_with(url, body, headers):
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_http(url, timeout_s=30):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if get(url)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Receiver:
    """A Zipkin-compatible collector on 127.0.0.1: keeps each POST /api/v2/spans body."""

    def __init__(self):
        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                posts.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        for path, ctype, body in list(self.posts):
            out.extend(json.loads(body))
        return out


HEX = re.compile(r"^[0-9a-f]+$")


def zipkin_shape(s):
    """What's wrong with s as a Zipkin v2 span (https://zipkin.io/zipkin-api/), or ''."""
    if not (isinstance(s.get("traceId"), str) and len(s["traceId"]) == 32 and HEX.match(s["traceId"])):
        return "traceId"
    if not (isinstance(s.get("id"), str) and len(s["id"]) == 16 and HEX.match(s["id"])):
        return "id"
    if "parentId" in s and not (len(s["parentId"]) == 16 and HEX.match(s["parentId"])):
        return "parentId"
    if not isinstance(s.get("name"), str) or s.get("kind") not in ("CLIENT", "SERVER", "PRODUCER", "CONSUMER"):
        return "name/kind"
    if not (isinstance(s.get("timestamp"), int) and isinstance(s.get("duration"), int) and s["duration"] > 0):
        return "timestamp/duration"
    if not isinstance(s.get("localEndpoint", {}).get("serviceName"), str):
        return "localEndpoint"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in s.get("tags", {}).items()):
        return "tags"
    return ""


def generate_modules(repo_root, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(["protoc", f"--python_out={out_dir}", "-I", "proto",
                    "proto/tern/envelope.proto", "proto/tern/trace.proto"], cwd=repo_root, check=True)
    open(os.path.join(out_dir, "tern", "__init__.py"), "w").close()
    sys.path.insert(0, out_dir)
    from tern import envelope_pb2, trace_pb2  # noqa: E402
    return envelope_pb2, trace_pb2


def publish_batch(env_pb, trace_pb, spans):
    batch = trace_pb.SpanBatch(spans=spans)
    event = env_pb.Event(id=secrets.token_hex(16), type="tern.v1.SpanBatch", source="trace_test",
                         time_unix_ms=int(time.time() * 1000), body=batch.SerializeToString())
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["TERN_AMQP_URL"].split(",")[0]))
    ch = conn.channel()
    ch.exchange_declare("tern.traces", "topic", durable=True)
    ch.basic_publish("tern.traces", "tern.v1.span_batch", event.SerializeToString(),
                     pika.BasicProperties(content_type="application/x-protobuf",
                                          message_id=event.id, expiration="60000"))
    conn.close()


def tern(tern_bin, *args):
    p = subprocess.run([tern_bin, *args, "--timeout", "5s"], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def poll_trace(tern_bin, trace_id, done, timeout_s=30):
    """`tern trace ID --json` until done(spans) or the timeout; returns the spans."""
    end = time.monotonic() + timeout_s
    spans = []
    while time.monotonic() < end:
        rc, out, _ = tern(tern_bin, "trace", trace_id, "--json")
        if rc == 0:
            spans = json.loads(out)["spans"]
            if done(spans):
                return spans
        time.sleep(0.3)
    return spans


def chromium(args, timeout_s=90):
    exe = shutil.which("chromium")
    if exe is None:
        return None
    profile = tempfile.mkdtemp(prefix="trace-test-chromium-")
    try:
        p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                            f"--user-data-dir={profile}", *args],
                           capture_output=True, text=True, timeout=timeout_s)
        return p
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def span(pb, trace_id, sid, parent, service, name, kind, start_us, dur_us, code=0, error=""):
    return pb.Span(trace_id=trace_id, span_id=sid, parent_span_id=parent, service=service, name=name,
                   kind=kind, start_unix_us=start_us, duration_us=dur_us, code=code, error=error,
                   attempt=1, instance="test:1")


def check_tree(spans, label):
    """One trace, parent-linked, children nested in time within their parents."""
    ids = {s["spanId"]: s for s in spans}
    roots = [s for s in spans if not s["parentSpanId"]]
    check(f"{label}: one trace", len({s["traceId"] for s in spans}) == 1)
    check(f"{label}: one root", len(roots) == 1, f"{len(roots)} roots")
    orphans = [s for s in spans if s["parentSpanId"] and s["parentSpanId"] not in ids]
    check(f"{label}: every parent is a span of the trace", not orphans, f"{orphans}")
    bad = []
    for s in spans:
        p = ids.get(s["parentSpanId"])
        if p is None:
            continue
        start, end = int(s["startUnixUs"]), int(s["startUnixUs"]) + int(s["durationUs"])
        pstart, pend = int(p["startUnixUs"]), int(p["startUnixUs"]) + int(p["durationUs"])
        if start < pstart - CLOCK_SLACK_US or end > pend + CLOCK_SLACK_US:
            bad.append((s["name"], start - pstart, pend - end))
    check(f"{label}: children nested in time in their parents", not bad, f"{bad}")
    codes = {s["code"] for s in spans}
    check(f"{label}: codes OK", codes == {"OK"}, f"{codes}")


def check_pages(base, tern_bin, trace_id, n, names):
    status, headers, body = get(f"{base}/")
    check("GET / lists the trace", status == 200 and trace_id.encode() in body, f"{status}")
    status, headers, body = get(f"{base}/trace/{trace_id}")
    rows = body.decode().count('<tr class="span')
    check("GET /trace/ID is the waterfall", status == 200 and rows == n, f"{status} {rows} rows")
    status, _, body = get(f"{base}/api/v2/trace/{trace_id}")
    zipkin = json.loads(body) if status == 200 else []
    check("GET /api/v2/trace/ID is Zipkin v2 JSON",
          len(zipkin) == n and all(s["traceId"] == trace_id and "localEndpoint" in s for s in zipkin)
          and sum(1 for s in zipkin if "parentId" not in s) == 1, f"{status} {body[:300]}")
    p = chromium(["--dump-dom", f"{base}/trace/{trace_id}"])
    if p is None:
        check("chromium is installed (scripts/bootstrap)", False)
        return
    dom = p.stdout
    rows = re.findall(r'<tr class="span[^"]*" id="span-([0-9a-f]+)"', dom)
    check("headless Chromium renders a row per span", len(rows) == n and p.returncode == 0,
          f"rc {p.returncode}, {len(rows)} rows; {p.stderr[-500:]}")
    check("the span names are in the rendered page", all(name in dom for name in names))


def main():
    bin_dir, repo_root = sys.argv[1], sys.argv[2]
    screenshot = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--screenshot" else None
    if not os.environ.get("TERN_AMQP_URL"):
        print("TERN_AMQP_URL is not set: run through scripts/test")
        return 2
    tern_bin = os.path.join(bin_dir, "tern")
    work = tempfile.mkdtemp(prefix="trace-test-")
    env_pb, trace_pb = generate_modules(repo_root, os.path.join(work, "py"))
    trace_port, gateway_port, gateway_metrics = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{trace_port}"
    receiver = Receiver()
    env = dict(os.environ, TERN_DATA_DIR=os.path.join(work, "data"), TERN_TRACE_HTTP_PORT=str(trace_port),
               TERN_TRACE_HTTP_ADDRESS="127.0.0.1", TERN_THREADS="2")
    trace_env = dict(env, TERN_TRACE_EXPORT_URL=f"http://127.0.0.1:{receiver.port}/api/v2/spans")
    # Each process as its own broker user, as scripts/up runs them.
    envs = service_envs(["trace", "gateway"], env)
    envs["trace"] = dict(envs["trace"], TERN_TRACE_EXPORT_URL=trace_env["TERN_TRACE_EXPORT_URL"])
    chains = add_service_users(["test.chain.a", "test.chain.b"])
    procs = [subprocess.Popen([os.path.join(bin_dir, "trace")], env=envs["trace"])]
    try:
        check("service.trace serves HTTP", wait_http(f"{base}/healthz"))

        # Part 1: spans published by hand.
        K = trace_pb.Span
        tid, failed = secrets.token_hex(16), secrets.token_hex(16)
        now = int(time.time() * 1e6)
        spans = [span(trace_pb, tid, "0000000000000001", "", "service.gateway", "POST /a/probe", K.HTTP, now, 9000),
                 span(trace_pb, tid, "0000000000000002", "0000000000000001", "service.gateway", "test.chain.a/probe", K.CLIENT, now + 500, 8000),
                 span(trace_pb, tid, "0000000000000003", "0000000000000002", "test.chain.a", "probe", K.SERVER, now + 1000, 7000),
                 span(trace_pb, tid, "0000000000000004", "0000000000000003", "test.chain.a", "test.chain.b/probe", K.CLIENT, now + 2000, 5000),
                 span(trace_pb, tid, "0000000000000005", "0000000000000004", "test.chain.b", "<probe & co>", K.SERVER, now + 2500, 4000)]
        publish_batch(env_pb, trace_pb, spans[3:])  # children first: the tree must not care
        publish_batch(env_pb, trace_pb, spans[:3])
        publish_batch(env_pb, trace_pb, [span(trace_pb, failed, "00000000000000f1", "", "service.gateway",
                                              "GET /nothing", K.HTTP, now, 300, code=5, error="no such thing")])
        got = poll_trace(tern_bin, tid, lambda s: len(s) == 5)
        check("tern trace --json returns the published spans", len(got) == 5, f"{len(got)} spans")
        if got:
            check_tree(got, "published spans")
        rc, out, err = tern(tern_bin, "trace", tid)
        lines = out.splitlines()
        print(out)
        check("tern trace prints the tree", rc == 0 and len(lines) == 7 and
              lines[2].split()[2:] == ["HTTP", "POST", "/a/probe", "[service.gateway]", "OK"] and
              re.match(r"^\s+2\.500\s+4\.000\s{10}SERVER <probe & co> \[test\.chain\.b\] OK$", lines[6]),
              f"rc {rc} {out!r} {err}")
        rc, out, _ = tern(tern_bin, "trace", secrets.token_hex(16))
        check("tern trace of an unknown trace fails", rc == 1)
        poll_trace(tern_bin, failed, lambda s: len(s) == 1)
        rc, out, _ = tern(tern_bin, "traces", "--errors", "-n", "1000")
        check("tern traces --errors lists the failed trace", rc == 0 and failed in out and tid not in out, out)
        rc, out, _ = tern(tern_bin, "traces", "--slow", "5", "-n", "1000")
        check("tern traces --slow 5 lists the slow trace", rc == 0 and tid in out and failed not in out, out)
        check_pages(base, tern_bin, tid, 5, ["POST /a/probe", "&lt;probe &amp; co&gt;"])
        shot_id = tid

        # Part 2: the spans the processes record themselves.
        routes = os.path.join(work, "routes.conf")
        with open(routes, "w") as f:
            f.write("/a test.chain.a\n")
        chain = os.path.join(bin_dir, "chain_service")
        for name in ["test.chain.a", "test.chain.b"]:
            procs.append(subprocess.Popen([chain], env=dict(as_user(env, name, chains[name]), CHAIN_SERVICE=name)))
        gw_env = dict(envs["gateway"], TERN_GATEWAY_PORT=str(gateway_port), TERN_GATEWAY_ADDRESS="127.0.0.1",
                      TERN_GATEWAY_ROUTES=routes, TERN_METRICS_PORT=str(gateway_metrics))
        procs.append(subprocess.Popen([os.path.join(bin_dir, "gateway")], env=gw_env))
        gw = f"http://127.0.0.1:{gateway_port}"
        check("the gateway starts", wait_http(f"{gw}/healthz"))
        body = json.dumps({"route": ["test.chain.b"], "sleep_ms": 20}).encode()
        status = 0
        end = time.monotonic() + 30
        while status != 200 and time.monotonic() < end:  # until both chain services serve
            status, headers, reply = get(f"{gw}/a/probe", "POST", body)
            if status != 200:
                time.sleep(0.2)
        check("POST /a/probe goes through both chain services", status == 200, f"{status} {reply[:200]}")
        real = headers.get("X-Trace-Id", "")
        print(f"trace {real}")
        want = {("HTTP", "service.gateway"), ("CLIENT", "service.gateway"), ("SERVER", "test.chain.a"),
                ("CLIENT", "test.chain.a"), ("SERVER", "test.chain.b")}

        def complete(spans):
            return want <= {(s["kind"], s["service"]) for s in spans}

        got = poll_trace(tern_bin, real, complete, timeout_s=30)
        # Complete as far as the checks go; let any stragglers land (a
        # process sends its spans about once a second) before counting rows.
        time.sleep(1.5)
        got = poll_trace(tern_bin, real, complete, timeout_s=10)
        check("the call's trace is complete in tern trace", complete(got),
              f"{[(s['kind'], s['service'], s['name']) for s in got]}")
        if got:
            check_tree(got, "a call through three services")
            check("the root is the gateway's HTTP span",
                  [s["kind"] for s in got if not s["parentSpanId"]] == ["HTTP"])
        rc, out, _ = tern(tern_bin, "trace", real)
        print(out)
        check("tern trace prints the call's tree", rc == 0 and "SERVER probe [test.chain.b] OK" in out, out)
        check_pages(base, tern_bin, real, len(got), ["test.chain.b"])
        shot_id = real
        # Part 3: a trace begun elsewhere (W3C traceparent) continues here
        # and leaves for a Zipkin-compatible receiver.
        w3c_trace, w3c_parent = secrets.token_hex(16), secrets.token_hex(8)
        status, headers, reply = get_with(f"{gw}/a/probe", body,
                                          {"traceparent": f"00-{w3c_trace}-{w3c_parent}-01",
                                           "tracestate": "vendor=opaque"})
        check("a POST with a traceparent succeeds", status == 200, f"{status} {reply[:200]}")
        answered = headers.get("traceparent", "")
        print(f"sent traceparent 00-{w3c_trace}-{w3c_parent}-01, answered {answered}")
        check("the response's traceparent continues the caller's trace with the gateway's span",
              re.match(rf"^00-{w3c_trace}-[0-9a-f]{{16}}-01$", answered) and w3c_parent not in answered, answered)
        check("X-Trace-Id is the caller's trace", headers.get("X-Trace-Id") == w3c_trace, f"{headers}")
        got = poll_trace(tern_bin, w3c_trace, complete, timeout_s=30)
        http_spans = [s for s in got if s["kind"] == "HTTP"]
        check("tern trace shows the continued trace", complete(got), f"{[(s['kind'], s['service']) for s in got]}")
        check("its HTTP span's parent is the caller's span, named by the route template",
              len(http_spans) == 1 and http_spans[0]["parentSpanId"] == w3c_parent
              and http_spans[0]["name"] == "POST /a/probe", f"{http_spans}")
        if http_spans:
            check("the HTTP span's id is the one the response named", answered[36:52] == http_spans[0]["spanId"])

        def exported():
            return [s for s in receiver.spans() if s.get("traceId") == w3c_trace]

        end = time.monotonic() + 30
        while len(exported()) < len(got) and time.monotonic() < end:
            time.sleep(0.2)
        out = exported()
        print(f"exported: {json.dumps(out)[:1500]}")
        check("service.trace pushed every span of the trace to the receiver", len(out) == len(got) and out,
              f"{len(out)} exported, {len(got)} in the trace")
        check("the receiver got POSTs of application/json to /api/v2/spans",
              receiver.posts and all(p == "/api/v2/spans" and c.startswith("application/json")
                                     for p, c, _ in receiver.posts), f"{[(p, c) for p, c, _ in receiver.posts]}")
        bad = [(zipkin_shape(s), s) for s in receiver.spans() if zipkin_shape(s)]
        check("every exported span has the Zipkin v2 shape", not bad, f"{bad[:3]}")
        root = [s for s in out if s.get("parentId") == w3c_parent]
        print(f"exported root: {json.dumps(root)}")
        check("the exported root is the gateway's SERVER span under the caller's span, with HTTP tags",
              len(root) == 1 and root[0]["kind"] == "SERVER" and root[0]["name"] == "POST /a/probe"
              and root[0]["localEndpoint"]["serviceName"] == "service.gateway"
              and root[0]["tags"].get("http.status_code") == "200" and root[0]["tags"].get("http.route") == "/a/probe"
              and root[0]["tags"].get("http.method") == "POST", f"{root}")
        rpc = [s for s in out if s["kind"] == "CLIENT" and s["localEndpoint"]["serviceName"] == "service.gateway"]
        check("the gateway's call is a CLIENT span with rpc.service and rpc.method",
              len(rpc) == 1 and rpc[0]["tags"].get("rpc.service") == "test.chain.a"
              and rpc[0]["tags"].get("rpc.method") == "probe", f"{rpc}")
        _, _, metrics = get(f"http://127.0.0.1:{gateway_metrics}/metrics")
        requests = re.findall(rb'^tern_http_requests_total\{service="service.gateway",route="/a/probe",'
                              rb'method="POST",status="200"\} (\d+)', metrics, re.M)
        check("the gateway counts its HTTP requests by route template",
              requests and int(requests[0]) >= 2, f"{requests}")
        if screenshot:
            p = chromium([f"--screenshot={os.path.abspath(screenshot)}", "--window-size=1200,600",
                          "--hide-scrollbars", f"{base}/trace/{shot_id}"])
            check("a screenshot of the waterfall", p is not None and os.path.exists(screenshot))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        receiver.server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
