#!/usr/bin/env bash
# The project's test command: starts what the tests need, then runs every test.
#   scripts/test.sh            all tests (unit, end-to-end, fault tests)
#   scripts/test.sh -p adoport-shared   arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
# compose.yaml is validated by Debian's docker-compose in the tests.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose: installing (validates compose.yaml)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
# The jq differential test (transform/tests/jq_differential.rs) compares jaq with libjq as the
# Python integration runs it: the PyPI package jq 1.12.0, which its lock file pins.
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("jq") != "1.12.0")' 2>/dev/null; then
  echo "jq 1.12.0 (PyPI): installing with pip (the jq differential test compares jaq with it)"
  python3 -m pip install -q jq==1.12.0 >/dev/null
fi
# The Kubernetes manifests in deploy/kubernetes are checked against the API schemas (offline).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "kubernetes-validate: installing with pip (validates deploy/kubernetes)"
  python3 -m pip install -q kubernetes-validate >/dev/null
fi
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml deploy/kubernetes/autoscaling/cpu.yaml \
  deploy/kubernetes/examples/*.yaml
# The Helm chart, rendered offline with several values sets and validated the same way; also
# installs helm-python-sdk, whose renderer cli/tests/helm.rs runs.
scripts/check-helm.sh
export ADOPORT_TEST_AMQP_URL="${ADOPORT_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
cargo test --workspace --locked "$@"
