#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/, one after the other, and report per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   long runs (default 60 s per target)
#   scripts/fuzz.sh --smoke [SECONDS] [TARGET...]      CI: a few seconds per target (default 5)
#
# With no TARGET, every target of fuzz/Cargo.toml runs. For each one it prints the
# executions, executions per second and whether libFuzzer found a crash (a panic, a failed
# round-trip assertion, a timeout or an out-of-memory: any non-zero exit). The exit status
# is non-zero when any target crashed; the crashing input is in fuzz/artifacts/<target>/.
# New corpus entries go to fuzz/corpus/<target>/ (only the committed seed-* files are kept
# by git); full logs go to fuzz/target/fuzz-logs/<target>.log.
#
# Toolchain: cargo-fuzz needs nightly-only flags and only the stable toolchain is available
# here, so everything runs with RUSTC_BOOTSTRAP=1. Sanitizer: none by default
# (`--sanitizer none`): the library is `forbid(unsafe_code)`, so AddressSanitizer would
# mainly watch dependencies, at about half the speed; coverage-guided fuzzing with debug
# assertions and overflow checks (cargo-fuzz's default build) still catches every panic.
# SANITIZER=address also works with this toolchain (checked with rustc 1.95: it builds and
# links) for a slower, deeper run.
#
# Resources: one target at a time, in one process (libFuzzer's default of one job and one
# worker; -jobs/-workers are not passed because -jobs=1 would fork a child that writes to
# fuzz-0.log), and rayon, used by the session parser, on one thread.
#
# Environment:
#   SANITIZER        none (default) or address
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a crash (default 10)
#   FUZZ_ARGS        extra libFuzzer flags, e.g. "-max_len=16384"
#   CARGO_FUZZ_VERSION  cargo-fuzz version installed when missing (default 0.13.2)
set -euo pipefail

cd "$(dirname "$0")/.."

smoke=0
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=1
    shift
fi
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
elif ((smoke)); then
    secs=5
else
    secs=60
fi

sanitizer=${SANITIZER:-none}
timeout=${FUZZ_TIMEOUT:-10}
export RUSTC_BOOTSTRAP=1
export RAYON_NUM_THREADS=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz ${CARGO_FUZZ_VERSION:-0.13.2}" >&2
    cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION:-0.13.2}"
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz.sh: building ${#targets[@]} target(s) (sanitizer: $sanitizer)" >&2
cargo fuzz build --sanitizer "$sanitizer" >&2

logdir=fuzz/target/fuzz-logs
mkdir -p "$logdir"
failed=0
results=()
for t in "${targets[@]}"; do
    log="$logdir/$t.log"
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz.sh: $t for ${secs}s" >&2
    set +e
    # shellcheck disable=SC2086
    cargo fuzz run --sanitizer "$sanitizer" "$t" -- \
        -max_total_time="$secs" -timeout="$timeout" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if ((rc == 0)); then
        verdict="ok, no crash"
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        reason=$(grep -m 1 -E "panicked at|ERROR: libFuzzer|SUMMARY:" "$log" || true)
        verdict="CRASH (exit $rc) ${artifact:-} ${reason:-}"
    fi
    line=$(printf '%-16s executions %12s  exec/s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" "$verdict")
    echo "$line"
    results+=("$line")
done

echo
echo "fuzz.sh summary (${secs}s per target, sanitizer $sanitizer):"
printf '%s\n' "${results[@]}"
if ((failed)); then
    echo "fuzz.sh: at least one target crashed; logs in $logdir" >&2
    exit 1
fi
