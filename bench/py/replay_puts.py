"""Replay recorded `PUT /room_keys/keys` bodies against a backup, one after another on one
keep-alive connection, as mxkeys sends them (the reference for `backup upload`, issue 11).

usage: replay_puts.py HOMESERVER_URL TOKEN_FILE VERSION|@VERSION_FILE BODY_DIR
(every file of BODY_DIR, in name order)
Bodies are read before the first request, so only the HTTP exchanges are timed by the caller.
"""
import http.client
import os
import sys
import urllib.parse

hs, token_file, version, body_dir = sys.argv[1:5]
if version.startswith("@"):
    version = open(version[1:]).read().strip()
files = [os.path.join(body_dir, f) for f in sorted(os.listdir(body_dir))]
token = open(token_file).read().strip()
bodies = [open(f, "rb").read() for f in files]
u = urllib.parse.urlsplit(hs)
c = http.client.HTTPConnection(u.hostname, u.port)
path = f"/_matrix/client/v3/room_keys/keys?version={urllib.parse.quote(version)}"
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
for b in bodies:
    c.request("PUT", path, body=b, headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit(f"PUT -> {r.status}: {data[:200]!r}")
print(f"replayed {len(bodies)} PUTs", file=sys.stderr)
