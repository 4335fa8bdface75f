#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit: exits 1 if any
# crate adoport builds has a vulnerability, or is unmaintained, unsound or yanked.
#   scripts/audit.sh                      fetch the database (github.com), then check
#   ADVISORY_DB=DIR scripts/audit.sh      check against a checkout of
#                                         https://github.com/rustsec/advisory-db (offline)
# cargo-audit is installed (`cargo install --locked`) into target/tools the first time; it is
# not part of scripts/test.sh, as its database comes from GitHub, not from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
audit="$tools/bin/cargo-audit"
if [[ ! -x "$audit" ]]; then
  echo "audit: installing cargo-audit into $tools (first run: a few minutes)" >&2
  cargo install --locked --quiet --root "$tools" cargo-audit
fi
args=(audit --deny unmaintained --deny unsound --deny yanked)
if [[ -n "${ADVISORY_DB:-}" ]]; then
  [[ -d "$ADVISORY_DB/crates" ]] || { echo "audit: ADVISORY_DB=$ADVISORY_DB has no crates/" >&2; exit 1; }
  args+=(--db "$ADVISORY_DB" --no-fetch)
fi
"$audit" "${args[@]}"
