//! One leader among ingest replicas (real RabbitMQ on the test's own prefix, two `adoport
//! ingest` child processes, simulated Azure DevOps with service-hook subscriptions and Port,
//! a 4-second schedule):
//!
//! - started together, exactly one leads (its log, `/metrics` and `/readyz` say so); one set of
//!   subscriptions is created, one start-up resync runs, Port's resync request becomes one
//!   resync, and scheduled resyncs come one per interval, not two;
//! - the leader SIGKILLed: the other leads within seconds, re-creates a subscription deleted
//!   meanwhile, asks for no start-up resync and no Port resync again, and continues the
//!   schedule an interval after the dead leader's last tick;
//! - the leader's broker connection closed (as a network loss would): it steps down at once,
//!   and one replica leads again within seconds; the lock's queue deleted by hand: the leader's
//!   confirmation fails, it steps down and hands everything over, and one replica leads again.
//!
//! The children log JSON; the test reads what they say as it comes.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adoport::sim::SimulatedWorld;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::watch;

mod support;

use support::{
    TestBroker, adoport, close_connection_of, free_port, organization, projects_and_repositories,
    start_world, within,
};

/// Seconds between scheduled resyncs in these tests.
const SCHEDULE_SECS: u64 = 4;
/// Timestamps of two log lines of one machine: scheduling jitter allowed below an interval.
const JITTER: chrono::Duration = chrono::Duration::milliseconds(300);

/// One `adoport ingest` child: its JSON log lines as they come, and its health port.
struct Replica {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    written: watch::Receiver<usize>,
    health: u16,
}

impl Replica {
    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The lines whose message starts with `message`.
    fn said(&self, message: &str) -> Vec<Value> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .cloned()
            .collect()
    }

    fn count(&self, message: &str) -> usize {
        self.said(message).len()
    }

    /// Waits (at most `secs`) until `done` holds of what this replica logged.
    async fn until(&self, secs: u64, what: &str, done: impl Fn(&Replica) -> bool) {
        let mut written = self.written.clone();
        within(secs, what, async {
            while !done(self) {
                if written.changed().await.is_err() {
                    // The child ended: nothing more will come.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("http://127.0.0.1:{}{path}", self.health)).await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// `adoport_ingest_leader` on `/metrics` (`None` while the endpoint does not answer).
    async fn leader_gauge(&self) -> Option<u64> {
        let (status, text) = self.get("/metrics").await;
        (status == 200).then_some(())?;
        text.lines().find_map(|line| {
            line.strip_prefix("adoport_ingest_leader{role=\"ingest\"} ")?
                .trim()
                .parse()
                .ok()
        })
    }

    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }
}

/// The time a log line was written.
fn time_of(line: &Value) -> DateTime<Utc> {
    line["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a timestamp in {line}"))
}

struct Setup {
    world: SimulatedWorld,
    /// The children's environment, and the test's connection for clean-up.
    broker: TestBroker,
}

async fn setup(test: &str) -> Setup {
    let world = start_world(organization(2, 2), projects_and_repositories()).await;
    let extra = [
        // Subscriptions point here (nothing listens: the simulator only records them).
        ("OCEAN__BASE_URL", "http://127.0.0.1:9"),
        ("ADOPORT__INGEST__SCHEDULED_RESYNC_SECS", "4"),
        ("ADOPORT__INGEST__LEADER_RETRY_SECS", "1"),
        ("OCEAN__EVENT_LISTENER__INTERVAL", "1"),
    ];
    let broker = TestBroker::start(&world, test, &extra).await;
    Setup { world, broker }
}

impl Setup {
    /// Starts `adoport --log-json ingest` with its own health port.
    fn replica(&self) -> Replica {
        let health = free_port();
        let mut child = adoport(
            &["--log-json", "ingest"],
            &self.broker.environment,
            "info,lapin=error",
        )
        .env("ADOPORT__HEALTH__LISTEN", format!("127.0.0.1:{health}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("adoport starts");
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tell, written) = watch::channel(0);
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let mut lines = kept.lock().unwrap_or_else(|p| p.into_inner());
                lines.push(value);
                let n = lines.len();
                drop(lines);
                tell.send_replace(n);
            }
        });
        Replica {
            child,
            lines,
            written,
            health,
        }
    }

    /// The subscriptions in the simulator, by what makes one a duplicate of another
    /// (publisher, event type, project, URL without its query), with how many there are.
    fn subscriptions(&self) -> BTreeMap<(String, String, String, String), usize> {
        let mut keys = BTreeMap::new();
        for s in self.world.ado.subscriptions() {
            let text = |path: &[&str]| {
                path.iter()
                    .try_fold(&s, |v, k| v.get(*k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let url = text(&["consumerInputs", "url"]);
            let url = url.split('?').next().unwrap_or_default().to_string();
            *keys
                .entry((
                    text(&["publisherId"]),
                    text(&["eventType"]),
                    text(&["publisherInputs", "projectId"]),
                    url,
                ))
                .or_default() += 1;
        }
        keys
    }

    fn assert_no_duplicate_subscription(&self) {
        let duplicates: Vec<_> = self
            .subscriptions()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(
            duplicates.is_empty(),
            "duplicate subscriptions: {duplicates:?}"
        );
    }

    async fn clean_up(self, replicas: Vec<Replica>) {
        for mut replica in replicas {
            replica.kill().await;
        }
        self.broker.clean_up().await;
        self.world.shutdown().await;
    }
}

/// Waits until exactly one of `replicas` leads by their logs (more terms begun than ended);
/// returns its index. Fails the test if two lead at once.
async fn one_leads(replicas: &[&Replica]) -> usize {
    within(60, "one replica to lead", async {
        loop {
            let leading: Vec<usize> = (0..replicas.len())
                .filter(|i| {
                    let r = replicas[*i];
                    let led = r.said("this ingest replica leads now");
                    let stepped = r.said("this ingest replica no longer leads");
                    led.len() > stepped.len()
                })
                .collect();
            if leading.len() == 1 {
                return leading[0];
            }
            assert!(leading.len() < 2, "two replicas lead at once");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// `resync started` lines of a trigger.
fn crawls(replicas: &[&Replica], trigger: &str) -> usize {
    replicas
        .iter()
        .map(|r| {
            r.said("resync started")
                .iter()
                .filter(|l| l["trigger"] == trigger)
                .count()
        })
        .sum()
}

/// Every `scheduled resync requested` line of these replicas, in time order.
fn scheduled(replicas: &[&Replica]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<_> = replicas
        .iter()
        .flat_map(|r| r.said("scheduled resync requested"))
        .map(|l| time_of(&l))
        .collect();
    times.sort();
    times
}

fn assert_one_per_interval(times: &[DateTime<Utc>]) {
    let interval = chrono::Duration::seconds(SCHEDULE_SECS as i64);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= interval - JITTER,
            "scheduled resyncs closer than the interval (doubled?): {times:?}"
        );
    }
}

#[tokio::test]
async fn two_replicas_share_one_leader_and_a_killed_leader_is_replaced_within_seconds() {
    let setup = setup("leader").await;
    let mut replicas = vec![setup.replica(), setup.replica()];
    let leader = one_leads(&[&replicas[0], &replicas[1]]).await;
    let follower = 1 - leader;
    replicas[follower]
        .until(60, "the other replica to follow", |r| {
            r.count("another ingest replica leads") > 0
        })
        .await;
    // Its gauge and readiness say the same.
    within(30, "the gauges", async {
        while !(replicas[leader].leader_gauge().await == Some(1)
            && replicas[follower].leader_gauge().await == Some(0))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (status, body) = replicas[leader].get("/readyz").await;
    assert!(
        body.contains("ingest leader: leads since"),
        "{status} {body}"
    );
    let (_, body) = replicas[follower].get("/readyz").await;
    assert!(body.contains("ingest leader: follows"), "{body}");

    // One set of subscriptions, one start-up resync.
    replicas[leader]
        .until(60, "the subscriptions to be checked", |r| {
            r.count("service-hook subscriptions checked") > 0
        })
        .await;
    let created = replicas[leader].said("service-hook subscriptions checked")[0]["created"]
        .as_u64()
        .expect("created");
    assert!(created > 0);
    assert_eq!(setup.world.ado.subscriptions().len() as u64, created);
    setup.assert_no_duplicate_subscription();
    let both = [&replicas[0], &replicas[1]];
    within(60, "the start-up crawl", async {
        while crawls(&both, "Startup") == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Port's resync button: one resync, whichever replica crawls it.
    setup.world.port.request_resync();
    within(60, "Port's resync to be crawled", async {
        while crawls(&both, "PortRequest") == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Three scheduled ticks of the leader.
    replicas[leader]
        .until(60, "three scheduled resyncs", |r| {
            r.count("scheduled resync requested") >= 3
        })
        .await;
    assert_eq!(replicas[follower].count("scheduled resync requested"), 0);
    assert_eq!(
        replicas[follower].count("service-hook subscriptions checked"),
        0
    );
    assert_eq!(
        both.iter()
            .map(|r| r.count("start-up resync requested"))
            .sum::<usize>(),
        1
    );
    assert_eq!(crawls(&both, "Startup"), 1);
    assert_eq!(
        both.iter()
            .map(|r| r.count("Port asked for a resync"))
            .sum::<usize>(),
        1
    );
    assert_one_per_interval(&scheduled(&both));

    // A subscription is deleted in Azure DevOps; then the leader dies.
    let gone = setup.world.ado.subscriptions()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(setup.world.ado.delete_subscription(&gone));
    let before = setup.subscriptions().len();
    let last_tick = *scheduled(&both).last().expect("ticks");
    let killed = Instant::now();
    replicas[leader].kill().await;
    let survivor = &replicas[follower];
    survivor
        .until(30, "the other replica to lead", |r| {
            r.count("this ingest replica leads now") > 0
        })
        .await;
    let failover = killed.elapsed();
    within(30, "the survivor's gauge", async {
        while survivor.leader_gauge().await != Some(1) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    println!("failover after SIGKILL: {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "took over after {failover:?}"
    );

    // The new leader re-creates the deleted subscription, and no duplicate.
    let recreated = setup
        .world
        .ado
        .wait_for(
            |_| setup.subscriptions().len() == before + 1,
            Duration::from_secs(30),
        )
        .await;
    assert!(recreated, "the deleted subscription is back");
    setup.assert_no_duplicate_subscription();
    assert_eq!(setup.world.ado.subscriptions().len() as u64, created);

    // The schedule goes on an interval after the dead leader's last tick, not doubled, not
    // restarted; no start-up resync, no second Port resync.
    survivor
        .until(60, "two scheduled resyncs of the new leader", |r| {
            r.count("scheduled resync requested") >= 2
        })
        .await;
    let mine = scheduled(&[survivor]);
    let interval = chrono::Duration::seconds(SCHEDULE_SECS as i64);
    assert!(
        mine[0] - last_tick >= interval - JITTER,
        "the new leader's first tick {:?} came an interval after the last one {last_tick:?}",
        mine[0]
    );
    assert!(
        mine[0] - last_tick
            <= interval
                + chrono::Duration::from_std(failover).expect("d")
                + chrono::Duration::seconds(2),
        "the schedule was not skipped for long: {:?} after {last_tick:?}",
        mine[0]
    );
    let mut all = scheduled(&[survivor]);
    all.push(last_tick);
    all.sort();
    assert_one_per_interval(&all);
    assert_eq!(survivor.count("start-up resync requested"), 0);
    assert_eq!(survivor.count("Port asked for a resync"), 0);
    let record = survivor.said("this ingest replica leads now")[0].clone();
    assert_eq!(record["startup_resync"], false, "{record}");

    let (status, body) = survivor.get("/readyz").await;
    assert!(
        body.contains("ingest leader: leads since"),
        "{status} {body}"
    );
    setup.clean_up(replicas).await;
}

#[tokio::test]
async fn a_leader_that_loses_the_broker_steps_down_and_one_replica_leads_again() {
    let setup = setup("leader-lost").await;
    let replicas = vec![setup.replica(), setup.replica()];
    let both = [&replicas[0], &replicas[1]];
    let leader = one_leads(&both).await;
    replicas[leader]
        .until(60, "the subscriptions to be checked", |r| {
            r.count("service-hook subscriptions checked") > 0
        })
        .await;

    // Timed from the broker's close (rabbitmqctl itself takes seconds to start).
    close_connection_of(
        &setup.broker.prefix,
        replicas[leader].pid(),
        "test: the leader loses its connection",
    );
    let cut = Instant::now();
    replicas[leader]
        .until(30, "the leader to step down", |r| {
            r.count("this ingest replica no longer leads") > 0
        })
        .await;
    let stepped_down = cut.elapsed();
    let line = &replicas[leader].said("this ingest replica no longer leads")[0];
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("connection")),
        "{line}"
    );
    // One replica leads again (either: the old one competes again once reconnected).
    let again = within(30, "one replica to lead again", async {
        loop {
            let gauges = (
                replicas[0].leader_gauge().await,
                replicas[1].leader_gauge().await,
            );
            if matches!(gauges, (Some(1), Some(0)) | (Some(0), Some(1))) {
                return cut.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    println!(
        "connection closed: stepped down after {stepped_down:?}, one leads again after {again:?}"
    );
    assert!(again < Duration::from_secs(10), "led again after {again:?}");
    let leader = one_leads(&both).await;

    // The lock's queue deleted by hand: the leader's confirmation fails, it steps down and
    // gives everything back (its presence too), and one replica leads again.
    let stepped = replicas[leader].count("this ingest replica no longer leads");
    let deleted = std::process::Command::new("rabbitmqctl")
        .args([
            "delete_queue",
            &format!("{}adoport.ingest.leader", setup.broker.prefix),
        ])
        .status()
        .expect("rabbitmqctl runs");
    assert!(deleted.success());
    let gone = Instant::now();
    replicas[leader]
        .until(30, "the leader to step down", |r| {
            r.count("this ingest replica no longer leads") > stepped
        })
        .await;
    let line = replicas[leader]
        .said("this ingest replica no longer leads")
        .pop()
        .expect("line");
    assert!(
        line["reason"].as_str().is_some_and(|r| r.contains("gone")),
        "{line}"
    );
    within(
        30,
        "one replica to lead after the lock was deleted",
        async {
            loop {
                let gauges = (
                    replicas[0].leader_gauge().await,
                    replicas[1].leader_gauge().await,
                );
                if matches!(gauges, (Some(1), Some(0)) | (Some(0), Some(1))) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    println!("lock deleted: one leads again after {:?}", gone.elapsed());
    setup.assert_no_duplicate_subscription();
    // Start-up resync: still one.
    assert_eq!(
        both.iter()
            .map(|r| r.count("start-up resync requested"))
            .sum::<usize>(),
        1
    );
    setup.clean_up(replicas).await;
}
