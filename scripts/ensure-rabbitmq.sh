#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (guest/guest), as the tests need:
# uses the running one, starts an installed one, or installs it (Debian/Ubuntu) and starts it.
#
# The tests run in parallel, each with its own quorum queues, and RabbitMQ 3.10 reserves file
# handles for every queue's log: a broker started with the common soft limit of 1024 open files
# runs out of handles with a few hundred queues, and then *hangs* every new connection in the
# AMQP handshake (file_handle_cache:obtain waits for a socket handle that never comes). So the
# broker this script starts gets its hard limit as soft limit (Debian starts it through `su`,
# which resets the soft limit: rabbitmq-env.conf, which its start script sources, raises it),
# and a running broker with too few handles is restarted once with that setting.
set -euo pipefail

# File handles below which a local broker is too small for the test suite.
MIN_HANDLES=4000
ENV_CONF=/etc/rabbitmq/rabbitmq-env.conf
MARKER="# adoport tests: raise the open-files soft limit (scripts/ensure-rabbitmq.sh)"

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

# The broker's file handle limit, or nothing when it cannot be asked.
handle_limit() {
  timeout 30 rabbitmqctl -q eval 'file_handle_cache:get_limit().' 2>/dev/null | tr -dc '0-9'
}

raise_open_files_limit() {
  [ "$(id -u)" = 0 ] && [ -d "$(dirname "$ENV_CONF")" ] || return 0
  if ! grep -qF "$MARKER" "$ENV_CONF" 2>/dev/null; then
    printf '%s\nulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true\n' "$MARKER" >>"$ENV_CONF"
  fi
}

wait_until_up() {
  for _ in $(seq 1 120); do
    if port_open && timeout 10 rabbitmqctl -q await_startup >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  echo "RabbitMQ: did not come up within 120 s" >&2
  return 1
}

start() {
  raise_open_files_limit
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_until_up
}

if port_open; then
  limit=$(handle_limit || true)
  if [ -n "$limit" ] && [ "$limit" -lt "$MIN_HANDLES" ] && [ "$(id -u)" = 0 ]; then
    echo "RabbitMQ: running with only $limit file handles; restarting it with a higher open-files limit"
    timeout 60 rabbitmqctl -q stop >/dev/null 2>&1 || pkill -9 -u rabbitmq beam.smp || true
    for _ in $(seq 1 30); do port_open || break; sleep 1; done
    start
    echo "RabbitMQ: up with $(handle_limit || echo '?') file handles"
  else
    echo "RabbitMQ: already running on 127.0.0.1:5672"
  fi
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ: not installed; installing from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server >/dev/null
fi

echo "RabbitMQ: starting"
start
echo "RabbitMQ: up"
