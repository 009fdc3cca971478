#!/usr/bin/env bash
# End-to-end benchmarks of mxkeys against the reference implementations, in one run on one
# machine: generates 10k / 100k / 1M real Megolm sessions (vodozemac), times whole processes
# with hyperfine, reads peak RSS with /usr/bin/time -v, and plots time and memory against the
# number of sessions.
#
#   scripts/bench.sh [SIZES...]        default sizes: 10000 100000 1000000
#
# Environment:
#   BENCH_DIR     where data and results go (default: bench/work; results in bench/results)
#   BENCH_RUNS    hyperfine runs per command (default 5; 3 for 1M)
#   BENCH_SKIP_SYNAPSE=1   skip the upload/download against a local Synapse
#   BENCH_SKIP_SDK=1       skip matrix-sdk-crypto (its first build takes several minutes)
#   BENCH_HISTORY          event counts for `history check` (default "100000 1000000"; "" skips it)
#   BENCH_HISTORY_SESSIONS sessions the history events are spread over (default 1000)
#   BENCH_HISTORY_ALL_1M=1 at 1M events also the 1-thread run and matrix-sdk-crypto (long)
#   BENCH_ONLY=history     run only the `history check` benchmarks
#
# Needs: hyperfine and /usr/bin/time (Debian: apt-get install hyperfine time), python3 (a venv
# with matplotlib is made for the plot), openssl (the SHA-512 floor).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
sizes=("${@:-10000 100000 1000000}")
# shellcheck disable=SC2206
sizes=(${sizes[*]})
work="${BENCH_DIR:-$repo/bench/work}"
results="$repo/bench/results"
mkdir -p "$work" "$results"
runs="${BENCH_RUNS:-5}"

need() { command -v "$1" >/dev/null || { echo "bench.sh: $1 is needed ($2)" >&2; exit 1; }; }
need hyperfine "apt-get install hyperfine"
need /usr/bin/time "apt-get install time"
need openssl "apt-get install openssl"

echo "== build"
cargo build --release --quiet
mx="$repo/target/release/mxkeys"
features=""
[ "${BENCH_SKIP_SDK:-0}" = 1 ] || features="--features sdk"
# shellcheck disable=SC2086
(cd bench && cargo build --release --quiet $features --bins)
gen="$repo/bench/target/release/gen-sessions"
genh="$repo/bench/target/release/gen-history"
genb="$repo/bench/target/release/gen-backup"
sdk="$repo/bench/target/release/sdk-compare"
[ "${BENCH_SKIP_SDK:-0}" = 1 ] && sdk=""

umask 077
printf 'benchmark passphrase' > "$work/pass"
printf 'store passphrase' > "$work/store-pass"
export MXKEYS_STORE_PASSPHRASE_FILE="$work/store-pass"
# BENCH_ONLY=history keeps the other results: its own results-history.tsv, machine-history.txt.
only="${BENCH_ONLY:+-$BENCH_ONLY}"
tsv="$results/results$only.tsv"
machine="$results/machine$only.txt"
printf 'size\tcommand\tmedian_s\tmin_s\tmax_s\tpeak_rss_kb\n' > "$tsv"

# machine facts
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "mem: $(awk '/MemTotal/ {print $2/1024/1024 " GiB"}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "mxkeys: $(git rev-parse --short HEAD)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$machine"
cat "$machine"

# hyperfine one command; record median/min/max and peak RSS (one extra run under time -v).
bench() { # size name prepare cmd...
  local size="$1" name="$2" prepare="$3"; shift 3
  local json="$work/hf.json" r="$runs"
  [ "$size" -ge 1000000 ] && r="${BENCH_RUNS_1M:-3}"
  local hf=(hyperfine --style basic --runs "$r" --warmup 1 --export-json "$json" -N)
  # With -N (no shell) hyperfine splits commands itself, so the prepare step runs in bash.
  [ -n "$prepare" ] && hf+=(--prepare "bash -c $(printf '%q' "$prepare")")
  "${hf[@]}" --command-name "$name" -- "$(printf '%q ' "$@")" >/dev/null
  local stats
  stats=$(python3 -c "import json,sys; r=json.load(open('$json'))['results'][0]; print(f\"{r['median']:.4f}\t{r['min']:.4f}\t{r['max']:.4f}\")")
  [ -n "$prepare" ] && bash -c "$prepare"
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>&1
  local rss
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.txt")
  printf '%s\t%s\t%s\t%s\n' "$size" "$name" "$stats" "$rss" | tee -a "$tsv"
}

# `history check` of saved /messages responses (gen-history: 10 rooms, pages of 1000 events
# newest first) against matrix-sdk-crypto's OlmMachine::decrypt_room_event on the same events
# with the same keys imported. The SDK is timed by hyperfine as a whole process, and its
# decryption phase alone (import and reading excluded) from its own report: the median of
# BENCH_RUNS runs goes to results.tsv as "sdk decrypt_room_event (decrypt phase only)".
history_bench() { # events
  local m="$1" hs="${BENCH_HISTORY_SESSIONS:-1000}"
  local d="$work/hist$m" r="$runs"
  [ "$m" -ge 1000000 ] && r="${BENCH_RUNS_1M:-3}"
  [ -s "$d/messages.json" ] || "$genh" "$hs" "$m" "$d" --seed 1
  [ -s "$d/export.txt" ] || "$mx" --quiet encrypt "$d/sessions.json" -o "$d/export.txt" --rounds 1 --force --passphrase-file "$work/pass"
  if [ ! -d "$d/st" ]; then
    "$mx" --quiet --store "$d/st" init --store-kdf-rounds 1
    "$mx" --quiet --store "$d/st" import "$d/export.txt" --passphrase-file "$work/pass"
  fi
  ls -l "$d/messages.json" "$d/events.jsonl" | awk '{print $5, $9}'
  echo "load before $m events: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$machine"
  bench "$m" "mxkeys history check (pages)" "" "$mx" --quiet --store "$d/st" history check --from-messages "$d/messages.json" --json
  bench "$m" "mxkeys history check (JSON lines)" "" "$mx" --quiet --store "$d/st" history check --from-messages "$d/events.jsonl" --json
  # At 1M and more: the two mxkeys figures only (memory and linear time), unless asked.
  if [ "$m" -ge 1000000 ] && [ "${BENCH_HISTORY_ALL_1M:-0}" != 1 ]; then
    echo "load after $m events: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$machine"
    return
  fi
  RAYON_NUM_THREADS=1 bench "$m" "mxkeys history check (pages, 1 thread)" "" "$mx" --quiet --store "$d/st" history check --from-messages "$d/messages.json" --json
  if [ -n "$sdk" ]; then
    bench "$m" "sdk history (whole process)" "" "$sdk" history "$d/sessions.json" "$d/messages.json"
    : > "$work/sdk-history.txt"
    for _ in $(seq "$r"); do "$sdk" history "$d/sessions.json" "$d/messages.json" 2>> "$work/sdk-history.txt"; done
    python3 - "$work/sdk-history.txt" "$m" >> "$tsv" <<'PY'
import re, statistics, sys
t = sorted(float(x) for x in re.findall(r"decrypted in ([0-9.]+) s", open(sys.argv[1]).read()))
print(f"{sys.argv[2]}\tsdk decrypt_room_event (decrypt phase only)\t{statistics.median(t):.4f}\t{t[0]:.4f}\t{t[-1]:.4f}\t")
PY
    tail -1 "$tsv"
  fi
  echo "load after $m events: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$machine"
}
for m in ${BENCH_HISTORY-100000 1000000}; do
  echo "== history check, $m events"
  history_bench "$m"
done
[ "${BENCH_ONLY:-}" = history ] && exit 0

for n in "${sizes[@]}"; do
  echo "== $n sessions"
  s="$work/s$n.json"; e="$work/e$n.txt"
  [ -s "$s" ] || "$gen" "$n" > "$s"
  [ -s "$e" ] || "$mx" --quiet encrypt "$s" -o "$e" --rounds 1 --passphrase-file "$work/pass" --force
  ls -l "$s" "$e" | awk '{print $5, $9}'

  bench "$n" "mxkeys decrypt" "" "$mx" --quiet decrypt "$e" -o "$work/d.json" --force --passphrase-file "$work/pass"
  [ -n "$sdk" ] && bench "$n" "sdk decrypt_room_key_export" "" "$sdk" decrypt "$e" "$work/pass"
  bench "$n" "mxkeys encrypt" "" "$mx" --quiet encrypt "$s" -o "$work/x.txt" --rounds 1 --force --passphrase-file "$work/pass"
  [ -n "$sdk" ] && bench "$n" "sdk encrypt_room_key_export" "" "$sdk" encrypt "$s" "$work/pass" 1 "$work/x2.txt"
  init="rm -rf $work/st && $mx --quiet --store $work/st init --store-kdf-rounds 1"
  bench "$n" "mxkeys import" "$init" "$mx" --quiet --store "$work/st" import "$e" --passphrase-file "$work/pass"
  bench "$n" "mxkeys export" "" "$mx" --quiet --store "$work/st" export -o "$work/x.txt" --force --rounds 1 --passphrase-file "$work/pass"
  bench "$n" "mxkeys merge" "" "$mx" --quiet merge "$e" "$e" -o "$work/m.txt" --force --rounds 1 --passphrase-file "$work/pass"

  if [ "$n" -le 100000 ]; then
    r="$work/resp$n.json"
    [ -s "$r" ] || "$genb" "$s" "$r" "$work/backup-key$n.b64" "$work/recovery-key$n.txt"
    dl=("$mx" --quiet backup download --from-response "$r" --recovery-key-file "$work/recovery-key$n.txt" -o "$work/b.txt" --force --rounds 1 --passphrase-file "$work/pass")
    RAYON_NUM_THREADS=1 bench "$n" "mxkeys backup decrypt (1 thread)" "" "${dl[@]}"
    bench "$n" "mxkeys backup decrypt" "" "${dl[@]}"
    [ -n "$sdk" ] && bench "$n" "sdk BackupDecryptionKey::decrypt_v1 loop" "" "$sdk" backup-decrypt "$r" "$work/backup-key$n.b64"
  fi
done

echo "== PBKDF2-HMAC-SHA512, 500000 rounds"
floor_bps=$(openssl speed -seconds 3 -bytes 16384 sha512 2>/dev/null | awk '/^sha512/ {print $2}' | sed 's/k$//')
python3 - "$floor_bps" > "$results/pbkdf2.txt" <<'PY'
import sys, time, hashlib
kbps = float(sys.argv[1])            # openssl speed reports 1000s of bytes per second
compressions_per_s = kbps * 1000 / 128
floor = 2 * 500_000 / compressions_per_s
t = []
for _ in range(5):
    a = time.perf_counter(); hashlib.pbkdf2_hmac('sha512', b'passphrase', b'saltsaltsaltsalt', 500_000, 64); t.append(time.perf_counter() - a)
t.sort()
print(f"sha512 floor (openssl speed, 16 KiB blocks): {kbps:.0f} kB/s -> 2 x 500000 compressions = {floor:.4f} s")
print(f"OpenSSL PKCS5_PBKDF2_HMAC via hashlib: median {t[2]:.4f} s (min {t[0]:.4f})")
PY
cargo bench --quiet --bench micro -- pbkdf2 2>/dev/null | tee "$work/pbkdf2-criterion.txt" | grep -E "time:" | head -1 >> "$results/pbkdf2.txt" || true
cat "$results/pbkdf2.txt"
# What OpenSSL's assembly reaches when each block depends on the previous one, as in PBKDF2
# (needs libssl-dev for the header).
if [ -f /usr/include/openssl/sha.h ]; then
  cc -O2 bench/c/sha512_chain.c -o "$work/sha512_chain" -lcrypto && "$work/sha512_chain" | tee "$results/sha512-chain.txt"
fi

if [ "${BENCH_SKIP_SYNAPSE:-0}" != 1 ]; then
  echo "== upload and download of 100000 keys against a local Synapse"
  n=100000
  eval "$(scripts/test-homeserver.sh start "$work/synapse")"
  trap 'scripts/test-homeserver.sh stop "$work/synapse" >/dev/null 2>&1 || true' EXIT
  printf 'benchpw' > "$work/pw"
  scripts/test-homeserver.sh register bench benchpw "$work/synapse" >/dev/null
  export MXKEYS_STORE="$work/hs-store"
  rm -rf "$MXKEYS_STORE"
  "$mx" --quiet init --store-kdf-rounds 1
  "$mx" --quiet login --user @bench:localhost --homeserver "$MXKEYS_TEST_HOMESERVER" --password-file "$work/pw"
  "$mx" --quiet import "$work/e$n.txt" --passphrase-file "$work/pass"
  "$mx" --quiet backup create -o "$work/hs-rk.txt" --force --yes
  for what in upload download; do
    if [ "$what" = upload ]; then
      cmd=("$mx" --quiet backup upload --recovery-key-file "$work/hs-rk.txt")
    else
      rm -rf "$work/hs-store2"; cp -r "$MXKEYS_STORE" "$work/hs-store2"
      cmd=("$mx" --quiet --store "$work/hs-store2" backup download --recovery-key-file "$work/hs-rk.txt")
    fi
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.txt" "${cmd[@]}" >/dev/null
    read -r wall user sys rss < "$work/time.txt"
    # columns here: wall, user CPU, system CPU (seconds), peak RSS
    printf '%s\tmxkeys backup %s (Synapse; wall user sys)\t%s\t%s\t%s\t%s\n' "$n" "$what" "$wall" "$user" "$sys" "$rss" | tee -a "$tsv"
  done
  scripts/test-homeserver.sh stop "$work/synapse" >/dev/null
  trap - EXIT
  unset MXKEYS_STORE
fi

echo "== plot"
venv="$work/plot-venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet matplotlib; }
"$venv/bin/python" - "$tsv" "$results/scaling.png" <<'PY'
import csv, sys, collections
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if "Synapse" not in r["command"]]
by = collections.defaultdict(list)
for r in rows:
    by[r["command"]].append((int(r["size"]), float(r["median_s"]), int(r["peak_rss_kb"] or 0) / 1024))
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
for cmd, pts in sorted(by.items()):
    pts.sort()
    xs = [p[0] for p in pts]
    a.plot(xs, [p[1] for p in pts], marker="o", label=cmd)
    b.plot(xs, [p[2] for p in pts], marker="o", label=cmd)
for ax, title, unit in ((a, "time (median of runs)", "seconds"), (b, "peak RSS", "MiB")):
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("sessions"); ax.set_ylabel(unit); ax.set_title(title); ax.grid(True, which="both", alpha=.3)
b.axhline(64, color="red", linestyle="--", linewidth=1, label="64 MiB target")
a.legend(fontsize=7); b.legend(fontsize=7)
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
print("wrote", sys.argv[2])
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$machine"
echo "== results in $results (results.tsv, pbkdf2.txt, machine.txt, scaling.png)"
