#!/usr/bin/env python3
"""A webhook receiver for example_flow_test.sh: appends each POST (path,
headers, body) as a JSON line to OUT; answers 500 on paths starting with
/fail, 200 otherwise. Binds PORT 0 and writes the port it got to OUT.port."""
import http.server
import json
import sys

out = sys.argv[1]


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers),
                                "body": body.decode()}) + "\n")
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
with open(out + ".port", "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
