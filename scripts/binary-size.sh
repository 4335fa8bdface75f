#!/usr/bin/env bash
# Prints the size of the adoport binary as the image ships it (the `dist` profile: release
# without debug line tables, with fat LTO and one codegen unit) and, when built, of the release
# binary (no LTO), and whether each carries debug line tables (a `.debug_line` section, read
# with `readelf -S`).
# Exits 1 when the dist binary has line tables: the image must not ship them.
#   scripts/binary-size.sh            build the dist profile, then print
#   scripts/binary-size.sh --no-build print what is built
# A full build of the dist profile takes long on a small machine; add `-j 1` through
# CARGO_BUILD_JOBS=1 when the machine is busy.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  cargo build --profile dist --locked -p adoport
fi
if ! command -v readelf >/dev/null; then
  echo "readelf not found (binutils): cannot tell whether the binaries carry .debug_line" >&2
  exit 1
fi
printed=0
status=0
for profile in dist release; do
  binary="target/$profile/adoport"
  if [[ -f "$binary" ]]; then
    bytes=$(stat -c %s "$binary")
    if readelf -S --wide "$binary" | grep -q '\.debug_line'; then
      lines="with .debug_line"
      [[ $profile == dist ]] && status=1
    else
      lines="no .debug_line"
    fi
    awk -v p="$profile" -v b="$bytes" -v l="$lines" \
      'BEGIN { printf "%-8s %6.1f MiB  %-17s target/%s/adoport\n", p, b / 1048576, l, p }'
    printed=1
  fi
done
if [[ $printed == 0 ]]; then
  echo "no adoport binary built; run without --no-build" >&2
  exit 1
fi
if [[ $status != 0 ]]; then
  echo "the dist binary carries debug line tables; the image would ship them (Cargo.toml [profile.dist])" >&2
fi
exit $status
