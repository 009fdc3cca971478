#!/usr/bin/env python3
"""Write the committed seed corpus, fuzz/corpus/<target>/seed-*, from the project's fixtures.

Run from anywhere: python3 fuzz/make_seeds.py. It rewrites the seed-* files it makes and
leaves every other file alone (regression seeds, seed-regress-*, are written by hand).

Most targets take a mode byte first (see the comment at the top of each target); the seeds
carry it. The export_cipher seeds that hold a file encrypted under the targets' passphrase
("fuzz") need AES: they are made with the `cryptography` package when it is installed and
skipped otherwise (the committed ones then stay as they are).
"""

import base64
import hashlib
import hmac
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def jdump(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def b64(b, pad=False):
    s = base64.b64encode(b).decode()
    return s if pad else s.rstrip("=")


def unb64(s):
    s = s.strip().rstrip("=")
    return base64.b64decode(s + "=" * (-len(s) % 4))


def load(rel):
    return json.loads((FIX / rel).read_text())


def armor(binary):
    body = b64(binary, pad=True)
    lines = [body[i : i + 128] for i in range(0, len(body), 128)]
    return ("-----BEGIN MEGOLM SESSION DATA-----\n" + "".join(l + "\n" for l in lines)
            + "-----END MEGOLM SESSION DATA-----\n").encode()


def export_binary(plaintext, passphrase, rounds, salt, iv, zero_mac=False):
    """The binary key-export format; None without the `cryptography` package."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return None
    k = hashlib.pbkdf2_hmac("sha512", passphrase.encode(), salt, rounds, 64)
    enc = Cipher(algorithms.AES(k[:32]), modes.CTR(iv)).encryptor()
    body = b"\x01" + salt + iv + struct.pack(">I", rounds) + enc.update(plaintext) + enc.finalize()
    tag = bytes(32) if zero_mac else hmac.new(k[32:], body, hashlib.sha256).digest()
    return body + tag


def main():
    exports = ["element-empty-array", "element-one", "wasm-one", "element-three"]
    armors = sorted((FIX / "export" / "armor").glob("*.txt"))
    vectors = sorted((FIX / "export" / "vectors").glob("*.txt"))
    plaintexts = {p: (FIX / "export" / "plaintext" / f"{p}.json").read_bytes()
                  for p in ["element-empty-array", "element-one", "wasm-one", "wasm-three"]}

    # export_armor: the armored fixtures as they are.
    for name in exports:
        write("export_armor", name, (FIX / "export" / f"{name}.txt").read_bytes())
    for p in armors + vectors:
        write("export_armor", p.stem, p.read_bytes())

    # export_cipher: mode 0 armored, 1 raw binary, 2 and 3 plaintexts.
    for name in ["element-one", "wasm-empty-array"]:
        write("export_cipher", f"armored-{name}", b"\x00" + (FIX / "export" / f"{name}.txt").read_bytes())
    for p in vectors[:1] + vectors[-1:] + armors[:2]:
        write("export_cipher", f"armored-{p.stem}", b"\x00" + p.read_bytes())
    salt, iv = b"mxkeys-fuzz-salt", bytes(8) + b"\x7f" + bytes(7)
    for name in ["element-one", "wasm-three"]:
        for rounds in (1, 16):
            binary = export_binary(plaintexts[name], "fuzz", rounds, salt, iv)
            if binary is not None:
                write("export_cipher", f"armored-fuzz-{rounds}-{name}", b"\x00" + armor(binary))
                write("export_cipher", f"binary-fuzz-{rounds}-{name}", b"\x01" + binary)
        binary = export_binary(plaintexts[name], "fuzz", 2, salt, iv, zero_mac=True)
        if binary is not None:
            write("export_cipher", f"binary-zero-mac-{name}", b"\x01" + binary)
    for name in ["element-empty-array", "element-one", "wasm-three"]:
        write("export_cipher", f"writer-{name}", b"\x02" + plaintexts[name])
        write("export_cipher", f"bypass-{name}", b"\x03" + plaintexts[name])

    # session_json: whole arrays and single entries.
    for name in ["element-empty-array", "element-one", "wasm-three"]:
        write("session_json", f"array-{name}", plaintexts[name])
    sessions = load("sessions/sessions-3.json")
    for i, s in enumerate(sessions):
        write("session_json", f"entry-{i}", jdump(s))
    backup = load("backup/samples.json")["samples"]
    s0 = json.loads(backup[0]["expected_plaintext"])
    s0.update(room_id=backup[0]["room_id"], session_id=backup[0]["session_id"])
    write("session_json", "entry-from-backup", jdump(s0))

    # session_key: raw key bytes (mode 0), text (mode 1), and a sharing-format (v2) key
    # made from an export-format one (its signature is not checked under cfg(fuzzing)).
    for i, s in enumerate(sessions[:2]):
        raw = unb64(s["session_key"])
        write("session_key", f"raw-{i}", b"\x00" + raw)
        write("session_key", f"text-{i}", b"\x01" + s["session_key"].encode())
        write("session_key", f"raw-v2-{i}", b"\x00" + b"\x02" + raw[1:] + bytes(64))

    # recovery_key: keys as written, unspaced, and js-sdk's decode cases.
    pairs = load("recovery-key/pairs.json")
    for i, p in enumerate(pairs["pairs"][:4]):
        write("recovery_key", f"pair-{i}", p["recovery_key"])
    write("recovery_key", "unspaced", pairs["pairs"][0]["recovery_key"].replace(" ", ""))
    for i, c in enumerate(pairs["decode_cases"][:6]):
        write("recovery_key", f"case-{i}", c["recovery_key"])

    # backup_session: KeyBackupData (0), SessionData (1), AuthData (2), plaintext (3).
    for i, s in enumerate(backup[:3]):
        write("backup_session", f"key-backup-data-{i}", b"\x00" + jdump(s["key_backup_data"]).encode())
        write("backup_session", f"session-data-{i}", b"\x01" + jdump(s["key_backup_data"]["session_data"]).encode())
        write("backup_session", f"plaintext-{i}", b"\x03" + s["expected_plaintext"].encode())
    auth = {"public_key": backup[0]["public_key"],
            "signatures": {"@alice:example.org": {"ed25519:DEVICE": "A" * 86}}}
    write("backup_session", "auth-data", b"\x02" + jdump(auth).encode())
    write("backup_session", "auth-data-passphrase", b"\x02" + jdump(
        {"public_key": backup[0]["public_key"], "private_key_salt": "salt",
         "private_key_iterations": 1, "private_key_bits": 256}).encode())

    # secret_storage: KeyDescription (0), EncryptedSecret (1, name index in bits 2..),
    # plaintext (2), whole state (3).
    ss = load("secret-storage/samples.json")
    names = ["m.megolm_backup.v1", "m.cross_signing.master", "m.cross_signing.user_signing", ""]
    alg = "m.secret_storage.v1.aes-hmac-sha2"
    for i, kc in enumerate(ss["key_checks"][:2]):
        write("secret_storage", f"key-description-{i}", b"\x00" + jdump(
            {"algorithm": alg, "iv": kc["result"]["iv"], "mac": kc["result"]["mac"],
             "passphrase": {"algorithm": "m.pbkdf2", "salt": "salt", "iterations": 1, "bits": 256}}).encode())
    for i, it in enumerate(ss["items"][:3]):
        mode = 1 | (names.index(it["secret_name"]) << 2) if it["secret_name"] in names else 1
        write("secret_storage", f"encrypted-{i}", bytes([mode]) + jdump(it["encrypted"]).encode())
        write("secret_storage", f"plaintext-{i}", b"\x02" + it["plaintext"].encode())
    it = next(x for x in ss["items"] if x["secret_name"] == "m.megolm_backup.v1")
    kc = ss["key_checks"][0]
    write("secret_storage", "state", b"\x03" + jdump({
        "default": "k1",
        "keys": {"k1": {"algorithm": alg, "iv": kc["result"]["iv"], "mac": kc["result"]["mac"]}},
        "backup": {"k1": it["encrypted"]},
        "auth_data": {"public_key": backup[0]["public_key"]}}).encode())

    # client_response: keys body (0), backup version (1), error bodies (2), one key (3).
    upload = load("backup/sdk-backup-upload-3.json")
    rooms = {}
    for req in upload["requests"]:
        for room, v in req["rooms"].items():
            rooms.setdefault(room, {"sessions": {}})["sessions"].update(v["sessions"])
    write("client_response", "room-keys", b"\x00" + jdump({"rooms": rooms}).encode())
    write("client_response", "room-keys-empty", b"\x00" + b'{"rooms":{}}')
    write("client_response", "backup-version", b"\x01" + jdump(
        {"algorithm": upload["algorithm"], "auth_data": {"public_key": upload["public_key"]},
         "count": 3, "etag": "1", "version": upload["version"]}).encode())
    write("client_response", "error-not-found", b"\x02" + b'{"errcode":"M_NOT_FOUND","error":"No backup found"}')
    write("client_response", "error-rate-limited", b"\x02" + b'{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}')
    write("client_response", "one-key", b"\x03" + jdump(backup[0]["key_backup_data"]).encode())
    write("client_response", "whoami", b"\x03" + b'{"user_id":"@alice:example.org","device_id":"ABCDEF"}')

    # room_events: event inputs (0) in the three shapes, a raw Megolm message (1).
    recorded = load("sessions/sessions-3.json.events.json")
    events = [r["event"] for r in recorded]
    write("room_events", "messages-page", b"\x00" + jdump(
        {"start": "t1", "end": "t2", "chunk": events + [
            {"type": "m.room.message", "event_id": "$p", "content": {"body": "plain"}}],
         "state": [{"type": "m.room.member", "state_key": "@alice:example.org", "content": {}}]}).encode())
    write("room_events", "array", b"\x00" + jdump(events).encode())
    left = dict(events[0], unsigned={"membership": "leave"})
    olm = dict(events[1], content={"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}})
    write("room_events", "lines", b"\x00" + "\n".join(jdump(e) for e in [left, olm, events[2]]).encode())
    first = min(recorded, key=lambda r: (r["room_id"], r["session_id"]))
    write("room_events", "megolm-message", b"\x01" + unb64(first["event"]["content"]["ciphertext"]))

    # encrypted_file: EncryptedFile JSON (0), a downloaded ciphertext (1), formatted_body
    # HTML (2), an mxc:// URI (3).
    att = FIX / "attachment"
    write("encrypted_file", "pixel-file", b"\x00" + (att / "pixel.png.file.json").read_bytes())
    write("encrypted_file", "text-file", b"\x00" + (att / "hello.txt.file.json").read_bytes())
    write("encrypted_file", "pixel-ciphertext", b"\x01" + (att / "pixel.png.enc").read_bytes())
    write("encrypted_file", "formatted-body", b"\x02" + (
        '<b>bold</b><script>alert(1)</script><img src="mxc://example.org/ok" onerror="x()">'
        '<a href="javascript:alert(1)">js</a><a href="https://matrix.org">ok</a>'
        '<mx-reply><blockquote>quoted</blockquote></mx-reply><font color="red">f</font>').encode())
    write("encrypted_file", "mxc", b"\x03" + b"mxc://example.org/abc_DEF-123")

    # client_store: mautrix-go's store written by mautrix-go v0.15.4 (1), and one of its libolm
    # pickles with its pickle key (2: key length, key, pickle).
    import sqlite3
    mautrix_db = FIX / "client-stores" / "mautrix.db"
    write("client_store", "mautrix-db", b"\x01" + mautrix_db.read_bytes())
    key = json.loads((FIX / "client-stores" / "mautrix-made-by.json").read_text())["pickle_key"].encode()
    c = sqlite3.connect(f"file:{mautrix_db}?mode=ro&immutable=1", uri=True)
    (pickle,) = c.execute("SELECT session FROM crypto_megolm_inbound_session "
                          "WHERE session IS NOT NULL ORDER BY session_id LIMIT 1").fetchone()
    c.close()
    write("client_store", "mautrix-pickle", b"\x02" + bytes([len(key)]) + key + bytes(pickle))


if __name__ == "__main__":
    main()
