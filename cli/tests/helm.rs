//! The Helm chart (deploy/helm/adoport) starts the binary it describes.
//!
//! The chart is rendered by scripts/helm-render.py (helm-python-sdk: Helm's own renderer, no
//! helm binary; scripts/test.sh installs it), with the values of Port's documented install.
//! The binary then runs with exactly the arguments and environment the rendered Deployment
//! gives its container (its `env`, and the ConfigMap and Secret its `envFrom` names), against
//! the simulators, and the Deployment's own liveness and readiness probes must pass. With a
//! broker, every role's rendered environment must be accepted by `check-config`. The
//! incremental CronJob (incrementalSync) runs one incremental sync with its rendered container,
//! on no broker, beside roles that use one. Every render
//! of the values in deploy/helm/adoport/ci passes Pod Security "restricted".
//! scripts/check-helm.sh validates the same renders against the Kubernetes API schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use adoport::sim::{SimulatedWorld, default_mapping};
use base64::Engine as _;
use serde_json::Value;

mod pod_security;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart rendered with `args` (`--set …`, `-f …`), as documents.
fn render(args: &[String]) -> Vec<Value> {
    let output = Command::new("python3")
        .current_dir(root())
        .arg("scripts/helm-render.py")
        .arg("deploy/helm/adoport")
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the chart does not render (scripts/test.sh installs helm-python-sdk): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("the render parses");
    docs.into_iter().filter(|doc| !doc.is_null()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|doc| doc["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|doc| doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the render has no {kind} {name}"))
}

/// The first container of a Deployment's or a CronJob's pod template.
fn container(workload: &Value) -> &Value {
    let template = match workload["kind"].as_str() {
        Some("CronJob") => &workload["spec"]["jobTemplate"]["spec"]["template"],
        _ => &workload["spec"]["template"],
    };
    &template["spec"]["containers"][0]
}

/// The environment the container gets: its ConfigMaps and Secrets (`envFrom`), then its `env`
/// (which wins, as in Kubernetes). Only objects of the render can be resolved.
fn environment(deployment: &Value, docs: &[Value]) -> BTreeMap<String, String> {
    let container = container(deployment);
    let mut vars = BTreeMap::new();
    let decode = |value: &Value| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 string"))
            .expect("valid base64");
        String::from_utf8(bytes).expect("utf-8")
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            for (key, value) in named(docs, "ConfigMap", name)["data"]
                .as_object()
                .expect("data")
            {
                vars.insert(key.clone(), value.as_str().expect("string").to_string());
            }
        }
        if let Some(name) = source["secretRef"]["name"].as_str() {
            for (key, value) in named(docs, "Secret", name)["data"]
                .as_object()
                .expect("data")
            {
                vars.insert(key.clone(), decode(value));
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("name").to_string();
        let value = match var["value"].as_str() {
            Some(value) => value.to_string(),
            None => {
                let reference = &var["valueFrom"]["secretKeyRef"];
                let secret = named(docs, "Secret", reference["name"].as_str().expect("name"));
                decode(&secret["data"][reference["key"].as_str().expect("key")])
            }
        };
        vars.insert(name, value);
    }
    vars
}

fn arguments(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect()
}

/// The container port a probe names (by name or number).
fn probe_port(deployment: &Value, probe: &str) -> u16 {
    let container = container(deployment);
    let port = &container[probe]["httpGet"]["port"];
    let number =
        match port.as_str() {
            Some(name) => container["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{probe} names port {name}, which the container lacks"))
                ["containerPort"]
                .as_u64(),
            None => port.as_u64(),
        };
    u16::try_from(number.expect("a port number")).expect("a port")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// Port's documented `helm upgrade --install` values, with the simulators' addresses and
/// credentials in place of the placeholders.
fn documented_install(world: &SimulatedWorld) -> Vec<String> {
    let port = adoport_sim::port::PortSimConfig::default();
    let ado = adoport_sim::ado::AdoSimConfig::default();
    [
        format!("port.clientId={}", port.client_id),
        format!("port.clientSecret={}", port.client_secret),
        format!("port.baseUrl={}", world.port.base_url()),
        "initializePortResources=true".to_string(),
        "scheduledResyncInterval=120".to_string(),
        "integration.identifier=my-azure-devops-integration".to_string(),
        "integration.type=azure-devops".to_string(),
        "integration.eventListener.type=POLLING".to_string(),
        format!(
            "integration.secrets.organizationUrl={}",
            world.ado.organization_url()
        ),
        format!(
            "integration.secrets.personalAccessToken={}",
            ado.personal_access_token
        ),
    ]
    .into_iter()
    .flat_map(|set| ["--set".to_string(), set])
    .collect()
}

/// `adoport check-config ROLE` with `environment`: it must accept it, and ignore none of it:
/// every variable the chart renders means something to the binary.
fn check_config(role: &str, environment: &BTreeMap<String, String>) {
    let output = Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args(["check-config", role])
        .env_clear()
        .envs(environment)
        .env("ADOPORT_LOG_JSON", "true")
        .output()
        .expect("adoport runs");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`adoport {role}` refuses the rendered environment: {}{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The warning names one setting (`setting`) or all of them (`settings`, comma-separated).
    let ignored: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.contains("not use") && m.ends_with("ignored"))
        })
        .flat_map(|event| {
            [&event["setting"], &event["settings"]]
                .iter()
                .filter_map(|field| field.as_str())
                .flat_map(|list| list.split(',').map(|name| name.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        ignored.is_empty(),
        "`adoport {role}` ignores what the chart renders: {ignored:?}"
    );
}

/// Polls `url` until it answers 200; the last answer otherwise.
async fn answers_ok(url: &str, within: Duration) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    let mut last = String::from("no answer");
    while tokio::time::Instant::now() < deadline {
        interval.tick().await;
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                last = format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                )
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[tokio::test]
async fn the_documented_install_runs_and_passes_its_probes() {
    let mapping = default_mapping(Some(&["project"])).expect("default mapping");
    let world = SimulatedWorld::start(1, 1, mapping)
        .await
        .expect("simulators start");
    let (health, webhooks) = (free_port(), free_port());
    let mut args = documented_install(&world);
    args.extend(
        [
            format!("health.port={health}"),
            format!("service.port={webhooks}"),
        ]
        .into_iter()
        .flat_map(|set| ["--set".to_string(), set]),
    );
    let docs = render(&args);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1, "one process without a broker");
    let deployment = deployments[0];
    assert_eq!(arguments(deployment), ["all"]);
    let environment = environment(deployment, &docs);
    check_config("all", &environment);

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args(arguments(deployment))
        .env_clear()
        .envs(&environment)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("adoport starts");
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container(deployment)[probe]["httpGet"]["path"]
            .as_str()
            .expect("an HTTP probe");
        let url = format!("http://127.0.0.1:{}{path}", probe_port(deployment, probe));
        if let Err(last) = answers_ok(&url, Duration::from_secs(60)).await {
            let _ = child.start_kill();
            let output = child.wait_with_output().await.expect("adoport output");
            panic!(
                "{probe} {url} does not pass: {last}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    child.start_kill().expect("adoport stops");
    let _ = child.wait().await;
    world.shutdown().await;
}

/// incrementalSync.enabled (port-ocean's incremental CronJob) beside roles on a broker: the
/// CronJob's container, with exactly the arguments and environment the render gives it, runs
/// one ONCE incremental sync against the simulators, on no broker (the one in the values does
/// not exist), saves its cursors in Port and exits 0.
#[tokio::test]
async fn the_incremental_cronjob_runs_one_incremental_sync_on_no_broker() {
    let mapping = default_mapping(Some(&["project", "work-item"])).expect("default mapping");
    let world = SimulatedWorld::start(1, 1, mapping)
        .await
        .expect("simulators start");
    // The integration the always-on Deployment made (the job initializes nothing by default).
    let identifier = adoport_sim::port::PortSimConfig::default().integration_identifier;
    let mut args = documented_install(&world);
    args.extend(
        [
            format!("integration.identifier={identifier}"),
            format!("health.port={}", free_port()),
            format!("service.port={}", free_port()),
            "broker.url=amqp://guest:guest@127.0.0.1:1/%2f".to_string(),
            "incrementalSync.enabled=true".to_string(),
            "incrementalSync.interval=*/30 * * * *".to_string(),
            "incrementalSync.extraConfig.OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL=30"
                .to_string(),
        ]
        .into_iter()
        .flat_map(|set| ["--set".to_string(), set]),
    );
    let docs = render(&args);
    let jobs: Vec<&Value> = of_kind(&docs, "CronJob")
        .into_iter()
        .filter(|job| job["metadata"]["name"] == "release-name-adoport-incr-cron")
        .collect();
    assert_eq!(jobs.len(), 1, "one incremental CronJob");
    let job = jobs[0];
    assert_eq!(job["spec"]["schedule"], "*/30 * * * *");
    assert_eq!(arguments(job), ["all"]);
    let environment = environment(job, &docs);
    assert_eq!(
        environment.get("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED"),
        Some(&"true".to_string())
    );
    assert!(
        !environment.contains_key("ADOPORT__BROKER__URL"),
        "the incremental job runs on no broker"
    );
    check_config("all", &environment);

    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args(arguments(job))
        .env_clear()
        .envs(&environment)
        .env("RUST_LOG", "info,lapin=warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the incremental run finishes within 2 minutes")
        .expect("adoport runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{log}");
    assert!(log.contains("ONCE incremental sync finished"), "{log}");
    assert!(
        world.port.cursor(&identifier, "work-item", 1).is_some(),
        "the work-item resource's cursor is saved: {log}"
    );
    world.shutdown().await;
}

#[test]
fn with_a_broker_every_role_runs_with_an_environment_it_accepts() {
    let values = root().join("deploy/helm/adoport/ci/broker-url-values.yaml");
    let docs = render(&["-f".to_string(), values.display().to_string()]);
    let mut roles = Vec::new();
    for deployment in of_kind(&docs, "Deployment") {
        let args = arguments(deployment);
        assert_eq!(args.len(), 1, "one argument, the role: {args:?}");
        check_config(&args[0], &environment(deployment, &docs));
        roles.extend(args);
    }
    roles.sort();
    assert_eq!(roles, ["ingest", "publish", "transform"]);
}

#[test]
fn the_scaled_values_scale_every_role_and_are_scraped() {
    let values = root().join("deploy/helm/adoport/ci/scaled-values.yaml");
    let docs = render(&["-f".to_string(), values.display().to_string()]);
    let partitions: u64 = named(&docs, "ConfigMap", "release-name-adoport-config")["data"]
        ["ADOPORT__BROKER__PARTITIONS"]
        .as_str()
        .expect("partitions are set with a broker")
        .parse()
        .expect("a number");
    for role in ["ingest", "transform", "publish"] {
        let name = format!("release-name-adoport-{role}");
        let deployment = named(&docs, "Deployment", &name);
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{name}: its HPA sets the replicas"
        );
        let hpa = named(&docs, "HorizontalPodAutoscaler", &name);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], name.as_str());
        let pdb = named(&docs, "PodDisruptionBudget", &name);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (key, value) in pdb["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
        {
            assert_eq!(&labels[key], value, "{name}: the budget selects its pods");
        }
        if role == "publish" {
            let max = hpa["spec"]["maxReplicas"].as_u64().expect("maxReplicas");
            assert!(
                max <= partitions,
                "publish past the {partitions} partitions"
            );
        }
        let env = environment_names(deployment);
        assert!(env.contains(&"ADOPORT__BROKER__URL".to_string()), "{name}");
    }
    let monitor = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    let selector = monitor[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    let services: Vec<&Value> = of_kind(&docs, "Service")
        .into_iter()
        .filter(|s| {
            selector
                .iter()
                .all(|(k, v)| &s["metadata"]["labels"][k] == v)
        })
        .collect();
    assert_eq!(services.len(), 1, "the monitor selects the metrics Service");
    let endpoint = &monitor[0]["spec"]["endpoints"][0];
    assert!(
        services[0]["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == endpoint["port"]),
        "the monitor scrapes a port of the Service"
    );
    assert_eq!(endpoint["path"], "/metrics");
}

/// The names a container's `env` sets.
fn environment_names(deployment: &Value) -> Vec<String> {
    container(deployment)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|var| var["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn every_render_passes_pod_security_restricted() {
    let ci = root().join("deploy/helm/adoport/ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ci)
        .expect("deploy/helm/adoport/ci is readable")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    let credentials = [
        "--set",
        "port.clientId=id",
        "--set",
        "port.clientSecret=secret",
    ];
    let mut workloads = 0;
    for file in files {
        let mut args = vec!["-f".to_string(), file.display().to_string()];
        args.extend(credentials.iter().map(|a| a.to_string()));
        for workload in render(&args) {
            let Some(pod) = pod_security::pod_spec(&workload) else {
                continue;
            };
            workloads += 1;
            let problems = pod_security::restricted_violations(pod);
            assert!(
                problems.is_empty(),
                "{}: {} {}: {problems:?}",
                file.display(),
                workload["kind"],
                workload["metadata"]["name"]
            );
        }
    }
    assert!(workloads >= 6, "the ci values render {workloads} workloads");
}
