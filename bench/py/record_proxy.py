"""A tiny recording HTTP proxy for the issue-11 upload benchmark.

usage: record_proxy.py LISTEN_PORT UPSTREAM_URL OUT_DIR

Forwards every request to UPSTREAM_URL (plain HTTP, one keep-alive connection per client
connection) and writes the body of every `PUT .../room_keys/keys` to OUT_DIR/put-NNNNN.json,
in order, so the same bodies can be replayed without mxkeys (replay_puts.py).
"""
import http.client
import http.server
import os
import sys
import threading
import urllib.parse

port, upstream, out = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
lock = threading.Lock()
counter = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        path = urllib.parse.urlsplit(self.path).path
        if self.command == "PUT" and path.endswith("/room_keys/keys"):
            with lock:
                counter[0] += 1
                name = os.path.join(out, f"put-{counter[0]:05d}.json")
            with open(name, "wb") as f:
                f.write(body or b"")
        if not hasattr(self, "up"):
            self.up = http.client.HTTPConnection(upstream.hostname, upstream.port)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        self.up.request(self.command, self.path, body=body, headers=headers)
        r = self.up.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _forward


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
