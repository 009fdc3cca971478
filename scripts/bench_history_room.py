#!/usr/bin/env python3
"""The room of the `history check` benchmark (scripts/bench-history-online.sh). Stdlib only.

Usage:
  bench_history_room.py create MEMBER_ID          # sender's room, MEMBER invited and joined; prints its id
  bench_history_room.py send ROOM CONTENTS.jsonl  # one m.room.encrypted event per line, in order
  bench_history_room.py paginate ROOM PAGE_SIZE   # the bare pagination: /messages, dir=b, until no `end`

The homeserver is $MXKEYS_TEST_HOMESERVER. Access tokens come from the environment, never from
argv: $BENCH_SENDER_TOKEN (create, send) and $BENCH_MEMBER_TOKEN (create's join, paginate).
`paginate` parses every page (a client must, to find `end`) and prints the number of events
read to stderr; it is what `mxkeys history check --room ROOM --page-size PAGE_SIZE` is timed
against.
"""

import http.client
import json
import os
import sys
import urllib.parse


class Conn:
    """One keep-alive connection to the homeserver, as a client would hold it."""

    def __init__(self, token):
        url = urllib.parse.urlsplit(os.environ["MXKEYS_TEST_HOMESERVER"])
        self.host, self.port = url.hostname, url.port or 80
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, "/_matrix/client/v3/" + path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            sys.exit(f"bench_history_room: {method} {path} -> {resp.status}: {raw[:300]!r}")
        return json.loads(raw)


def q(s):
    return urllib.parse.quote(s, safe="")


def create(member_id):
    sender = Conn(os.environ["BENCH_SENDER_TOKEN"])
    room = sender.call("POST", "createRoom", {
        "preset": "private_chat",
        "initial_state": [{
            "type": "m.room.encryption",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        }],
    })["room_id"]
    sender.call("POST", f"rooms/{q(room)}/invite", {"user_id": member_id})
    Conn(os.environ["BENCH_MEMBER_TOKEN"]).call("POST", f"join/{q(room)}", {})
    print(room)


def send(room, contents):
    sender = Conn(os.environ["BENCH_SENDER_TOKEN"])
    n = 0
    with open(contents, "rb") as f:
        for n, line in enumerate(f, 1):
            sender.call("PUT", f"rooms/{q(room)}/send/m.room.encrypted/bench-{n}", json.loads(line))
            if n % 1000 == 0:
                print(f"sent {n}", file=sys.stderr)
    print(f"sent {n} events to {room}", file=sys.stderr)


def paginate(room, page_size):
    member = Conn(os.environ["BENCH_MEMBER_TOKEN"])
    events, frm = 0, None
    while True:
        path = f"rooms/{q(room)}/messages?dir=b&limit={int(page_size)}"
        if frm is not None:
            path += "&from=" + q(frm)
        page = member.call("GET", path)
        events += len(page.get("chunk", []))
        frm = page.get("end")
        if frm is None:
            break
    print(f"{events} events", file=sys.stderr)


def main():
    cmds = {"create": (create, 1), "send": (send, 2), "paginate": (paginate, 2)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
