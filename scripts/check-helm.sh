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

# incrementalSync (port-ocean's incremental CronJob), beside the one-process resync CronJob too.
render incremental-beside-cronjob --name adoport -f "$chart/ci/cronjob-values.yaml" \
  --set incrementalSync.enabled=true

# The incremental CronJob: rendered only when enabled, on its schedule, one `adoport all` in a
# ONCE incremental run with the values' settings, and never on the broker the roles use.
python3 - "$out" <<'PY'
import base64, json, sys
import yaml

out = sys.argv[1]

def docs(name):
    with open(f"{out}/{name}.yaml", encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d]

def fail(message):
    sys.exit(f"incrementalSync: {message}")

def incremental(name):
    return [d for d in docs(name) if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("-incr-cron")]

def environment(name, job):
    """The container's variables: its envFrom ConfigMaps and Secrets of the render, then env."""
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs(name)}
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(rendered[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            secret = rendered.get(("Secret", source["secretRef"]["name"]), {"data": {}})
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from a Secret>")
    return container, env

for name in ("docs-helm", "docs-argocd", "cronjob-values", "broker-url-values", "scaled-values"):
    if incremental(name):
        fail(f"{name}: rendered although incrementalSync.enabled is false")

jobs = incremental("incremental-values")
if len(jobs) != 1:
    fail(f"incremental-values: {len(jobs)} incremental CronJobs, expected 1")
job = jobs[0]
spec = job["spec"]
expected = {"schedule": "*/30 * * * *", "concurrencyPolicy": "Forbid", "suspend": False,
            "failedJobsHistoryLimit": 1, "successfulJobsHistoryLimit": 1}
for key, value in expected.items():
    if spec.get(key) != value:
        fail(f"spec.{key} is {spec.get(key)!r}, expected {value!r}")
if spec["jobTemplate"]["spec"].get("activeDeadlineSeconds") != 25 * 60:
    fail("timeoutMinutes 25 is not activeDeadlineSeconds 1500")
container, env = environment("incremental-values", job)
if container["args"] != ["all"]:
    fail(f"args {container['args']}, expected [all]")
if container["resources"]["limits"] != {"cpu": "800m", "memory": "512Mi"}:
    fail(f"resources {container['resources']}, expected incrementalSync.resources")
wanted = {
    "OCEAN__EVENT_LISTENER": '{"type":"ONCE"}',
    "OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED": "true",
    "OCEAN__INITIALIZE_PORT_RESOURCES": "true",
    "OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL": "30",
    "OCEAN__PORT__CLIENT_ID": "client-id",
    "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL": "https://dev.azure.com/acme",
}
for key, value in wanted.items():
    if env.get(key) != value:
        fail(f"{key} is {env.get(key)!r}, expected {value!r}")
if json.loads(env["OCEAN__EVENT_LISTENER"]) != {"type": "ONCE"}:
    fail("the event listener is not ONCE")
for key in env:
    if key.startswith("ADOPORT__BROKER__") or key == "OCEAN__SCHEDULED_RESYNC_INTERVAL":
        fail(f"the job gets {key}: it runs one process, on no broker and no schedule")
# The roles beside it still run on the broker.
roles = [d for d in docs("incremental-values") if d["kind"] == "Deployment"]
if sorted(d["metadata"]["name"].rsplit("-", 1)[1] for d in roles) != ["ingest", "publish", "transform"]:
    fail("the broker's roles are not rendered beside the incremental CronJob")

# Beside the resync CronJob: two CronJobs, the incremental one on port-ocean's default schedule
# and initializePortResources false, the resync one unchanged.
cronjobs = [d for d in docs("incremental-beside-cronjob") if d["kind"] == "CronJob"]
if len(cronjobs) != 2:
    fail(f"beside workload.kind CronJob: {len(cronjobs)} CronJobs, expected 2")
job = incremental("incremental-beside-cronjob")[0]
if job["spec"]["schedule"] != "*/15 * * * *":
    fail(f"default schedule {job['spec']['schedule']!r}, expected */15 * * * *")
_, env = environment("incremental-beside-cronjob", job)
if env.get("OCEAN__INITIALIZE_PORT_RESOURCES") != "false":
    fail("initializePortResources is not false by default")
resync = next(d for d in cronjobs if d is not job and d["metadata"]["name"] != job["metadata"]["name"])
_, env = environment("incremental-beside-cronjob", resync)
if env.get("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED"):
    fail("the resync CronJob became incremental")
print("incrementalSync: the incremental CronJob renders as configured, and only when enabled")
PY

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
