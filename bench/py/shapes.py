"""Re-shape a gen-sessions JSON array for the issue-11 encrypt benchmark.

usage: shapes.py SESSIONS_JSON SHAPE OUT
  python   Python's json.dumps defaults: ", " and ": " separators (what a Python script writes)
  pretty   indent=2, one field per line (what `jq .` and many tools write)
  chains   compact, each session forwarded through 3 devices (forwarding_curve25519_key_chain
           of 3 real-length Curve25519 keys, as a key forwarded by other devices carries)
The sessions themselves (keys, ids, rooms) are unchanged.
"""
import base64
import json
import os
import sys

src, shape, out = sys.argv[1:4]
sessions = json.load(open(src))
if shape == "python":
    text = json.dumps(sessions)
elif shape == "pretty":
    text = json.dumps(sessions, indent=2)
elif shape == "chains":
    pool = [base64.b64encode(os.urandom(32)).decode().rstrip("=") for _ in range(1000)]
    for i, s in enumerate(sessions):
        s["forwarding_curve25519_key_chain"] = [pool[(i * 3 + j) % len(pool)] for j in range(3)]
    text = json.dumps(sessions, separators=(",", ":"))
else:
    sys.exit(f"unknown shape {shape}")
with open(out, "w") as f:
    f.write(text)
