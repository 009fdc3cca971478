#!/usr/bin/env python3
"""Register a user on a test Synapse via the shared-secret admin API.

Usage: register_user.py [--homeserver URL] [--admin] USER PASSWORD

The registration secret is read from $MXKEYS_TEST_REGISTRATION_SECRET and the
homeserver URL from --homeserver or $MXKEYS_TEST_HOMESERVER.  Prints the JSON
response (user_id, access_token, device_id, ...) on stdout.  Stdlib only.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.request

PATH = "/_synapse/admin/v1/register"


def request(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        sys.exit(f"register_user: {method} {url} -> HTTP {e.code}: {detail}")
    except urllib.error.URLError as e:
        sys.exit(f"register_user: {method} {url} failed: {e.reason}")


def mac(secret, nonce, user, password, admin):
    m = hmac.new(secret.encode("utf8"), digestmod=hashlib.sha1)
    m.update(nonce.encode("utf8"))
    m.update(b"\x00")
    m.update(user.encode("utf8"))
    m.update(b"\x00")
    m.update(password.encode("utf8"))
    m.update(b"\x00")
    m.update(b"admin" if admin else b"notadmin")
    return m.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--homeserver", default=os.environ.get("MXKEYS_TEST_HOMESERVER"))
    p.add_argument("--admin", action="store_true")
    p.add_argument("user", help="localpart, or a full @user:server id")
    p.add_argument("password")
    args = p.parse_args()

    secret = os.environ.get("MXKEYS_TEST_REGISTRATION_SECRET")
    if not args.homeserver:
        sys.exit("register_user: no homeserver (--homeserver or MXKEYS_TEST_HOMESERVER)")
    if not secret:
        sys.exit("register_user: MXKEYS_TEST_REGISTRATION_SECRET is not set")

    user = args.user
    if user.startswith("@"):
        user = user[1:].split(":", 1)[0]

    url = args.homeserver.rstrip("/") + PATH
    nonce = request("GET", url)["nonce"]
    body = {
        "nonce": nonce,
        "username": user,
        "password": args.password,
        "admin": args.admin,
        "mac": mac(secret, nonce, user, args.password, args.admin),
    }
    json.dump(request("POST", url, body), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
