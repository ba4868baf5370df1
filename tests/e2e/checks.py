"""What the end-to-end scripts share: named checks that count, ports, and
the broker user each service runs as."""
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request

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


def json_request(method, url, body=None, token=None, timeout=30):
    """An HTTP request with a JSON body (and a bearer token): (status, the
    reply's JSON, or its bytes if not JSON), or (None, why) if nothing answered."""
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


# Broker users. The services an end-to-end test starts log in each as its own
# broker user, made by the function scripts/up makes theirs with
# (rabbit_add_users, scripts/lib/rabbit.sh and broker_users.sh), so the tests
# prove the least-privilege permissions are enough for the real services.
RABBIT_LIB = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "scripts", "lib", "rabbit.sh")


def _rabbit(script, *args):
    p = subprocess.run(["bash", "-c", f'source "$0" && {script}', RABBIT_LIB, *args], capture_output=True,
                       text=True, timeout=180)
    if p.returncode != 0:
        raise RuntimeError(f"{script}: {p.stderr.strip()}")
    return p.stdout.split()


def service_of_dir(folders):
    """{folder under services/: its service (broker user)}, as tern new and scripts/up name them."""
    return dict(zip(folders, _rabbit('for d; do tern_service_of_dir "$d"; done', *folders)))


def add_service_users(names):
    """Makes (or updates) service users `names` on the node or cluster the
    environment names, with one rabbitmqctl call; {name: password file}."""
    return dict(zip(names, _rabbit('for n; do s+=("service:$n"); done && rabbit_add_users "${s[@]}"', *names)))


def as_user(env, name, password_file):
    """`env` for a process logging in as broker user `name`: the broker's
    URL without the administrator's login, TERN_AMQP_USER, TERN_AMQP_PASSWORD_FILE."""
    env = {k: v for k, v in env.items() if k != "TERN_AMQP_PASSWORD"}
    env.update(TERN_AMQP_URL=os.environ["TERN_RABBIT_URL"], TERN_AMQP_USER=name, TERN_AMQP_PASSWORD_FILE=password_file)
    return env


def service_envs(folders, env):
    """{folder: `env` for its binary, logged in as its own service user}."""
    names = service_of_dir(folders)
    files = add_service_users(sorted(set(names.values())))
    return {f: as_user(env, names[f], files[names[f]]) for f in folders}


def connected_users():
    """The broker's own list of its connections' users (rabbitmqctl
    list_connections user on the node or cluster the environment names)."""
    return set(_rabbit("_rabbit_users_ctl -q -s list_connections user"))
