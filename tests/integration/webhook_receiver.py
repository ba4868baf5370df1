#!/usr/bin/env python3
"""A webhook receiver for example_flow_test.sh: appends each POST (path,
headers, body, and the verdict of the receiver's signature check) as a JSON
line to OUT; answers 500 on paths starting with /fail, 200 otherwise. Binds
PORT 0 and writes the port it got to OUT.port.

The check is scripts/lib/webhook_signature.py, the one services/webhook/
README.md documents, with the secret of the X-Tern-Webhook-Id the request
names, read from OUT.secrets (a JSON object id -> secret the test writes
after registering); "unknown webhook" without one."""
import http.server
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "scripts", "lib"))
from webhook_signature import verify  # noqa: E402

out = sys.argv[1]


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            secrets = json.load(open(out + ".secrets"))
        except (OSError, ValueError):
            secrets = {}
        secret = secrets.get(self.headers.get("X-Tern-Webhook-Id", ""))
        verdict = verify(secret, self.headers.get("Tern-Signature", ""), body) if secret else "unknown webhook"
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers),
                                "body": body.decode(), "verdict": verdict}) + "\n")
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
with open(out + ".port", "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
