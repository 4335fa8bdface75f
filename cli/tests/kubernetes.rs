//! The Kubernetes manifests scale what the code can use, on the queues the code declares.
//!
//! `kubernetes-validate --strict` (scripts/test.sh) checks the built-in kinds against the API
//! schemas; it knows no custom resources, so the KEDA ScaledObjects are checked here against the
//! facts of KEDA's `rabbitmq` scaler (keda.sh/docs, "RabbitMQ Queue": the trigger's metadata
//! keys and modes), and every file against the topology: the queues named are the queues the
//! roles declare, and publish never scales past the partition count. `kubectl apply -f
//! deploy/kubernetes/` must be safe to repeat: it holds no Secret (that would overwrite the
//! user's) and pins no mapping file (that would override the mapping users edit in Port); and its
//! pods pass Pod Security "restricted".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use adoport_shared::topology::{Topology, WorkQueue};
use serde_json::Value;

mod pod_security;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every document of every `.yaml` file directly in `dir`, with the file it came from.
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("manifest is readable");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{} parses: {e}", path.display()));
            let name = path.file_name().expect("file name").to_string_lossy();
            docs.into_iter()
                .filter(|doc| !doc.is_null())
                .map(move |doc| (name.to_string(), doc))
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"] == kind)
        .collect()
}

fn named<'a>(docs: &[&'a Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|doc| doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("a resource named {name}"))
}

/// The base manifests' settings ConfigMap, as variable → value.
fn config(base: &[(String, Value)]) -> BTreeMap<String, String> {
    let map = named(&of_kind(base, "ConfigMap"), "adoport-config");
    map["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string()))
        .collect()
}

fn partitions(base: &[(String, Value)]) -> u16 {
    config(base)
        .get("ADOPORT__BROKER__PARTITIONS")
        .expect("config.yaml sets ADOPORT__BROKER__PARTITIONS")
        .parse()
        .expect("a number")
}

/// The environment variables a Deployment's containers get, by name (from `env` and from the
/// ConfigMaps of the base and the example Secret that `envFrom` names).
fn environment_of(deployment: &Value, base: &[(String, Value)]) -> BTreeSet<String> {
    let mut base = base.to_vec();
    base.extend(documents(&deploy_dir().join("examples")));
    let base = base.as_slice();
    let mut names = BTreeSet::new();
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    for container in containers {
        for var in container["env"].as_array().into_iter().flatten() {
            names.insert(var["name"].as_str().expect("env name").to_string());
        }
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let (kind, reference, data) = if source["secretRef"].is_object() {
                ("Secret", &source["secretRef"], "stringData")
            } else {
                ("ConfigMap", &source["configMapRef"], "data")
            };
            let object = named(
                &of_kind(base, kind),
                reference["name"].as_str().expect("name"),
            );
            names.extend(object[data].as_object().expect("keys").keys().cloned());
        }
    }
    names
}

#[test]
fn the_base_manifests_leave_autoscaling_to_one_chosen_file() {
    let base = documents(&deploy_dir());
    for kind in ["HorizontalPodAutoscaler", "ScaledObject"] {
        assert!(
            of_kind(&base, kind).is_empty(),
            "deploy/kubernetes/*.yaml must not hold a {kind}: KEDA refuses a workload an HPA \
             already scales, so the variants live in autoscaling/ and users pick one"
        );
    }
    let variants = documents(&deploy_dir().join("autoscaling"));
    let files: BTreeSet<&str> = variants.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(files, BTreeSet::from(["cpu.yaml", "queue-depth.yaml"]));
}

#[test]
fn keda_scales_transform_and_publish_on_the_queues_they_consume() {
    let base = documents(&deploy_dir());
    let partitions = partitions(&base);
    let topology = Topology::new("", partitions);
    let deployments = of_kind(&base, "Deployment");
    let variants = documents(&deploy_dir().join("autoscaling"));
    let scaled = of_kind(&variants, "ScaledObject");
    assert_eq!(
        scaled.len(),
        2,
        "one ScaledObject for transform, one for publish"
    );

    // The metadata keys and modes of KEDA's rabbitmq scaler (keda.sh/docs, "RabbitMQ Queue").
    let known_keys = BTreeSet::from([
        "host",
        "protocol",
        "mode",
        "value",
        "activationValue",
        "queueName",
        "vhostName",
        "hostFromEnv",
        "useRegex",
        "excludeUnacknowledged",
        "pageSize",
        "operation",
        "timeout",
        "unsafeSsl",
    ]);
    let mut queues_by_target: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for object in &scaled {
        assert_eq!(object["apiVersion"], "keda.sh/v1alpha1");
        let target = object["spec"]["scaleTargetRef"]["name"]
            .as_str()
            .expect("scaleTargetRef.name");
        let deployment = named(&deployments, target);
        let environment = environment_of(deployment, &base);
        let min = object["spec"]["minReplicaCount"].as_u64().expect("min");
        let max = object["spec"]["maxReplicaCount"].as_u64().expect("max");
        assert!(1 <= min && min <= max, "{target}: replicas {min}..{max}");
        for trigger in object["spec"]["triggers"].as_array().expect("triggers") {
            assert_eq!(trigger["type"], "rabbitmq", "{target}");
            let metadata = trigger["metadata"].as_object().expect("metadata");
            for key in metadata.keys() {
                assert!(
                    known_keys.contains(key.as_str()),
                    "{target}: KEDA's rabbitmq scaler has no metadata key {key}"
                );
            }
            assert_eq!(
                metadata["protocol"], "amqp",
                "{target}: no management plugin needed"
            );
            assert_eq!(metadata["mode"], "QueueLength", "{target}");
            let value: f64 = metadata["value"]
                .as_str()
                .expect("value is a string")
                .parse()
                .expect("value is a number");
            assert!(value > 0.0, "{target}: value {value}");
            let host = metadata["hostFromEnv"].as_str().expect("hostFromEnv");
            assert!(
                environment.contains(host),
                "{target}: hostFromEnv {host} is not in the Deployment's environment {environment:?}"
            );
            queues_by_target
                .entry(target.to_string())
                .or_default()
                .insert(metadata["queueName"].as_str().expect("queueName").into());
        }
        if target == "adoport-publish" {
            assert!(
                max <= u64::from(partitions),
                "publish may not scale past the {partitions} partitions (maxReplicaCount {max})"
            );
        }
    }
    assert_eq!(
        queues_by_target["adoport-transform"],
        BTreeSet::from([topology.work_queue(WorkQueue::Raw)])
    );
    assert_eq!(
        queues_by_target["adoport-publish"],
        topology
            .change_queues()
            .map(|q| topology.work_queue(q))
            .collect::<BTreeSet<_>>(),
        "publish's triggers cover exactly the change partitions"
    );
}

#[test]
fn the_cpu_fallback_never_scales_publish_past_the_partitions() {
    let base = documents(&deploy_dir());
    let partitions = partitions(&base);
    let deployments = of_kind(&base, "Deployment");
    let variants = documents(&deploy_dir().join("autoscaling"));
    let autoscalers = of_kind(&variants, "HorizontalPodAutoscaler");
    let targets: BTreeSet<&str> = autoscalers
        .iter()
        .map(|hpa| {
            let target = hpa["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .expect("name");
            named(&deployments, target);
            target
        })
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from(["adoport-publish", "adoport-transform"])
    );
    let publish = named(&autoscalers, "adoport-publish");
    let max = publish["spec"]["maxReplicas"]
        .as_u64()
        .expect("maxReplicas");
    assert!(
        max <= u64::from(partitions),
        "publish may not scale past the {partitions} partitions (maxReplicas {max})"
    );
}

#[test]
fn applying_the_folder_again_overwrites_no_secret_and_pins_no_mapping() {
    let base = documents(&deploy_dir());
    assert!(
        of_kind(&base, "Secret").is_empty(),
        "deploy/kubernetes/*.yaml must not hold a Secret: every `kubectl apply` would overwrite \
         the user's real one (examples/secret.example.yaml documents its keys)"
    );
    assert!(
        !config(&base).contains_key("ADOPORT__MAPPING_FILE"),
        "a mapping file in adoport-config overrides the mapping users edit in Port"
    );
    for deployment in of_kind(&base, "Deployment") {
        let pod = pod_security::pod_spec(deployment).expect("a pod template");
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(map) = volume["configMap"].as_object() {
                let name = map["name"].as_str().expect("name");
                let in_base = of_kind(&base, "ConfigMap")
                    .iter()
                    .any(|m| m["metadata"]["name"] == name);
                assert!(
                    in_base || map.get("optional") == Some(&Value::Bool(true)),
                    "{}: volume from ConfigMap {name}, not in the folder, must be optional",
                    deployment["metadata"]["name"]
                );
            }
        }
    }
    // The examples exist, and name the Secret the Deployments read.
    let examples = documents(&deploy_dir().join("examples"));
    let secret = named(&of_kind(&examples, "Secret"), "adoport-secrets");
    assert!(secret["stringData"]["ADOPORT__BROKER__URL"].is_string());
}

#[test]
fn every_pod_passes_pod_security_restricted() {
    let base = documents(&deploy_dir());
    let deployments = of_kind(&base, "Deployment");
    assert_eq!(deployments.len(), 3);
    for deployment in deployments {
        let pod = pod_security::pod_spec(deployment).expect("a pod template");
        let problems = pod_security::restricted_violations(pod);
        assert!(
            problems.is_empty(),
            "{}: {problems:?}",
            deployment["metadata"]["name"]
        );
    }
}

/// Probes point at ports the container has; ingest's readiness is the webhook port's `/readyz`
/// (the broker takes messages), not the health port's, which also waits for Azure DevOps: an
/// Azure DevOps outage must not take ingest out of its Service and refuse webhooks.
#[test]
fn probes_name_container_ports_and_ingest_is_ready_while_the_broker_is() {
    let base = documents(&deploy_dir());
    for deployment in of_kind(&base, "Deployment") {
        let name = deployment["metadata"]["name"].as_str().expect("name");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let ports: Vec<&str> = container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["name"].as_str().expect("port name"))
            .collect();
        for probe in ["livenessProbe", "readinessProbe"] {
            let port = container[probe]["httpGet"]["port"].as_str().expect("port");
            assert!(
                ports.contains(&port),
                "{name}: {probe} on {port}, not in {ports:?}"
            );
        }
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{name}"
        );
        if name == "adoport-ingest" {
            assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        }
    }
}
