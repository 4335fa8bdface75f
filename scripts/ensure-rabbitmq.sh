#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (guest/guest), as the tests need:
# uses the running one, starts an installed one, or installs it (Debian/Ubuntu) and starts it.
set -euo pipefail

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if port_open; then
  echo "RabbitMQ: already running on 127.0.0.1:5672"
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ: not installed; installing from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server >/dev/null
fi

echo "RabbitMQ: starting"
rabbitmq-server -detached >/dev/null 2>&1 || true
# Wait for the node to boot (bounded): the port opens when it accepts connections.
for _ in $(seq 1 120); do
  if port_open && rabbitmqctl -q status >/dev/null 2>&1; then
    echo "RabbitMQ: up"
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ: did not come up within 120 s" >&2
exit 1
