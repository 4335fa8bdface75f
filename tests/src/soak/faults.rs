//! The faults the soak injects, each a loop or a one-off on the [`Schedule`]: SIGKILLs of
//! random replicas (sometimes both replicas of a role at once) and their restarts; the broker
//! restart (the private node stopped gracefully and started again); the Port outage; the
//! mapping change; a user's hand edits and deletes in Port (and once, emptying it); resync
//! requests (`POST /resync` with the webhook credentials, and Port's resync button, which
//! ingest polls for).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use adoport_sim::PortOutage;
use adoport_sim::port::PortSim;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::compare::Key;
use super::fleet::{Fleet, Role};
use super::rng::Rng;
use super::schedule::Schedule;
use crate::RabbitNode;

/// The datasource of "another writer" (an entity made or taken over by someone else).
pub const FOREIGN_DATASOURCE: &str = "port-ocean/another-integration/1.0.0/other/exporter";

/// Sleeps `wait` unless `stop` comes first; false when it did.
pub async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// A pause of 0.5–1.5 × `mean`.
pub fn around(rng: &mut Rng, mean: Duration) -> Duration {
    rng.between(mean / 2, mean + mean / 2)
}

/// Kills a random replica (one time in five, both replicas of its role) every so often and
/// starts it again after a short while, until `stop`. The roles take turns in a random order
/// each round, so every role is killed within any three kills, however short the run.
pub async fn kill_loop(fleet: &Fleet, schedule: &Schedule, seed: u64, stop: CancellationToken) {
    let mut rng = Rng::stream(seed, "kills");
    let per_role = fleet.replica_count().await / Role::ALL.len();
    let mut round: Vec<usize> = Vec::new();
    while pause(&stop, around(&mut rng, schedule.kill_every)).await {
        if round.is_empty() {
            round = (0..Role::ALL.len()).collect();
            // Fisher-Yates.
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i + 1));
            }
        }
        let role = round.pop().unwrap_or(0);
        // Slots are role by role, `per_role` replicas each.
        let replica = rng.below(per_role);
        let mut down = vec![role * per_role + replica];
        if per_role > 1 && rng.chance(0.2) {
            down.push(role * per_role + (replica + 1) % per_role);
        }
        for &slot in &down {
            fleet.kill(slot).await;
        }
        let stay = rng.between(Duration::from_millis(200), schedule.max_down);
        tokio::time::sleep(stay).await;
        for &slot in &down {
            if let Err(e) = fleet.start(slot).await {
                eprintln!("soak: cannot start a replica again: {e}");
            }
        }
    }
}

/// What the one-off faults did.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    pub broker_restarts: u64,
    pub port_outage: Duration,
    pub port_outage_answers: u64,
    pub mapping_changed_at: Option<Duration>,
    pub port_emptied: u64,
}

/// Runs the one-off faults at their moments of the chaos phase (which started at `start`);
/// each runs to its end even if the phase ends first, so that the calm that follows has the
/// broker up, Port answering and the new mapping in Port. `empty_port` deletes every entity
/// as a user would (and forgets what was planted). Returns the node (it lives on).
pub async fn timeline(
    mut node: RabbitNode,
    port: &PortSim,
    schedule: &Schedule,
    start: Instant,
    new_mapping: Value,
    empty_port: impl Fn() -> usize,
) -> (RabbitNode, Timeline) {
    let mut done = Timeline::default();
    let until = |offset: Duration| tokio::time::sleep_until((start + offset).into());

    until(schedule.broker_restart_at).await;
    progress(start, "broker: stopping the node gracefully");
    node.restart(schedule.broker_down).await;
    done.broker_restarts += 1;
    progress(start, "broker: started again");

    until(schedule.port_outage_at).await;
    let began = Instant::now();
    let before = port.outage_answers();
    progress(start, "Port: outage begins (500/503)");
    port.set_outage(Some(PortOutage::Unavailable));
    tokio::time::sleep(schedule.port_outage / 2).await;
    progress(start, "Port: outage continues (429 with Retry-After)");
    port.set_outage(Some(PortOutage::RateLimited {
        retry_after_secs: schedule.port_retry_after_secs,
    }));
    tokio::time::sleep(schedule.port_outage - schedule.port_outage / 2).await;
    port.set_outage(None);
    done.port_outage = began.elapsed();
    done.port_outage_answers = port.outage_answers() - before;
    progress(start, "Port: outage ends");

    until(schedule.mapping_change_at).await;
    port.set_integration_config(new_mapping);
    done.mapping_changed_at = Some(start.elapsed());
    progress(start, "mapping: version 2 saved in Port");

    until(schedule.port_emptied_at).await;
    let count = empty_port();
    done.port_emptied += 1;
    progress(start, &format!("Port: a user deleted all {count} entities"));
    (node, done)
}

/// One progress line on stderr, with the time into the chaos phase.
pub fn progress(start: Instant, what: &str) {
    eprintln!("soak [{:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// Hand edits and deletes in Port, counted per kind.
#[derive(Debug, Default)]
pub struct HandEdits {
    pub titles: AtomicU64,
    pub properties: AtomicU64,
    pub deletes: AtomicU64,
    pub taken_over: AtomicU64,
    pub stale_planted: AtomicU64,
    pub foreign_planted: AtomicU64,
}

impl HandEdits {
    pub fn total(&self) -> u64 {
        [
            &self.titles,
            &self.properties,
            &self.deletes,
            &self.taken_over,
            &self.stale_planted,
            &self.foreign_planted,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One hand edit of a random entity, as a user does it in Port's UI. Only fields the mapping
/// writes are edited (see `mapping.rs` on merge writes). `foreign` collects the entities
/// planted under another writer's datasource that the mapping never produces: reconciliation
/// must leave them alone.
pub fn hand_edit(
    rng: &mut Rng,
    port: &PortSim,
    n: u64,
    edits: &HandEdits,
    foreign: &mut BTreeSet<Key>,
) {
    let entities = port.all_entities();
    let Some(entity) = rng.pick(&entities) else {
        return;
    };
    let text = |field: &str| entity[field].as_str().unwrap_or_default().to_string();
    let (blueprint, identifier) = (text("blueprint"), text("identifier"));
    if foreign.contains(&(blueprint.clone(), identifier.clone())) {
        return;
    }
    match rng.below(100) {
        0..=29 => {
            if port.edit_entity(
                &blueprint,
                &identifier,
                json!({"title": format!("edited by hand {n}")}),
            ) {
                count(&edits.titles);
            }
        }
        30..=54 => {
            let names: Vec<String> = entity["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            if let Some(name) = rng.pick(&names) {
                let changes = json!({"properties": {name.clone(): format!("hand {n}")}});
                if port.edit_entity(&blueprint, &identifier, changes) {
                    count(&edits.properties);
                }
            }
        }
        55..=74 => {
            if port
                .delete_entity(&blueprint, &identifier, false)
                .is_ok_and(|gone| !gone.is_empty())
            {
                count(&edits.deletes);
            }
        }
        75..=84 => {
            // Another writer takes the entity over with content of its own.
            let mut taken = entity.clone();
            taken["title"] = json!(format!("taken over {n}"));
            if port
                .put_entity(&blueprint, taken, Some(FOREIGN_DATASOURCE))
                .is_ok()
            {
                count(&edits.taken_over);
            }
        }
        85..=94 => {
            // A stale entity of ours (as if its object were deleted while no resync ran): the
            // next resync's reconciliation must delete it.
            let mut stale = entity.clone();
            stale["identifier"] = json!(format!("stale-{n}"));
            let ours = entity["$datasource"].as_str().map(str::to_string);
            if ours.as_deref().is_some_and(|d| d != FOREIGN_DATASOURCE)
                && port.put_entity(&blueprint, stale, ours.as_deref()).is_ok()
            {
                count(&edits.stale_planted);
            }
        }
        _ => {
            let mut other = entity.clone();
            let identifier = format!("foreign-{n}");
            other["identifier"] = json!(identifier);
            if port
                .put_entity(&blueprint, other, Some(FOREIGN_DATASOURCE))
                .is_ok()
            {
                count(&edits.foreign_planted);
                foreign.insert((blueprint, identifier));
            }
        }
    }
}

/// Resync requests: `POST /resync` to a random ingest replica, and Port's resync button.
#[derive(Debug, Default)]
pub struct ResyncRequests {
    /// `POST /resync` answered 202.
    pub accepted: AtomicU64,
    /// `POST /resync` not answered 202 (the broker away, the replica down).
    pub refused: AtomicU64,
    /// Port's resync button pressed.
    pub port_button: AtomicU64,
}

/// Asks for a resync on `port` (an ingest replica's webhook port); the resync id on 202.
pub async fn post_resync(http: &reqwest::Client, port: u16, secret: &str) -> Option<String> {
    let answer = http
        .post(format!(
            "http://127.0.0.1:{port}{}",
            adoport_ingest::webhook::RESYNC_PATH
        ))
        .header("Authorization", crate::basic_auth(secret))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if answer.status().as_u16() != 202 {
        return None;
    }
    let body: Value = answer.json().await.ok()?;
    body["resyncId"].as_str().map(str::to_string)
}
