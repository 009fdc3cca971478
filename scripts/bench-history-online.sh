#!/usr/bin/env bash
# Benchmark: `mxkeys history check` against a local Synapse, on one room of 10,000 Megolm
# events, versus the bare /messages pagination of the same room with the same page size
# (the target: history check within 1.2x of it). Times whole processes with hyperfine.
#
#   scripts/bench-history-online.sh
#
# Steps: start a throw-away Synapse (scripts/test-homeserver.sh, its own state directory);
# register bob (the sender) and alice (the account checked); bob makes an encrypted room,
# invites alice, she joins; bench/src/bin/gen_room_events.rs encrypts BENCH_EVENTS messages
# with vodozemac (a new session every BENCH_PER_SESSION), scripts/bench_history_room.py sends
# them one PUT at a time; alice imports the sessions into a sealed mxkeys store and logs in;
# then hyperfine runs, BENCH_RUNS times each after a warm-up:
#   mxkeys history check --room ROOM --page-size PAGE
#   python3 scripts/bench_history_room.py paginate ROOM PAGE
#
# Environment:
#   BENCH_DIR          data and results (default: target/bench-history-online)
#   BENCH_EVENTS       events in the room (default 10000)
#   BENCH_PER_SESSION  messages per Megolm session (default 100)
#   BENCH_PAGE         /messages page size, both sides (default 500, history check's default)
#   BENCH_RUNS         hyperfine runs per command (default 10)
#
# Needs: hyperfine, python3, curl, a Rust toolchain; PyPI the first time (Synapse).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
work="${BENCH_DIR:-$repo/target/bench-history-online}"
events="${BENCH_EVENTS:-10000}"
per_session="${BENCH_PER_SESSION:-100}"
page="${BENCH_PAGE:-500}"
runs="${BENCH_RUNS:-10}"
command -v hyperfine >/dev/null || { echo "bench-history-online: hyperfine is needed (cargo install hyperfine)" >&2; exit 1; }

echo "== build (release)" >&2
cargo build --release --quiet
# The bench crate's generator, in the main target directory: it shares mxkeys' dependencies.
cargo build --release --quiet --manifest-path bench/Cargo.toml --target-dir "$repo/target" \
    --bin gen-room-events
mx="$repo/target/release/mxkeys"
gen="$repo/target/release/gen-room-events"

rm -rf "$work/store" "$work/data"
mkdir -p "$work/data"
umask 077

echo "== synapse" >&2
syn="$work/synapse"
# A venv shared with the tests when there is one, else its own.
export SYNAPSE_VENV="${SYNAPSE_VENV:-$repo/.synapse/venv}"
scripts/test-homeserver.sh start "$syn" >"$work/data/env"
trap 'scripts/test-homeserver.sh stop "$syn" || true' EXIT
set -a
# shellcheck disable=SC1091
. "$work/data/env"
set +a

field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
bob_json="$(python3 scripts/register_user.py "bob" "pw-bob-bench")"
alice_pw="pw-alice-bench"
alice_json="$(python3 scripts/register_user.py "alice" "$alice_pw")"
BENCH_SENDER_TOKEN="$(field access_token <<<"$bob_json")"
BENCH_MEMBER_TOKEN="$(field access_token <<<"$alice_json")"
export BENCH_SENDER_TOKEN BENCH_MEMBER_TOKEN
bob_device="$(field device_id <<<"$bob_json")"
alice_id="$(field user_id <<<"$alice_json")"

echo "== room of $events events" >&2
room="$(python3 scripts/bench_history_room.py create "$alice_id")"
"$gen" "$room" "$events" "$per_session" "$bob_device" "$work/data"
t0=$(date +%s)
python3 scripts/bench_history_room.py send "$room" "$work/data/contents.jsonl"
echo "sent in $(($(date +%s) - t0)) s" >&2

echo "== alice's store" >&2
printf 'bench store passphrase\n' >"$work/data/store-pass"
printf 'bench export passphrase\n' >"$work/data/pass"
printf '%s\n' "$alice_pw" >"$work/data/alice-pw"
store=(--store "$work/store" --store-passphrase-file "$work/data/store-pass")
"$mx" "${store[@]}" -q init
"$mx" encrypt "$work/data/keys.json" -o "$work/data/keys.txt" --rounds 1000 \
    --passphrase-file "$work/data/pass"
"$mx" "${store[@]}" -q import "$work/data/keys.txt" --passphrase-file "$work/data/pass"
"$mx" "${store[@]}" -q login --user "$alice_id" --homeserver "$MXKEYS_TEST_HOMESERVER" \
    --password-file "$work/data/alice-pw"

check=("$mx" "${store[@]}" --no-progress -q history check --room "$room" --page-size "$page")
# Every event read and decrypted, once, before anything is timed.
"${check[@]}" --json >"$work/data/check.json"
python3 - "$work/data/check.json" "$events" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
assert v["counts"]["decrypted"] == n and v["events"] == n, v["counts"]
print(f"history check: {n} events, all decrypted", file=sys.stderr)
EOF
python3 scripts/bench_history_room.py paginate "$room" "$page"

echo "== hyperfine" >&2
{
    echo "date: $(date -u +%FT%TZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "mxkeys: $(git rev-parse --short HEAD)"
    echo "synapse: ${SYNAPSE_VERSION:-1.163.2}, SQLite; events: $events, per session: $per_session, page: $page"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$work/machine.txt" >&2
q() { printf '%q ' "$@"; }
hyperfine --style basic --warmup 2 --runs "$runs" \
    --export-json "$work/hyperfine.json" --export-markdown "$work/hyperfine.md" \
    -n "mxkeys history check" "$(q "${check[@]}")" \
    -n "bare /messages pagination" "$(q python3 scripts/bench_history_room.py paginate "$room" "$page")"
python3 - "$work/hyperfine.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
check, bare = r["mxkeys history check"], r["bare /messages pagination"]
ratio = check["median"] / bare["median"]
print(f"median: history check {check['median']:.3f} s, bare pagination {bare['median']:.3f} s, ratio {ratio:.2f} (target <= 1.2)")
EOF
