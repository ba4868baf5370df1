#!/usr/bin/python3
"""Observability endpoints are not public by default: the service.trace
binary's pages (TERN_TRACE_HTTP_PORT) and its /metrics (TERN_METRICS_PORT)
listen on 127.0.0.1 when nothing says otherwise, and on TERN_HTTP_ADDR when
it is set; a malformed TERN_HTTP_ADDR stops start-up. The evidence is the
kernel's table of listening sockets (/proc/net/tcp), not the service's logs.

    bind_test.py BIN_DIR
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

from checks import check, free_port, report, service_envs


def listening(port):
    """The IPv4 address listening on `port` ("127.0.0.1"), or None."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                return ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return None


def await_listening(ports, proc, timeout=30.0):
    """Where each port listens once all do; if the process exits first, its
    exit status and last output ride along in the failure."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        got = [listening(p) for p in ports]
        if all(got):
            return got
        time.sleep(0.05)
    got = [listening(p) for p in ports]
    if proc.poll() is not None:
        got.append(f"exited {proc.returncode}: {proc.stdout.read()[-800:]}")
    return got


_trace_env = []   # service.trace's environment, as its own broker user: made once


def run_trace(bin_dir, data, **extra):
    if not _trace_env:
        _trace_env.append(service_envs(["trace"], os.environ)["trace"])
    env = {k: v for k, v in _trace_env[0].items()
           if k not in ("TERN_HTTP_ADDR", "TERN_TRACE_HTTP_ADDRESS", "TERN_METRICS_PORT")}
    env.update(TERN_DATA_DIR=data, TERN_THREADS="1", **extra)
    return subprocess.Popen([os.path.join(bin_dir, "trace")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    bin_dir = sys.argv[1]
    if not os.environ.get("TERN_AMQP_URL"):
        print("TERN_AMQP_URL is not set: run through scripts/test")
        return 2
    data = tempfile.mkdtemp(prefix="tern-bind-")

    pages, metrics = free_port(), free_port()
    proc = run_trace(bin_dir, data, TERN_TRACE_HTTP_PORT=str(pages), TERN_METRICS_PORT=str(metrics))
    try:
        got = await_listening([pages, metrics], proc)
        check("by default the trace pages listen on 127.0.0.1", got[0] == "127.0.0.1", f"{got}")
        check("by default /metrics listens on 127.0.0.1", got[1] == "127.0.0.1", f"{got[1]}")
    finally:
        stop(proc)

    # Another address, still loopback (tests bind nothing public): both follow it.
    pages, metrics = free_port(), free_port()
    proc = run_trace(bin_dir, data, TERN_TRACE_HTTP_PORT=str(pages), TERN_METRICS_PORT=str(metrics),
                     TERN_HTTP_ADDR="127.0.0.2")
    try:
        got = await_listening([pages, metrics], proc)
        check("with TERN_HTTP_ADDR=127.0.0.2 both listen there", got[:2] == ["127.0.0.2", "127.0.0.2"] and len(got) == 2, f"{got}")
    finally:
        stop(proc)

    proc = run_trace(bin_dir, data, TERN_METRICS_PORT=str(free_port()), TERN_HTTP_ADDR="everywhere")
    out, _ = proc.communicate(timeout=30)
    check("a malformed TERN_HTTP_ADDR stops start-up with exit 2 naming it",
          proc.returncode == 2 and "everywhere" in out, f"{proc.returncode}: {out[-500:]}")
    return report()


if __name__ == "__main__":
    sys.exit(main())
