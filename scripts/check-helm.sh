#!/usr/bin/env bash
# Renders the Helm chart (deploy/helm/adoport) offline with several values sets and validates
# every manifest against the Kubernetes API schemas, without a helm binary or a cluster:
#   - Port's documented install for Azure DevOps, `helm upgrade --install … --set …`, verbatim;
#   - Port's documented ArgoCD values file, with the parameters ArgoCD adds;
#   - the values files in deploy/helm/adoport/ci/ (scaled on a broker, CronJob, …).
# Values the chart must refuse are rendered too, and must fail.
# Renders with scripts/helm-render.py (helm-python-sdk), validates with kubernetes-validate.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=deploy/helm/adoport
if ! python3 -c 'import helm_python' >/dev/null 2>&1; then
  echo "helm-python-sdk: installing with pip (renders deploy/helm/adoport)"
  python3 -m pip install -q helm-python-sdk >/dev/null
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "kubernetes-validate: installing with pip (validates the rendered chart)"
  python3 -m pip install -q kubernetes-validate >/dev/null
fi
# helm lint --strict, with the least values that render.
python3 scripts/helm-render.py "$chart" --lint --set port.clientId=id --set port.clientSecret=secret
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

render() { # NAME ARGS...: renders into $out/NAME.yaml
  local name=$1
  shift
  python3 scripts/helm-render.py "$chart" "$@" >"$out/$name.yaml"
}

# Port's docs, "Real Time & Always On", Helm: the same --set values, only the chart differs.
render docs-helm --name my-azure-devops-integration \
  --set port.clientId="PORT_CLIENT_ID" \
  --set port.clientSecret="PORT_CLIENT_SECRET" \
  --set port.baseUrl="https://api.getport.io" \
  --set initializePortResources=true \
  --set scheduledResyncInterval=120 \
  --set integration.identifier="my-azure-devops-integration" \
  --set integration.type="azure-devops" \
  --set integration.eventListener.type="POLLING" \
  --set integration.secrets.organizationUrl="https://dev.azure.com/organizationName" \
  --set integration.secrets.personalAccessToken="Enter value here"
# The same, ArgoCD: the values file and the Application's parameters.
render docs-argocd --name my-ocean-azure-devops-integration \
  -f "$chart/ci/argocd-values.yaml" \
  --set port.clientId=YOUR_PORT_CLIENT_ID --set port.clientSecret=YOUR_PORT_CLIENT_SECRET
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" .yaml)
  [ "$name" = argocd-values ] && continue
  render "$name" --name adoport -f "$values"
done

# What the chart must refuse, with the reason it gives.
refuse() { # REASON ARGS...
  local reason=$1
  shift
  if python3 scripts/helm-render.py "$chart" "$@" >/dev/null 2>"$out/refused"; then
    echo "the chart accepted $* (expected a refusal: $reason)" >&2
    exit 1
  fi
  grep -q "$reason" "$out/refused" || {
    echo "the chart refused $* without saying \"$reason\":" >&2
    cat "$out/refused" >&2
    exit 1
  }
}
refuse "port.clientId is required" --set port.clientSecret=s
refuse "may not exceed broker.partitions" --set port.clientId=i --set port.clientSecret=s \
  --set broker.url=amqp://rabbitmq --set broker.partitions=4 --set publish.autoscaling.maxReplicas=5
refuse "runs one process" --set port.clientId=i --set port.clientSecret=s \
  --set workload.kind=CronJob --set scheduledResyncInterval="0 * * * *" --set broker.url=amqp://rabbitmq

# The Prometheus Operator's ServiceMonitor is a custom resource kubernetes-validate has no
# schema for: it is checked by cli/tests/helm.rs; everything else against the API schemas.
for rendered in "$out"/*.yaml; do
  python3 - "$rendered" <<'PY'
import sys
path = sys.argv[1]
docs = open(path, encoding="utf-8").read().split("\n---\n")
kept = [d for d in docs if "kind: ServiceMonitor" not in d]
open(path, "w", encoding="utf-8").write("\n---\n".join(kept))
PY
done
kubernetes-validate --strict --quiet "$out"/*.yaml
echo "helm chart: $(ls "$out"/*.yaml | wc -l) renders valid"
