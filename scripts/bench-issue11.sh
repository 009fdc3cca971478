#!/usr/bin/env bash
# Client-side comparisons of issue 11 ("Performance"), one stage at a time:
#
#   scripts/bench-issue11.sh import [SIZES...]   mxkeys import vs matrix-sdk-crypto's decrypt +
#                                               import_exported_room_keys into SqliteCryptoStore
#   scripts/bench-issue11.sh shapes              mxkeys encrypt vs encrypt_room_key_export on
#                                               100k sessions in other shapes of JSON
#   scripts/bench-issue11.sh backup [N]          backup upload/download of N keys (default 100000)
#                                               against a local Synapse vs bare PUTs / GET
#
# Environment: BENCH_DIR (data, default bench/work11), BENCH_RUNS (hyperfine runs, default 5),
# SYNAPSE_VENV (passed to scripts/test-homeserver.sh). Every figure is printed with the load
# average at the time (`uptime`), and appended to $BENCH_DIR/issue11.tsv.
# Needs: hyperfine, /usr/bin/time, curl, python3; the bench crate built with
# `cd bench && cargo build --release --features sdk,sdk-import --bins`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
work="${BENCH_DIR:-$repo/bench/work11}"
mkdir -p "$work"
runs="${BENCH_RUNS:-5}"
mx="$repo/target/release/mxkeys"
gen="$repo/bench/target/release/gen-sessions"
sdk="$repo/bench/target/release/sdk-compare"
sdkimp="$repo/bench/target/release/sdk-import"
py="$repo/bench/py"
tsv="$work/issue11.tsv"
[ -f "$tsv" ] || printf 'what\tcommand\tmedian_s\tmin_s\tmax_s\tpeak_rss_kb\tload1\n' > "$tsv"

umask 077
printf 'benchmark passphrase' > "$work/pass"
printf 'store passphrase' > "$work/store-pass"
export MXKEYS_STORE_PASSPHRASE_FILE="$work/store-pass"

load() { cut -d' ' -f1 /proc/loadavg; }

# bench WHAT NAME PREPARE CMD...: hyperfine median/min/max, then one run under time -v for RSS.
bench() {
  local what="$1" name="$2" prepare="$3"; shift 3
  local json="$work/hf.json" r="${RUNS:-$runs}"
  local hf=(hyperfine --style basic --runs "$r" --export-json "$json" -N)
  [ "${WARMUP:-1}" -gt 0 ] && hf+=(--warmup "${WARMUP:-1}")
  [ -n "$prepare" ] && hf+=(--prepare "bash -c $(printf '%q' "$prepare")")
  local l0; l0=$(load)
  "${hf[@]}" --command-name "$name" -- "$(printf '%q ' "$@")" >/dev/null
  local stats
  stats=$(python3 -c "import json; r=json.load(open('$json'))['results'][0]; print(f\"{r['median']:.3f}\t{r['min']:.3f}\t{r['max']:.3f}\")")
  [ -n "$prepare" ] && bash -c "$prepare"
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>&1
  local rss
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.txt")
  printf '%s\t%s\t%s\t%s\t%s-%s\n' "$what" "$name" "$stats" "$rss" "$l0" "$(load)" | tee -a "$tsv"
}

sessions() { # N [ROOMS] -> path of a gen-sessions file and its export file
  local n="$1" rooms="${2:-}"
  local s="$work/s$n${rooms:+r$rooms}.json" e="$work/e$n${rooms:+r$rooms}.txt"
  # shellcheck disable=SC2086
  [ -s "$s" ] || nice -n 10 "$gen" "$n" $rooms > "$s"
  [ -s "$e" ] || "$mx" --quiet encrypt "$s" -o "$e" --rounds 1 --passphrase-file "$work/pass" --force
  printf '%s %s\n' "$s" "$e"
}

stage_import() {
  local n
  for n in "${@:-100000 1000000}"; do
    local s e
    read -r s e < <(sessions "$n")
    local r="$runs"; [ "$n" -ge 1000000 ] && r="${BENCH_RUNS_1M:-2}"
    RUNS=$r bench "import $n" "mxkeys import" \
      "rm -rf $work/st && $mx --quiet --store $work/st init --store-kdf-rounds 1000" \
      "$mx" --quiet --store "$work/st" import "$e" --passphrase-file "$work/pass"
    RUNS=$r WARMUP=$([ "$n" -ge 1000000 ] && echo 0 || echo 1) bench "import $n" \
      "sdk decrypt_room_key_export + import_exported_room_keys (SqliteCryptoStore, passphrase)" \
      "rm -rf $work/sdkst" "$sdkimp" "$e" "$work/pass" "$work/sdkst" "$work/store-pass"
  done
}

stage_shapes() {
  local s7 e7
  read -r s7 e7 < <(sessions 100000 7)
  local shape
  for shape in compact python pretty chains; do
    local f="$work/shape-$shape.json"
    if [ "$shape" = compact ]; then f="$s7"; else [ -s "$f" ] || python3 "$py/shapes.py" "$s7" "$shape" "$f"; fi
    bench "encrypt 100k/7 rooms $shape ($(stat -c %s "$f") B)" "mxkeys encrypt" "" \
      "$mx" --quiet encrypt "$f" -o "$work/x.txt" --rounds 1 --force --passphrase-file "$work/pass"
    bench "encrypt 100k/7 rooms $shape ($(stat -c %s "$f") B)" "sdk encrypt_room_key_export" "" \
      "$sdk" encrypt "$f" "$work/pass" 1 "$work/x2.txt"
  done
}

stage_backup() {
  local n="${1:-100000}" s e
  read -r s e < <(sessions "$n")
  local syn="$repo/.synapse"
  local envf
  envf=$(scripts/test-homeserver.sh start "$syn")
  eval "$envf"
  trap 'scripts/test-homeserver.sh stop "$syn" >/dev/null 2>&1 || true; [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true' EXIT
  local hs="$MXKEYS_TEST_HOMESERVER"
  printf 'benchpw' > "$work/pw"
  scripts/test-homeserver.sh register bench benchpw "$syn" >/dev/null
  # A token for the bare requests (its own device), kept in a header file, never in argv.
  curl -sf -X POST "$hs/_matrix/client/v3/login" -H 'Content-Type: application/json' \
    -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bench"},"password":"benchpw"}' |
    python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])" > "$work/token"
  printf 'Authorization: Bearer %s\n' "$(cat "$work/token")" > "$work/auth-header"

  # Store A: logged in directly; store P: the same keys, logged in through the recording proxy.
  local port=$(( ${hs##*:} + 1 ))
  python3 "$py/record_proxy.py" "$port" "$hs" "$work/puts$n" & proxy_pid=$!
  sleep 1
  local st
  for st in A P D; do
    rm -rf "$work/hs$st"
    "$mx" --quiet --store "$work/hs$st" init --store-kdf-rounds 1000
    local url="$hs"; [ "$st" = P ] && url="http://127.0.0.1:$port"
    "$mx" --quiet --store "$work/hs$st" login --user @bench:localhost --homeserver "$url" --password-file "$work/pw"
  done
  "$mx" --quiet --store "$work/hsA" import "$e" --passphrase-file "$work/pass"
  "$mx" --quiet --store "$work/hsP" import "$e" --passphrase-file "$work/pass"
  "$mx" --quiet --store "$work/hsA" backup create -o "$work/rk" --force --yes
  # The backup's auth_data, to make further empty versions under the same key.
  curl -sf -H @"$work/auth-header" "$hs/_matrix/client/v3/room_keys/version" |
    python3 -c "import json,sys; v=json.load(sys.stdin); print(json.dumps({'algorithm': v['algorithm'], 'auth_data': v['auth_data']}))" > "$work/version-body"
  rm -rf "$work/puts$n"; mkdir -p "$work/puts$n"
  "$mx" --quiet --store "$work/hsP" backup upload --recovery-key-file "$work/rk"
  kill "$proxy_pid"; proxy_pid=""
  ls "$work/puts$n" | wc -l | sed 's/$/ PUT bodies recorded/'
  du -sh "$work/puts$n"

  # Before each timed upload: delete the previous version (Synapse deletes its keys, so the
  # database does not grow from run to run), then make a new empty one under the same key.
  : > "$work/ver"
  local newver="{ [ -s $work/ver ] && curl -sf -X DELETE -H @$work/auth-header $hs/_matrix/client/v3/room_keys/version/\$(cat $work/ver) >/dev/null; true; } && curl -sf -X POST -H @$work/auth-header -H 'Content-Type: application/json' -d @$work/version-body $hs/_matrix/client/v3/room_keys/version | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"version\"])' > $work/ver"
  RUNS="${BACKUP_RUNS:-3}" WARMUP=0 bench "backup upload $n" "mxkeys backup upload" "$newver" \
    "$mx" --quiet --store "$work/hsA" backup upload --recovery-key-file "$work/rk"
  RUNS="${BACKUP_RUNS:-3}" WARMUP=0 bench "backup upload $n" "bare PUTs of the recorded bodies (python http.client)" "$newver" \
    python3 "$py/replay_puts.py" "$hs" "$work/token" "@$work/ver" "$work/puts$n"
  # The newest version now holds the n keys (the replay's copy), under the key in $work/rk.
  local ver; ver=$(cat "$work/ver")
  RUNS="${BACKUP_RUNS:-3}" bench "backup download $n" "mxkeys backup download (into a fresh store)" \
    "rm -rf $work/hsD2 && cp -a $work/hsD $work/hsD2" \
    "$mx" --quiet --store "$work/hsD2" backup download --recovery-key-file "$work/rk"
  RUNS="${BACKUP_RUNS:-3}" bench "backup download $n" "bare GET /room_keys/keys (curl to /dev/null)" "" \
    curl -sf -H @"$work/auth-header" -o /dev/null "$hs/_matrix/client/v3/room_keys/keys?version=$ver"
  curl -sf -H @"$work/auth-header" -o /dev/null -w 'bare GET: first byte after %{time_starttransfer} s, total %{time_total} s, %{size_download} bytes\n' \
    "$hs/_matrix/client/v3/room_keys/keys?version=$ver" | tee -a "$work/ttfb.txt"
  scripts/test-homeserver.sh stop "$syn" >/dev/null
  trap - EXIT
}

stage="${1:-}"; shift || true
case "$stage" in
  import) stage_import "$@" ;;
  shapes) stage_shapes ;;
  backup) stage_backup "$@" ;;
  *) echo "usage: $0 import [SIZES...] | shapes | backup [N]" >&2; exit 2 ;;
esac
