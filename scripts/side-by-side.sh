#!/usr/bin/env bash
# Runs the Python Azure DevOps integration (Ocean) and adoport against one simulated Azure DevOps
# organization and two simulated Ports, with the default mapping (or the one given), one ONCE
# resync each, then compares the blueprints and entities of the two Ports one by one and prints
# the differences. With --bench, it measures both on a medium organization at real latency.
#
# Usage: scripts/side-by-side.sh [--mapping FILE] [--report-only] [--bench [--latency-ms MS]]
#                                [--adoport-only]
#   --mapping FILE  the port-app-config both integrations run with (both Ports serve it as the
#                   integration's config; the blueprints it names are created first), e.g.
#                   scripts/side-by-side-mapping.yaml: every selector, several resources per kind
#   --report-only   exit 0 even when the two Ports differ
#   --bench         speed run: the release build of adoport, a medium organization (50 projects
#                   x 40 repositories, the shape of `adoport bench`, unless the sizes below are
#                   set), every Azure DevOps and Port answer delayed by --latency-ms; prints each
#                   run's wall time, their ratio, requests to Azure DevOps and Port, peak RSS,
#                   and the Azure DevOps requests per kind against the fewest possible
#   --latency-ms MS the delay of every simulated answer in --bench (default 50)
#   --adoport-only  run adoport alone (no Python integration, no comparison): its figures on an
#                   organization the Python integration would take hours on (it sends about one
#                   request at a time: 0.2 to 0.4 s per repository at 50 ms)
# Environment:
#   OCEAN_SOURCE    a checkout of https://github.com/port-labs/ocean (at OCEAN_COMMIT below) to use
#                   instead of cloning it (machines without network access to GitHub)
#   PYTHON          the Python (>= 3.12) to build the virtualenv with
#   SIDE_BY_SIDE_TIMEOUT_SECS     how long each integration's run may take before it is killed
#                   and the script fails (600; with --bench 1800): a large organization takes
#                   the Python integration hours
#   SIDE_BY_SIDE_PROJECTS, SIDE_BY_SIDE_REPOSITORIES  size of the simulated organization (2, 3;
#                   with --bench 50, 40)
#   SIDE_BY_SIDE_WORK_ITEMS       work items per project (6)
#   SIDE_BY_SIDE_PULL_REQUESTS    pull requests per repository (2; none in the disabled and
#                                 the empty repository)
#   SIDE_BY_SIDE_RELEASES         releases per project (3)
#                   (`adoport sim --work-items --pull-requests --releases`). The simulated
#                   organization has no random seed: the same sizes give the same organization
#                   (names, states, dates, an empty and a disabled repository vary with the
#                   index); pipelines (2 per project, 3 builds each) and environments (2) are
#                   fixed.
# Needs: Python >= 3.12, git (unless OCEAN_SOURCE), cargo, network access to PyPI the first time.
# Everything it downloads or writes stays in target/side-by-side/ (reused by later runs).
set -euo pipefail

OCEAN_REPO=https://github.com/port-labs/ocean
OCEAN_COMMIT=b10c808aae2691d44bd6575f27e442561f6795df
INTEGRATION_DIR=integrations/azure-devops
CLIENT_ID=sim-client
CLIENT_SECRET=sim-secret
PAT=sim-pat
IDENTIFIER=my-azure-devops-integration
RUN_TIMEOUT_SECS=600

report_only=
adoport_only=
mapping=
bench=
latency_ms=50
while [ $# -gt 0 ]; do
  case "$1" in
    --report-only) report_only=--report-only ;;
    --mapping)
      [ $# -ge 2 ] || { echo "side-by-side: --mapping needs a file" >&2; exit 2; }
      mapping=$(realpath "$2") || exit 2
      [ -f "$mapping" ] || { echo "side-by-side: --mapping $2: no such file" >&2; exit 2; }
      shift ;;
    --bench) bench=1 ;;
    --adoport-only) adoport_only=1 ;;
    --latency-ms)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] \
        || { echo "side-by-side: --latency-ms needs a number of milliseconds" >&2; exit 2; }
      latency_ms=$2
      shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "side-by-side: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$bench" ]; then
  PROJECTS=${SIDE_BY_SIDE_PROJECTS:-50}
  REPOSITORIES=${SIDE_BY_SIDE_REPOSITORIES:-40}
  RUN_TIMEOUT_SECS=1800
else
  PROJECTS=${SIDE_BY_SIDE_PROJECTS:-2}
  REPOSITORIES=${SIDE_BY_SIDE_REPOSITORIES:-3}
  latency_ms=0
fi
RUN_TIMEOUT_SECS=${SIDE_BY_SIDE_TIMEOUT_SECS:-$RUN_TIMEOUT_SECS}
TIMEOUT_SECS=$RUN_TIMEOUT_SECS
WORK_ITEMS=${SIDE_BY_SIDE_WORK_ITEMS:-6}
PULL_REQUESTS=${SIDE_BY_SIDE_PULL_REQUESTS:-2}
RELEASES=${SIDE_BY_SIDE_RELEASES:-3}
for size in PROJECTS REPOSITORIES WORK_ITEMS PULL_REQUESTS RELEASES TIMEOUT_SECS; do
  [[ "${!size}" =~ ^[0-9]+$ ]] \
    || { echo "side-by-side: SIDE_BY_SIDE_$size=${!size} is not a number" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
scripts="$root/scripts"
cache="$root/target/side-by-side"
logs="$cache/logs"
mkdir -p "$cache" "$logs"

say() { echo "side-by-side: $*" >&2; }
die() { say "$*"; exit 1; }

# --- Python >= 3.12 ----------------------------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
find_python() {
  local candidate
  if [ -n "${PYTHON:-}" ]; then
    python_ok "$PYTHON" && { echo "$PYTHON"; return; }
    die "PYTHON=$PYTHON is not a Python >= 3.12"
  fi
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
      command -v "$candidate"; return
    fi
  done
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
  for candidate in "$pyenv_root"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$candidate" ] && python_ok "$candidate"; then echo "$candidate"; return; fi
  done
  die "needs Python >= 3.12 (the Python integration's requirement): none found as python3.13, \
python3.12 or python3 on PATH, nor under pyenv's versions; install one or set PYTHON"
}
python=$(find_python)
say "Python: $python ($("$python" --version 2>&1))"

# --- virtualenv with the integration's locked dependencies --------------------------------------
venv="$cache/venv"
requirements="$scripts/side-by-side-requirements.txt"
stamp="$venv/.requirements"
if [ ! -f "$stamp" ] || ! cmp -s "$requirements" "$stamp"; then
  say "installing the integration's pinned dependencies into $venv (first run: a few minutes)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
    > "$logs/pip.log" 2>&1 \
    || { tail -20 "$logs/pip.log" >&2; die "pip install failed (log: $logs/pip.log)"; }
  cp "$requirements" "$stamp"
fi

# --- the integration's source at the pinned commit (not with --adoport-only: never run) ----------
if [ -n "$adoport_only" ]; then
  source_root=
elif [ -n "${OCEAN_SOURCE:-}" ]; then
  source_root=$OCEAN_SOURCE
  [ -d "$source_root/$INTEGRATION_DIR" ] || die "OCEAN_SOURCE=$source_root has no $INTEGRATION_DIR"
else
  source_root="$cache/ocean"
  if [ "$(git -C "$source_root" rev-parse HEAD 2>/dev/null)" != "$OCEAN_COMMIT" ]; then
    say "fetching $OCEAN_REPO at $OCEAN_COMMIT"
    rm -rf "$source_root"
    git init --quiet "$source_root"
    git -C "$source_root" fetch --quiet --depth 1 "$OCEAN_REPO" "$OCEAN_COMMIT" \
      || die "could not fetch $OCEAN_REPO (set OCEAN_SOURCE to a checkout at $OCEAN_COMMIT)"
    git -C "$source_root" checkout --quiet FETCH_HEAD
  fi
fi
integration="$source_root/$INTEGRATION_DIR"

# --- adoport ------------------------------------------------------------------------------------
if [ -n "$bench" ]; then
  say "building adoport (release)"
  (cd "$root" && cargo build --quiet --release -p adoport)
  adoport="$root/target/release/adoport"
else
  say "building adoport"
  (cd "$root" && cargo build --quiet -p adoport)
  adoport="$root/target/debug/adoport"
fi

# --- one simulated organization, two Ports -------------------------------------------------------
pids=()
declare -A sim_pid
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

mapfile -t ports < <("$python" "$scripts/side_by_side.py" free-ports 4)
start_sim() { # name ado-port port-port: starts one `adoport sim` (its log: sim-<name>.log)
  rm -f "$logs/sim-$1.log" # before the start: a previous run's log would name other ports
  "$adoport" sim --ado-listen "127.0.0.1:$2" --port-listen "127.0.0.1:$3" \
    --projects "$PROJECTS" --repositories "$REPOSITORIES" --work-items "$WORK_ITEMS" \
    --pull-requests "$PULL_REQUESTS" --releases "$RELEASES" ${mapping:+--mapping "$mapping" --integration-identifier "$IDENTIFIER"} \
    --ado-latency-ms "$latency_ms" --port-latency-ms "$latency_ms" \
    > "$logs/sim-$1.log" 2>&1 &
  pids+=($!)
  sim_pid[$1]=$!
}
requests() { # name: "A P", the requests that simulator pair's Azure DevOps and Port received
  local out="$logs/sim-$1.log" before tries=0
  before=$(grep -c '^requests:' "$out" || true)
  kill -USR1 "${sim_pid[$1]}"
  until [ "$(grep -c '^requests:' "$out" || true)" -gt "$before" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 100 ] || die "the $1 simulators did not report their requests (log: $out)"
    sleep 0.1
  done
  grep '^requests:' "$out" | tail -1 | sed 's/^requests: azure_devops=\([0-9]*\) port=\([0-9]*\)$/\1 \2/'
}
kind_rows() { # name: the request report rows ("MADE MINIMUM KIND") of that simulator's last report
  awk '/^azure_devops kind: /{ sub(/^azure_devops kind: /, ""); block = block $0 "\n" }
       /^requests:/{ last = block; block = "" } END { printf "%s", last }' "$logs/sim-$1.log"
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; } # expression: its value, one decimal
organization_url() { # name: waits for that simulator, then prints its organization URL
  local out="$logs/sim-$1.log" tries=0
  until grep -q "organization URL" "$out" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -le 300 ] || die "the $1 simulators did not start (log: $out)"
    sleep 0.1
  done
  grep -o 'http://[^ ]*' "$out" | head -1
}
start_sim python "${ports[0]}" "${ports[1]}"
start_sim adoport "${ports[2]}" "${ports[3]}"
# Both integrations read the first organization (the URLs they map name its host); the second
# process serves only its Port.
org=$(organization_url python)
organization_url adoport > /dev/null
python_port="http://127.0.0.1:${ports[1]}"
adoport_port="http://127.0.0.1:${ports[3]}"
if [ -n "$mapping" ]; then
  PORT_CLIENT_ID="$CLIENT_ID" PORT_CLIENT_SECRET="$CLIENT_SECRET" \
    "$venv/bin/python" "$scripts/side_by_side.py" blueprints "$mapping" "$python_port" "$adoport_port"
fi

common_env=(
  OCEAN__PORT__CLIENT_ID="$CLIENT_ID" OCEAN__PORT__CLIENT_SECRET="$CLIENT_SECRET"
  OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN="$PAT"
  OCEAN__INTEGRATION__IDENTIFIER="$IDENTIFIER" OCEAN__INTEGRATION__TYPE=azure-devops
  OCEAN__EVENT_LISTENER='{"type":"ONCE"}' OCEAN__INITIALIZE_PORT_RESOURCES=true
)

# Each run under /usr/bin/time (when there is one): the CPU time of its processes (GNU time's
# %U and %S, seconds; the simulators' is not in it) on one line, then the peak resident memory
# of the largest process it ran (%M, KiB).
measured() { # rss-file command...
  local file=$1
  shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -f '%U %S\n%M' -o "$file" "$@"; else rm -f "$file"; "$@"; fi
}
read -r ado_0 python_port_0 < <(requests python)
kind_rows python > "$logs/kinds-0"
read -r _ adoport_port_0 < <(requests adoport)

# --- the Python integration, one resync ----------------------------------------------------------
if [ -z "$adoport_only" ]; then
  say "running the Python integration (ONCE) against $org (log: $logs/python.log)"
  started=$(now)
  (cd "$integration" && measured "$logs/python.rss" env "${common_env[@]}" \
    OCEAN__PORT__BASE_URL="$python_port" OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL="$org" \
    timeout --kill-after=10 "$RUN_TIMEOUT_SECS" "$venv/bin/ocean" sail \
    > "$logs/python.log" 2>&1) \
    || { tail -20 "$logs/python.log" >&2; die "the Python integration failed"; }
  python_secs=$(calc "$(now) - $started")
  grep -q "Resync finished successfully" "$logs/python.log" \
    || die "the Python integration did not finish its resync (log: $logs/python.log)"
  say "Python integration done in $python_secs s"
  read -r ado_1 python_port_1 < <(requests python)
  kind_rows python > "$logs/kinds-1"
else
  say "--adoport-only: not running the Python integration"
  python_secs="not run"
  ado_1=$ado_0 python_port_1=$python_port_0
  rm -f "$logs/python.rss"
  cp "$logs/kinds-0" "$logs/kinds-1"
fi

# --- adoport, one resync -------------------------------------------------------------------------
say "running adoport all (ONCE) against $org (log: $logs/adoport.log)"
started=$(now)
measured "$logs/adoport.rss" env "${common_env[@]}" \
  OCEAN__PORT__BASE_URL="$adoport_port" OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL="$org" \
  timeout --kill-after=10 "$RUN_TIMEOUT_SECS" "$adoport" all \
  > "$logs/adoport.log" 2>&1 \
  || { tail -20 "$logs/adoport.log" >&2; die "adoport failed (log: $logs/adoport.log)"; }
adoport_secs=$(calc "$(now) - $started")
say "adoport done in $adoport_secs s"
read -r ado_2 _ < <(requests python)
kind_rows python > "$logs/kinds-2"
read -r _ adoport_port_2 < <(requests adoport)

if [ -n "$bench" ]; then
  rss() { [ -s "$1" ] && echo "$(($(tail -1 "$1") / 1024)) MiB" || echo "not measured"; }
  cpu() { [ -s "$1" ] && calc "$(tail -2 "$1" | head -1 | awk '{ print $1 + $2 }')" || echo "not measured"; }
  echo "Speed run: $PROJECTS projects x $REPOSITORIES repositories, $WORK_ITEMS work items per project,"
  echo "$PULL_REQUESTS pull requests per repository, $RELEASES releases per project, every Azure DevOps and Port answer"
  echo "delayed $latency_ms ms, one ONCE resync each (wall time from process start to exit)"
  printf '| %-30s | %12s | %12s |\n' "" python adoport
  printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})"
  printf '| %-30s | %12s | %12s |\n' "wall time (s)" "$python_secs" "$adoport_secs"
  if [ -z "$adoport_only" ]; then ratio="$(calc "$python_secs / $adoport_secs")x"; else ratio=-; fi
  printf '| %-30s | %12s | %12s |\n' "ratio (python / adoport)" "$ratio" ""
  printf '| %-30s | %12s | %12s |\n' "Azure DevOps requests" $((ado_1 - ado_0)) $((ado_2 - ado_1))
  printf '| %-30s | %12s | %12s |\n' "Port requests" $((python_port_1 - python_port_0)) $((adoport_port_2 - adoport_port_0))
  printf '| %-30s | %12s | %12s |\n' "peak RSS" "$(rss "$logs/python.rss")" "$(rss "$logs/adoport.rss")"
  printf '| %-30s | %12s | %12s |\n' "CPU time, user + sys (s)" "$(cpu "$logs/python.rss")" "$(cpu "$logs/adoport.rss")"
  # Azure DevOps requests per kind (attributed by the simulator) against the fewest this
  # organization and mapping allow (adoport_sim::ado::RequestReport).
  echo
  awk 'FNR == 1 { file++ }
       { made = $1; minimum = $2; $1 = ""; $2 = ""; kind = substr($0, 3) }
       file == 1 { before[kind] = made; next }
       file == 2 { python[kind] = made - before[kind]; next }
       { adoport = made - before[kind] - python[kind]
         if (!(kind in seen)) { order[++n] = kind; seen[kind] = 1 }
         a[kind] = adoport; m[kind] = minimum }
       END {
         printf "| %-46s | %7s | %7s | %7s | %9s |\n", "Azure DevOps requests", "minimum", "python", "adoport", "adoport/min"
         for (i = 1; i <= n; i++) {
           k = order[i]; ratio = m[k] ? sprintf("%.2f", a[k] / m[k]) : "-"
           printf "| %-46s | %7d | %7d | %7d | %9s |\n", k, m[k], python[k], a[k], ratio
           tm += m[k]; tp += python[k]; ta += a[k]
         }
         printf "| %-46s | %7d | %7d | %7d | %9s |\n", "total", tm, tp, ta, tm ? sprintf("%.2f", ta / tm) : "-"
         printf "Azure DevOps requests: made %d, minimum %d (%.2f); the Python integration made %d (%.2f)\n", ta, tm, tm ? ta / tm : 0, tp, tm ? tp / tm : 0
       }' "$logs/kinds-0" "$logs/kinds-1" "$logs/kinds-2"
fi

# --- entity by entity ----------------------------------------------------------------------------
if [ -n "$adoport_only" ]; then
  say "--adoport-only: no comparison (the Python integration's Port is empty)"
  exit 0
fi
PORT_CLIENT_ID="$CLIENT_ID" PORT_CLIENT_SECRET="$CLIENT_SECRET" \
  "$python" "$scripts/side_by_side.py" compare "$python_port" "$adoport_port" $report_only
