#!/usr/bin/env bash
# The one command that runs the whole test suite on a fresh machine.
#
#   scripts/test.sh [EXTRA CARGO TEST ARGS...]
#
# It starts a throw-away Synapse with scripts/test-homeserver.sh (installing it into a venv
# the first time; see scripts/README.md), runs `cargo test` against it
# with MXKEYS_TEST_DISALLOW_SKIP=1, so that the homeserver suite fails instead of skipping if
# the server is missing, and stops the server afterwards. It is a debug build: dependencies
# are optimised anyway (Cargo.toml [profile.dev.package."*"]), and it compiles faster.
# --no-fail-fast: a failing suite does not hide the results of the suites after it.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh --no-fail-fast -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MXKEYS_TEST_DISALLOW_SKIP=1
exec scripts/test-homeserver.sh run -- cargo test --no-fail-fast "$@"
