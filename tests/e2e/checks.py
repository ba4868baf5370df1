"""What the end-to-end scripts share: named checks that count, and ports."""
import socket

failures = []
passed = 0


def check(name, ok, detail=""):
    """Records one named check; prints ok or FAIL (with detail)."""
    global passed
    if ok:
        passed += 1
        print(f"ok    {name}", flush=True)
    else:
        failures.append(name)
        print(f"FAIL  {name} {detail}", flush=True)


def report():
    """Prints the tally; returns the exit status."""
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
