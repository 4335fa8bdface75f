//! Ingest SIGKILLed while several crawl units of a resync are in flight at once (real
//! RabbitMQ; ingest as an `adoport ingest` child process, transform and publish as "processes"
//! of this test on broker connections of their own; a simulated Azure DevOps that takes 100 ms
//! per answer, so that the units overlap; a simulated Port), DESIGN.md §3:
//!
//! - the kill lands once requests of at least three kinds are being answered at the same time
//!   (the simulator's requests in flight per route) and transform has mapped one of the
//!   resync's raw events: several units started, some of their raw events published, none
//!   known to be finished;
//! - once transform has mapped everything the killed crawl published, nothing has been deleted
//!   from Port (not even what Azure DevOps no longer has), every entity holds what it held
//!   before or what Azure DevOps holds now, and the resync is not reported complete;
//! - ingest started again (transform stopped meanwhile) gets the same resync request again and
//!   crawls it in full as a new attempt; the resync is not over while those events wait;
//! - transform back, Port converges to exactly what Azure DevOps holds: a hand-made entity this
//!   integration owns is deleted, one another writer owns is kept, those deletions (with the
//!   repository and the work item Azure DevOps no longer has) are the only ones Port ever saw,
//!   and the resync was completed by the new attempt, whole.
//!
//! A coordinator that took the killed, partial crawl for a complete one (e.g. closing an
//! interrupted attempt with what it had published when the next one starts) deletes the
//! entities of the units the killed crawl had not finished: Port's deletion log shows it even
//! when the next crawl writes them back. A restarted crawl that is not a new attempt fails the
//! attempt count. (Two attempts' events counted together completes no earlier here, as the
//! new crawl publishes the units the killed one had reached first; `cli/tests/restarted_crawl.rs`
//! catches that one.)

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use adoport_shared::bus::{ArchiveStart, Bus};
use adoport_shared::messages::{RawEvent, ResyncId, decode};
use adoport_shared::topology::WorkQueue;
use adoport_sim::AdoSim;
use adoport_sim::port::PortSim;
use adoport_tests::{
    BusKind, OURS, Start, WEBHOOKS_ONLY, amqp_url, request_resync, resyncs_reported, roles,
    roles_process_with_mapping, stop_process, within,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Every answer of the simulated Azure DevOps takes this long: a unit's reads overlap the
/// other units'.
const LATENCY: Duration = Duration::from_millis(100);
/// How often a broker figure without notification (a queue's depth) is read.
const POLL: Duration = Duration::from_millis(25);
const PROJECTS: usize = 12;
const REPOSITORIES: usize = 2;

const PROJECT: &str = "killedProject";
const REPOSITORY: &str = "killedRepository";
const WORK_ITEM: &str = "killedWorkItem";
const PIPELINE: &str = "killedPipeline";
const TEAM: &str = "killedTeam";
const BLUEPRINTS: [&str; 5] = [PROJECT, REPOSITORY, WORK_ITEM, PIPELINE, TEAM];

/// Five independent kinds (no relations), each its own crawl unit. Every entity the crawl no
/// longer produced is deleted, whatever the share: a resync completed on a partial crawl would
/// delete what its unfinished units had not read, and no threshold may hide that here.
fn mapping() -> Value {
    let resource = |kind: &str, selector: Value, identifier: &str, title: &str, blueprint: &str| {
        json!({
            "kind": kind,
            "selector": selector,
            "port": {"entity": {"mappings": {
                "identifier": identifier,
                "title": title,
                "blueprint": format!("\"{blueprint}\""),
                "properties": {},
            }}},
        })
    };
    let all = json!({"query": "true"});
    json!({
        "specPath": [],
        "createMissingRelatedEntities": true,
        "entityDeletionThreshold": 1,
        "resources": [
            // `defaultTeam` reads each project in full: the project unit has reads of its own.
            resource("project", json!({"query": "true", "defaultTeam": true}), ".id", ".name", PROJECT),
            resource("repository", all.clone(), ".id", ".name", REPOSITORY),
            resource("work-item", all.clone(), ".id | tostring", ".fields[\"System.Title\"]", WORK_ITEM),
            resource("pipeline", all.clone(), ".__projectId + \"/\" + (.id | tostring)", ".name", PIPELINE),
            resource("team", all, ".id", ".name", TEAM),
        ],
    })
}

/// The crawl unit (kind) a request of the simulated Azure DevOps is read for, by its route
/// template; `None` for reads several units share (the project list) and everything else.
fn unit_of(route: &str) -> Option<&'static str> {
    let path = route.split_once(' ').map_or(route, |(_, path)| path);
    if path.ends_with("/_apis/projects/{project}") {
        Some("project")
    } else if path.ends_with("/_apis/git/repositories") {
        Some("repository")
    } else if path.contains("/_apis/wit/") {
        Some("work-item")
    } else if path.ends_with("/_apis/pipelines") {
        Some("pipeline")
    } else if path.ends_with("/teams") {
        Some("team")
    } else {
        None
    }
}

/// The units with a request being answered right now.
fn units_in_flight(ado: &AdoSim) -> BTreeSet<&'static str> {
    ado.in_flight().keys().filter_map(|r| unit_of(r)).collect()
}

/// `(blueprint, identifier)` → title of every entity of the mapping's blueprints in Port.
type Catalog = BTreeMap<(String, String), Value>;

fn catalog(port: &PortSim) -> Catalog {
    let mut catalog = Catalog::new();
    for blueprint in BLUEPRINTS {
        for entity in port.entities(blueprint) {
            let identifier = entity["identifier"].as_str().expect("identifier");
            catalog.insert(
                (blueprint.to_string(), identifier.to_string()),
                entity["title"].clone(),
            );
        }
    }
    catalog
}

fn key(blueprint: &str, identifier: &str) -> (String, String) {
    (blueprint.to_string(), identifier.to_string())
}

/// `adoport ingest` as a child process of this test, killed when dropped.
fn ingest(environment: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_soak"))
        // This package's `soak` binary is `adoport` itself when asked (see its docs).
        .args(["adoport", "ingest"])
        .env_clear()
        .envs(environment.iter().cloned())
        .env("RUST_LOG", "warn,lapin=error")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("adoport ingest starts")
}

/// Raw events in the archive: in all, and per crawl attempt of `resync_id`.
async fn archived(bus: &Bus, resync_id: ResyncId) -> (u64, BTreeMap<String, u64>) {
    let mut reader = bus
        .read_archive(&ArchiveStart::First, Duration::from_secs(1))
        .await
        .expect("archive");
    let (mut all, mut attempts) = (0, BTreeMap::new());
    while let Some(message) = reader.next().await.expect("archive read") {
        let Ok(event) = decode::<RawEvent>(&message.body) else {
            continue;
        };
        all += 1;
        if event.origin.resync_id() == Some(resync_id) {
            let attempt = event.attempt.map(|a| a.to_string()).unwrap_or_default();
            *attempts.entry(attempt).or_insert(0) += 1;
        }
    }
    reader.close().await;
    (all, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_with_several_units_in_flight_deletes_nothing_and_converges_on_restart() {
    let clock = Instant::now();
    let running = Start::new("kill-ingest-units", BusKind::Rabbit, roles::NONE)
        .organization(PROJECTS, REPOSITORIES)
        .ado_latency(LATENCY)
        .mapping(mapping())
        .run()
        .await;
    let (ado, port) = (&running.world.ado, &running.world.port);
    let settings = running.process_settings(&[]);
    let transform_process = || async {
        // Each "process" its own shutdown: stopping transform leaves publish running.
        let shutdown = CancellationToken::new();
        roles_process_with_mapping(&settings, roles::TRANSFORM, mapping(), None, &shutdown).await
    };
    let transform = transform_process().await;
    let publish = {
        let shutdown = CancellationToken::new();
        roles_process_with_mapping(&settings, roles::PUBLISH, mapping(), None, &shutdown).await
    };
    let stats = transform.0.transform_stats.clone();
    let mut environment = running.world.environment(Some((
        &amqp_url(),
        &running.settings.pipeline.broker.prefix,
    )));
    environment.extend(
        [
            WEBHOOKS_ONLY,
            ("ADOPORT__HEALTH__LISTEN", "off"),
            // One item per raw event: many events per unit, so the killed crawl leaves some
            // units part-published, and a crawl's events are as many as its entities.
            ("ADOPORT__INGEST__ITEMS_PER_EVENT", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut first = ingest(&environment);

    // A full resync: Port holds every entity of every kind.
    let resync_id = request_resync(&running.bus).await;
    let summary = within(60, "the first resync", publish.0.resync_summary(resync_id))
        .await
        .expect("publish runs the coordinator");
    assert_eq!(
        (summary.status, summary.deleted),
        ("completed", 0),
        "{summary:?}"
    );
    let synced = catalog(port);
    for blueprint in BLUEPRINTS {
        assert!(
            synced.keys().any(|(b, _)| b == blueprint),
            "no {blueprint} entity after the first resync"
        );
    }
    let mapped_before = stats.events_settled();
    assert_eq!(
        mapped_before,
        synced.len() as u64,
        "one raw event per entity (one item each)"
    );
    println!(
        "first resync: {} entities, {:?}",
        synced.len(),
        clock.elapsed()
    );

    // Azure DevOps changes; Port gets a stale entity of ours and one of another writer's.
    let of = |blueprint: &str| -> Vec<String> {
        (synced.keys())
            .filter(|(b, _)| b == blueprint)
            .map(|(_, id)| id.clone())
            .collect()
    };
    let (repositories, work_items) = (of(REPOSITORY), of(WORK_ITEM));
    let (renamed, removed_repository) = (&repositories[0], &repositories[1]);
    ado.rename_repository(renamed, "renamed-before-the-kill");
    assert!(ado.remove_repository(removed_repository));
    let id = |text: &String| text.parse::<u64>().expect("work item id");
    let (retitled, removed_work_item) = (&work_items[0], &work_items[1]);
    assert!(ado.set_work_item_title(id(retitled), "retitled-before-the-kill"));
    assert!(ado.remove_work_item(id(removed_work_item)));
    let seeded = |identifier: &str| json!({"identifier": identifier, "title": identifier, "properties": {}, "relations": {}});
    (port.put_entity(REPOSITORY, seeded("stale-of-ours"), Some(OURS))).expect("seeded");
    (port.put_entity(REPOSITORY, seeded("kept-of-another"), Some("Mozilla/5.0"))).expect("seeded");
    let before = catalog(port);
    let mut expected = before.clone();
    let gone = [
        key(REPOSITORY, "stale-of-ours"),
        key(REPOSITORY, removed_repository),
        key(WORK_ITEM, removed_work_item),
    ];
    for k in &gone {
        expected.remove(k);
    }
    expected.insert(key(REPOSITORY, renamed), json!("renamed-before-the-kill"));
    expected.insert(key(WORK_ITEM, retitled), json!("retitled-before-the-kill"));

    // The next resync, killed once three units are under way and transform has mapped one of
    // its raw events, so that the killed crawl has published part of the units.
    let resync_id = request_resync(&running.bus).await;
    let seen = Mutex::new(BTreeSet::new());
    let several = ado
        .wait_for(
            |ado| {
                let units = units_in_flight(ado);
                // Transform has mapped one of this resync's raw events: the killed crawl has
                // published some (the archive read below must find its attempt).
                let under_way = units.len() >= 3 && stats.events_settled() > mapped_before;
                if under_way {
                    *seen.lock().expect("lock") = units;
                }
                under_way
            },
            Duration::from_secs(60),
        )
        .await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("ingest killed");
    let units = seen.into_inner().expect("lock");
    assert!(
        several,
        "never three units in flight once the repositories were read; in flight now: {:?}",
        ado.in_flight()
    );
    println!(
        "killed with units in flight: {units:?}, {:?}",
        clock.elapsed()
    );

    // Whatever the killed crawl published is mapped and handed to publish and the coordinator.
    let (published, attempts) = archived(&running.bus, resync_id).await;
    assert_eq!(attempts.len(), 1, "one attempt so far: {attempts:?}");
    println!("the killed attempt published {attempts:?} raw events");
    within(
        30,
        "transform to map every raw event the killed crawl published",
        stats.clone().wait_for_settled(published),
    )
    .await;
    assert_eq!(port.deletions(), vec![], "nothing deleted after the kill");
    let now = catalog(port);
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "every entity still there, none added"
    );
    for (k, title) in &now {
        assert!(
            *title == before[k] || *title == expected.get(k).cloned().unwrap_or_default(),
            "{k:?} holds {title}: neither what it held before ({}) nor Azure DevOps' now",
            before[k]
        );
    }
    assert_eq!(
        resyncs_reported(port, "completed"),
        1,
        "the killed resync is not over: {:?}",
        port.resync_states()
    );

    // Ingest again while transform is stopped: the same request, crawled in full as a new
    // attempt, waits on the raw queue. Transform back: Port converges, and the resync
    // completes only on the new attempt's own events (the killed one's count for nothing).
    stop_process(transform).await;
    let mut second = ingest(&environment);
    let crawl_events = (expected.len() - 1) as u64;
    within(
        60,
        "the new attempt's whole crawl on the raw queue",
        async {
            while running.ready(WorkQueue::Raw).await < crawl_events {
                tokio::time::sleep(POLL).await;
            }
        },
    )
    .await;
    assert_eq!(running.ready(WorkQueue::Raw).await, crawl_events);
    assert_eq!(
        resyncs_reported(port, "completed"),
        1,
        "not over while the new attempt's events wait: {:?}",
        port.resync_states()
    );
    let transform = transform_process().await;
    let summary = within(
        90,
        "the killed resync's completion",
        publish.0.resync_summary(resync_id),
    )
    .await
    .expect("publish runs the coordinator");
    let deleted: BTreeSet<(String, String)> = port.deletions().into_iter().collect();
    assert_eq!(
        deleted,
        gone.iter().cloned().collect(),
        "only what Azure DevOps no longer has (and the stale entity of ours) was ever deleted"
    );
    assert_eq!(
        catalog(port),
        expected,
        "Port holds exactly Azure DevOps' entities"
    );
    assert_eq!(
        (summary.status, summary.deleted),
        ("completed", 3),
        "{summary:?}"
    );
    // The attempt that completed it is the new one, whole: every entity of every resource.
    for resource in &summary.resources {
        let blueprint = resource.blueprint.trim_matches('"');
        let entities = expected.keys().filter(|(b, _)| b == blueprint).count() as u64;
        let entities = entities - u64::from(blueprint == REPOSITORY);
        assert_eq!(
            (resource.items_crawled, resource.entities_produced),
            (entities, entities),
            "{} of the completing attempt: {summary:?}",
            resource.kind
        );
    }
    let (_, attempts) = archived(&running.bus, resync_id).await;
    assert_eq!(
        attempts.len(),
        2,
        "the request was delivered again and crawled as a new attempt: {attempts:?}"
    );
    println!("converged after {:?}", clock.elapsed());

    second.start_kill().expect("SIGKILL");
    let _ = second.wait().await;
    stop_process(transform).await;
    stop_process(publish).await;
    running.stop().await;
}
