//! A broker that takes the TCP connection but never answers (overloaded, wedged, a half-open
//! proxy) does not hang a role: `adoport all` starts, names the broker in its log within
//! seconds, serves `/healthz` and says not ready on `/readyz`, answers webhooks with 503 at
//! once; and once the broker answers, everything becomes ready and a webhook lands in Port.
//!
//! The role runs in process (`adoport::roles::run`, what `adoport all` runs), against the
//! simulators and the shared broker behind a fault proxy: the broker itself is never touched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adoport::roles::{Role, run};
use adoport::sim::SimulatedWorld;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_tests::{
    Fault, FaultProxy, amqp_url, free_port, logs, port_reaches, repo_renamed_event,
    repository_titled, signed_post, test_mapping, unique_prefix, within,
};
use tokio_util::sync::CancellationToken;

/// `GET` that fails the test when nothing answers within `limit`.
async fn get(http: &reqwest::Client, url: &str, limit: Duration) -> (u16, String) {
    let answer = tokio::time::timeout(limit, http.get(url).send())
        .await
        .unwrap_or_else(|_| panic!("{url} did not answer within {limit:?}"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

/// Simulators, a black-holed proxy in front of the shared broker, and the settings of a role
/// that uses them, with its health and webhook ports.
struct Setup {
    world: SimulatedWorld,
    proxy: FaultProxy,
    prefix: String,
    settings: Settings,
    health_port: u16,
    webhook_port: u16,
}

async fn setup(test: &str, listener: &str) -> Setup {
    let world = SimulatedWorld::start(2, 3, test_mapping())
        .await
        .expect("simulators");
    let shared: SocketAddr = "127.0.0.1:5672".parse().expect("address");
    let proxy = FaultProxy::start(shared, Fault::BlackHole)
        .await
        .expect("proxy");
    let prefix = unique_prefix(test);
    let broker_url = proxy.amqp_url(&amqp_url());
    let (health_port, webhook_port) = (free_port(), free_port());
    let mut vars = world.environment(Some((&broker_url, &prefix)));
    for (name, value) in [
        (
            "ADOPORT__HEALTH__LISTEN",
            format!("127.0.0.1:{health_port}"),
        ),
        (
            "ADOPORT__INGEST__LISTEN",
            format!("127.0.0.1:{webhook_port}"),
        ),
        ("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS", "2".into()),
        ("OCEAN__EVENT_LISTENER__TYPE", listener.into()),
    ] {
        vars.push((name.to_string(), value));
    }
    let settings = Settings::from_vars(vars).expect("settings");
    Setup {
        world,
        proxy,
        prefix,
        settings,
        health_port,
        webhook_port,
    }
}

impl Setup {
    /// The broker's URL as the log names it.
    fn endpoint(&self) -> String {
        format!("amqp://{}/%2f", self.proxy.address())
    }

    /// Removes the test's queues from the shared broker and stops the simulators.
    async fn clean_up(self) {
        let environment = self.world.environment(Some((&amqp_url(), &self.prefix)));
        let settings = Settings::from_vars(environment).expect("settings");
        let bus = Bus::for_settings(&settings, CancellationToken::new())
            .await
            .expect("broker");
        bus.delete_topology().await.expect("cleanup");
        self.world.shutdown().await;
    }
}

#[tokio::test]
async fn a_broker_that_never_answers_is_named_and_answered_with_503_until_it_does() {
    let logs = logs();
    let setup = setup("unresponsive", "WEBHOOKS_ONLY").await;
    let (world, proxy, settings) = (&setup.world, &setup.proxy, &setup.settings);
    let (health_port, webhook_port) = (setup.health_port, setup.webhook_port);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let role = {
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        tokio::spawn(async move { run(Role::All, &settings, shutdown).await })
    };
    let http = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{health_port}");

    // The health port answers from the first second, though the broker never answers.
    let status = within(2, "the health port", async {
        loop {
            if let Ok(answer) = http.get(format!("{health}/healthz")).send().await {
                return answer.status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The log names the broker (without credentials), what timed out and what to check.
    let endpoint = setup.endpoint();
    let line = logs
        .wait_for(Duration::from_secs(5), |line| {
            line.contains("cannot connect to the broker") && line.contains(&endpoint)
        })
        .await
        .expect("a log line naming the broker within 5 s");
    assert!(
        line.contains("did not finish the AMQP handshake within 2 s")
            && line.contains("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS"),
        "{line}"
    );
    assert!(
        logs.find(|l| l.contains("guest:guest")).is_none(),
        "credentials logged"
    );
    let (status, body) = get(&http, &format!("{health}/readyz"), Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("broker") && body.contains(&endpoint),
        "{body}"
    );

    // The webhook port answers too (once the mapping is read from Port), with 503 at once.
    let webhook = format!(
        "http://127.0.0.1:{webhook_port}{}",
        adoport_ingest::webhook::WEBHOOK_PATH
    );
    let repository = world.ado.repositories().remove(0);
    let id = repository["id"].as_str().expect("id").to_string();
    world.ado.rename_repository(&id, "after-the-black-hole");
    let post = || {
        signed_post(&http, &webhook)
            .json(&repo_renamed_event(&repository))
            .send()
    };
    within(10, "the webhook port", async {
        while post().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let repository_reads = || {
        world
            .ado
            .requests()
            .iter()
            .filter(|(route, _)| route.contains("repositories"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let reads_before = repository_reads();
    let asked = Instant::now();
    let answer = within(5, "the webhook's answer", post())
        .await
        .expect("ingest answers");
    assert_eq!(answer.status().as_u16(), 503);
    // Answered before reading Azure DevOps: the broker could not have taken the result.
    assert_eq!(repository_reads(), reads_before);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "503 in {:?}",
        asked.elapsed()
    );
    let (status, _) = get(&http, &format!("{health}/healthz"), Duration::from_secs(2)).await;
    assert_eq!(status, 200, "alive all along");

    // The broker answers again: ready, and a webhook goes all the way to Port.
    proxy.set(Fault::Pass);
    within(60, "readiness", async {
        while get(&http, &format!("{health}/readyz"), Duration::from_secs(5))
            .await
            .0
            != 200
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let answer = post().await.expect("ingest answers");
    assert_eq!(answer.status().as_u16(), 200);
    port_reaches(&world.port, 60, "the webhook's change", |port| {
        repository_titled(port, &id, "after-the-black-hole")
    })
    .await;

    shutdown.cancel();
    let exit = within(60, "the role to stop", role)
        .await
        .expect("task")
        .expect("the role stops cleanly");
    assert_eq!(exit, std::process::ExitCode::SUCCESS);
    setup.clean_up().await;
}

#[tokio::test]
async fn a_role_waiting_for_the_broker_stops_cleanly_on_shutdown() {
    let logs = logs();
    // POLLING: the start-up resync request waits for the broker too.
    let setup = setup("unresponsive-stop", "POLLING").await;
    let shutdown = CancellationToken::new();
    let role = {
        let (settings, shutdown) = (setup.settings.clone(), shutdown.clone());
        tokio::spawn(async move { run(Role::All, &settings, shutdown).await })
    };
    let endpoint = setup.endpoint();
    logs.wait_for(Duration::from_secs(10), |line| {
        line.contains("cannot connect to the broker") && line.contains(&endpoint)
    })
    .await
    .expect("the role waits for the broker");
    let readyz = format!("http://127.0.0.1:{}/readyz", setup.webhook_port);
    within(10, "the webhook receiver", async {
        while reqwest::get(&readyz).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let asked = Instant::now();
    shutdown.cancel();
    let exit = within(10, "the role to stop", role)
        .await
        .expect("task")
        .expect("a clean stop, not an error");
    assert_eq!(exit, std::process::ExitCode::SUCCESS);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        asked.elapsed()
    );
    setup.clean_up().await;
}
