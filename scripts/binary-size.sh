#!/usr/bin/env bash
# Prints the size of the adoport binary as the image ships it (the `dist` profile: release
# without debug line tables) and, when built, of the release binary (with line tables).
#   scripts/binary-size.sh            build the dist profile, then print
#   scripts/binary-size.sh --no-build print what is built
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  cargo build --profile dist --locked -p adoport
fi
printed=0
for profile in dist release; do
  binary="target/$profile/adoport"
  if [[ -f "$binary" ]]; then
    bytes=$(stat -c %s "$binary")
    awk -v p="$profile" -v b="$bytes" 'BEGIN { printf "%-8s %6.1f MiB  %s\n", p, b / 1048576, "target/" p "/adoport" }'
    printed=1
  fi
done
if [[ $printed == 0 ]]; then
  echo "no adoport binary built; run without --no-build" >&2
  exit 1
fi
