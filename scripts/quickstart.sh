#!/usr/bin/env bash
# The main job on a fresh machine, in one command: build mxkeys, make a key store, import an
# export file written by Element, list what is in the store, and export it again.
# Everything happens in a temporary directory that is removed at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
cargo build --release --quiet
mxkeys="$repo/target/release/mxkeys"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077
printf 'correct horse battery staple' > "$work/export-pass"   # the fixture's passphrase
printf 'a store passphrase for this demo' > "$work/store-pass"
export MXKEYS_STORE="$work/store"
export MXKEYS_STORE_PASSPHRASE_FILE="$work/store-pass"

set -x
"$mxkeys" init
"$mxkeys" inspect fixtures/export/element-three.txt
"$mxkeys" import fixtures/export/element-three.txt --passphrase-file "$work/export-pass"
"$mxkeys" list
"$mxkeys" export -o "$work/my-keys.txt" --passphrase-file "$work/export-pass"
"$mxkeys" inspect "$work/my-keys.txt" --passphrase-file "$work/export-pass"
