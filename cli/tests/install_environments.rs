//! The image started as the Python integration's installs start it: the built binary with
//! exactly the environment of Port's documented `docker run` CI job, and with the environment
//! Port's own `port-ocean` Helm chart renders (`fixtures/port-ocean-chart.env`), against the
//! simulators. Also: what a mapping's `env` holds.
//!
//! Besides the documented variables, each run sets only what a container has for itself and a
//! test process shares with other tests: the webhook port (a free one instead of 8000) and the
//! health port (off, or a free one).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use adoport::sim::default_mapping;
use adoport_shared::config::Settings;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::Value;

mod support;

/// Ocean's identifier when none is set: `my-{type}-integration`.
const DEFAULT_IDENTIFIER: &str = "my-azure-devops-integration";

struct World {
    ado: AdoSim,
    port: PortSim,
}

impl World {
    /// 2 projects × 3 repositories; Port has the integration `identifier` with `mapping`.
    async fn start(identifier: &str, mapping: Value) -> World {
        let ado = AdoSim::start(AdoSimConfig {
            projects: 2,
            repositories_per_project: 3,
            ..AdoSimConfig::default()
        })
        .await
        .expect("Azure DevOps simulator");
        let port = PortSim::start(PortSimConfig {
            integration_identifier: identifier.to_string(),
            integration_config: Some(mapping),
            ..PortSimConfig::default()
        })
        .await
        .expect("Port simulator");
        World { ado, port }
    }

    /// The values the documented examples leave to the user.
    fn fill(&self, template: &str) -> String {
        let (ado, port) = (AdoSimConfig::default(), PortSimConfig::default());
        template
            .replace("{port_base_url}", &self.port.base_url())
            .replace("{organization_url}", &self.ado.organization_url())
            .replace("{client_id}", &port.client_id)
            .replace("{client_secret}", &port.client_secret)
            .replace("{pat}", &ado.personal_access_token)
    }

    async fn shutdown(self) {
        self.ado.shutdown().await;
        self.port.shutdown().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `adoport` as the image's entrypoint runs it: no arguments (the image's CMD is `all`; the
/// image test checks it), nothing in the environment but `vars`.
fn adoport(vars: &[(String, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_adoport"));
    command
        .arg("all")
        .env_clear()
        .envs(vars.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn mapping_of_projects_and_repositories() -> Value {
    default_mapping(Some(&["project", "repository"])).expect("default mapping")
}

/// Port's documentation, Azure DevOps installation, "CI" → Azure Pipelines: the job's
/// `docker run -i --rm -e …` with these variables and no arguments, no
/// `OCEAN__INTEGRATION__IDENTIFIER`.
fn azure_pipelines_job(world: &World) -> Vec<(String, String)> {
    [
        ("OCEAN__PORT__CLIENT_ID", "{client_id}"),
        ("OCEAN__PORT__CLIENT_SECRET", "{client_secret}"),
        ("OCEAN__PORT__BASE_URL", "{port_base_url}"),
        ("OCEAN__EVENT_LISTENER", r#"{"type":"ONCE"}"#),
        ("OCEAN__INITIALIZE_PORT_RESOURCES", "true"),
        ("OCEAN__SEND_RAW_DATA_EXAMPLES", "true"),
        (
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            "{organization_url}",
        ),
        ("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN", "{pat}"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), world.fill(value)))
    .collect()
}

async fn finished(command: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the ONCE run finishes within 2 minutes")
        .expect("adoport runs")
}

#[tokio::test]
async fn the_documented_ci_job_syncs_once_and_exits_zero_under_the_default_identifier() {
    let world = World::start(DEFAULT_IDENTIFIER, mapping_of_projects_and_repositories()).await;
    let mut vars = azure_pipelines_job(&world);
    vars.push(("ADOPORT__INGEST__LISTEN".into(), "127.0.0.1:0".into()));
    let output = finished(&mut adoport(&vars)).await;
    let log = support::log_of_success(&output);
    // Only the integration under the default identifier has this mapping (projects and
    // repositories); another identifier would have been created with the full default one.
    assert_eq!(world.port.entity_count(), 2 + 2 * 3, "{log}");
    assert!(world.port.integration(DEFAULT_IDENTIFIER).is_some());
    assert!(
        log.contains("ONCE resync finished"),
        "the run reports its resync: {log}"
    );
    world.shutdown().await;
}

/// The chart's environment, the simulators filled in: `fixtures/port-ocean-chart.env`.
fn chart_environment(world: &World) -> Vec<(String, String)> {
    include_str!("fixtures/port-ocean-chart.env")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').expect("NAME=value");
            (name.to_string(), world.fill(value))
        })
        .collect()
}

/// GET `path` until it answers 200 (the process starts meanwhile); its last status otherwise.
async fn probe(client: &reqwest::Client, url: &str) -> Option<u16> {
    let mut last = None;
    for _ in 0..300 {
        if let Ok(response) = client.get(url).send().await {
            last = Some(response.status().as_u16());
            if last == Some(200) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// `adoport` running with the chart's environment plus `extra` (the chart's `extraEnv`), its
/// webhook port on a free port of this host.
struct ChartPod {
    child: tokio::process::Child,
    client: reqwest::Client,
    /// `http://127.0.0.1:{webhook port}`.
    base: String,
}

impl ChartPod {
    fn start(world: &World, extra: &[(&str, &str)]) -> ChartPod {
        let webhook_port = free_port();
        let mut vars = chart_environment(world);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars.push((
            "ADOPORT__INGEST__LISTEN".into(),
            format!("127.0.0.1:{webhook_port}"),
        ));
        vars.push(("ADOPORT__HEALTH__LISTEN".into(), "off".into()));
        ChartPod {
            child: adoport(&vars).spawn().expect("adoport runs"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            base: format!("http://127.0.0.1:{webhook_port}"),
        }
    }

    /// [`probe`] of `path` on the webhook port.
    async fn probe(&self, path: &str) -> Option<u16> {
        probe(&self.client, &format!("{}{path}", self.base)).await
    }

    /// Whether it still runs; then stops it and returns its log (stdout) and stderr.
    async fn stop(mut self) -> (bool, String, String) {
        let running = self.child.try_wait().expect("status").is_none();
        self.child.kill().await.expect("stop adoport");
        let output = self.child.wait_with_output().await.expect("output");
        (
            running,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[tokio::test]
async fn port_ocean_chart_environment_answers_the_charts_probes_and_names_what_it_ignores() {
    let world = World::start(
        "my-azure-devops-integration",
        mapping_of_projects_and_repositories(),
    )
    .await;
    let chart = chart_environment(&world);
    let pod = ChartPod::start(&world, &[]);
    let live = pod.probe("/health/live").await;
    let ready = pod.probe("/health/ready").await;
    // The resync at start (KAFKA reads as POLLING) lands.
    let synced = world
        .port
        .wait_for(|p| p.entity_count() == 2 + 2 * 3, Duration::from_secs(60))
        .await;
    let (still_running, log, stderr) = pod.stop().await;
    assert!(still_running, "adoport exited\n{stderr}\n{log}");
    assert_eq!(live, Some(200), "GET /health/live\n{stderr}\n{log}");
    assert_eq!(ready, Some(200), "GET /health/ready\n{stderr}\n{log}");
    assert!(synced, "the start-up resync landed in Port\n{log}");

    // Every OCEAN__ variable the chart renders is read, or named in the one warning.
    let unused = Settings::from_vars(chart.clone())
        .expect("the chart's environment is valid")
        .unused;
    assert!(
        unused.contains(&"OCEAN__LAKEHOUSE_ENABLED".to_string()),
        "{unused:?}"
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("settings of the Python integration that adoport does not use")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{log}");
    let named: Vec<&str> = warnings[0]
        .split([' ', ',', '"', '='])
        .filter(|word| word.starts_with("OCEAN__"))
        .collect();
    for name in &unused {
        assert!(named.contains(&name.as_str()), "{name} in {}", warnings[0]);
    }
    for (name, _) in chart.iter().filter(|(name, _)| name.starts_with("OCEAN__")) {
        let read = !unused.contains(name);
        assert_eq!(
            !named.contains(&name.as_str()),
            read,
            "{name}: read, or named in {}",
            warnings[0]
        );
    }
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("event listener KAFKA")),
        "KAFKA says at WARN that it polls instead:\n{log}"
    );
    world.shutdown().await;
}

/// The default mapping with project properties read from `env`: a plain variable, and two of
/// the process's secrets (which must stay out of reach).
fn mapping_reading_the_environment() -> Value {
    let mut mapping = mapping_of_projects_and_repositories();
    let properties = mapping["resources"]
        .as_array_mut()
        .expect("resources")
        .iter_mut()
        .find(|r| r["kind"] == "project")
        .expect("the project resource")["port"]["entity"]["mappings"]["properties"]
        .as_object_mut()
        .expect("properties");
    properties.insert("state".into(), r#"env.CLUSTER_NAME // "unset""#.into());
    properties.insert(
        "visibility".into(),
        r#"env.OCEAN__PORT__CLIENT_SECRET // "hidden""#.into(),
    );
    properties.insert(
        "link".into(),
        r#"$ENV.OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN // "hidden""#.into(),
    );
    mapping
}

/// The project entities' (state, visibility, link) after a ONCE run with `extra` variables.
async fn project_properties_with(extra: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let world = World::start(DEFAULT_IDENTIFIER, mapping_reading_the_environment()).await;
    let mut vars = azure_pipelines_job(&world);
    vars.push(("ADOPORT__INGEST__LISTEN".into(), "127.0.0.1:0".into()));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let output = finished(&mut adoport(&vars)).await;
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}\n{log}", output.status);
    let projects = world.port.entities("azureDevopsProject");
    assert_eq!(projects.len(), 2, "{log}");
    let found = projects
        .into_iter()
        .map(|p| {
            let id = p["identifier"].as_str().unwrap_or_default().to_string();
            (id, p["properties"].clone())
        })
        .collect();
    world.shutdown().await;
    found
}

#[tokio::test]
async fn mappings_read_plain_environment_variables_but_never_the_secrets() {
    let projects = project_properties_with(&[("CLUSTER_NAME", "prod-eu")]).await;
    for (id, properties) in &projects {
        assert_eq!(properties["state"], "prod-eu", "{id}: {properties}");
        assert_eq!(properties["visibility"], "hidden", "{id}: {properties}");
        assert_eq!(properties["link"], "hidden", "{id}: {properties}");
    }
    let projects = project_properties_with(&[
        ("CLUSTER_NAME", "prod-eu"),
        ("OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS", "false"),
    ])
    .await;
    for (id, properties) in &projects {
        assert_eq!(properties["state"], "unset", "{id}: {properties}");
    }
}

/// Through the chart's `extraEnv`: `OCEAN__PATH_PREFIX` mounts the webhook and Ocean's probes
/// under the prefix (the probes stay at the root too, where the chart looks), and
/// `OCEAN__LOG_LEVEL` sets the level.
#[tokio::test]
async fn path_prefix_and_log_level_from_the_charts_extra_env_are_honoured() {
    let world = World::start(
        "my-azure-devops-integration",
        mapping_of_projects_and_repositories(),
    )
    .await;
    let pod = ChartPod::start(
        &world,
        &[
            ("OCEAN__PATH_PREFIX", "/ado"),
            ("OCEAN__LOG_LEVEL", "WARNING"),
        ],
    );
    let prefixed_live = pod.probe("/ado/health/live").await;
    let root_ready = pod.probe("/health/ready").await;
    let post = |path: &str| {
        pod.client
            .post(format!("{}{path}", pod.base))
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    // No webhook secret in the chart's environment: the body is read, and refused as no
    // service-hook envelope (400) where the webhook is; elsewhere nothing answers (404).
    let prefixed = post("/ado/integration/webhook")
        .await
        .expect("answer")
        .status();
    let unprefixed = post("/integration/webhook").await.expect("answer").status();
    let (_, log, _) = pod.stop().await;
    assert_eq!(prefixed_live, Some(200), "{log}");
    assert_eq!(root_ready, Some(200), "{log}");
    assert_eq!(prefixed.as_u16(), 400, "{log}");
    assert_eq!(unprefixed.as_u16(), 404, "{log}");
    assert!(
        log.lines().any(|line| line.contains("WARN")),
        "warnings are logged: {log}"
    );
    assert!(
        !log.lines().any(|line| line.contains("INFO")),
        "OCEAN__LOG_LEVEL=WARNING leaves out INFO lines: {log}"
    );
    world.shutdown().await;
}

/// A pod started while Port is unavailable waits for Port; the chart's liveness probe must not
/// restart it meanwhile: live answers at once, ready once the integration runs.
#[tokio::test]
async fn the_charts_probes_answer_while_the_integration_waits_for_port() {
    let world = World::start(
        "my-azure-devops-integration",
        mapping_of_projects_and_repositories(),
    )
    .await;
    world
        .port
        .set_outage(Some(adoport_sim::PortOutage::Unavailable));
    let pod = ChartPod::start(&world, &[]);
    let live = pod.probe("/health/live").await;
    // Port refused the first attempt: the process is waiting for it.
    let waiting = world
        .port
        .wait_for(|p| p.outage_answers() >= 1, Duration::from_secs(30))
        .await;
    let ready_while_waiting = pod
        .client
        .get(format!("{}/health/ready", pod.base))
        .send()
        .await
        .map(|r| r.status().as_u16());
    world.port.set_outage(None);
    let ready_after = pod.probe("/health/ready").await;
    let synced = world
        .port
        .wait_for(|p| p.entity_count() == 2 + 2 * 3, Duration::from_secs(60))
        .await;
    let (_, log, _) = pod.stop().await;
    assert!(waiting, "adoport asked Port: {log}");
    assert_eq!(live, Some(200), "{log}");
    assert_eq!(ready_while_waiting.ok(), Some(503), "{log}");
    assert_eq!(ready_after, Some(200), "{log}");
    assert!(synced, "{log}");
    world.shutdown().await;
}
