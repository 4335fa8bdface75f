//! An incremental ONCE run (`adoport all`, on RabbitMQ) killed part-way: the kinds it finished
//! have their cursors advanced, the kind it was reading and those after it keep theirs, and
//! the next incremental run reads them again since their old cursors; nothing is deleted.

use std::time::Duration;

use adoport::sim::SimulatedWorld;
use adoport_sim::ScriptedAnswer;
use serde_json::json;

mod support;

use support::{TestBroker, adoport, log_of_success, organization, start_world, until};

const WIQL: &str = "POST /{org}/{project}/_apis/wit/wiql";
const RELEASES: &str = "GET /{org}/{project}/_apis/release/releases";
const BUILDS: &str = "GET /{org}/{project}/_apis/build/builds";
/// Long enough that the run is still waiting on its release read when it is killed.
const RETRY_AFTER_SECS: u64 = 120;
const OLD_CURSOR: &str = "2026-01-01T00:00:00+00:00";

/// The default mapping's project, work-item and release resources, then a build resource:
/// the incremental kinds run in that order (work-item, release, build).
fn mapping() -> serde_json::Value {
    let mut mapping =
        adoport::sim::default_mapping(Some(&["project", "work-item", "release"])).expect("mapping");
    mapping["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!({
            "kind": "build",
            "selector": {"query": "true"},
            "port": {"entity": {"mappings": {
                "identifier": "(.id | tostring)",
                "title": ".buildNumber",
                "blueprint": "\"build\"",
            }}},
        }));
    mapping
}

/// The index of `kind`'s resource in [`mapping`].
fn index_of(kind: &str) -> u64 {
    mapping()["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .position(|r| r["kind"] == kind)
        .expect("mapped") as u64
}

fn requests(world: &SimulatedWorld, route: &str) -> u64 {
    world.ado.requests().get(route).copied().unwrap_or(0)
}

/// The parameter `name` of the last request on `route`.
fn last_asked(world: &SimulatedWorld, route: &str, name: &str) -> String {
    world.ado.queries(route).last().expect("asked")[name].clone()
}

#[tokio::test]
async fn an_incremental_run_killed_part_way_keeps_the_cursors_of_unfinished_kinds() {
    let world = start_world(organization(1, 1), mapping()).await;
    let broker = TestBroker::start(&world, "incremental-killed", &[]).await;
    let identifier = adoport_sim::port::PortSimConfig::default().integration_identifier;
    for kind in ["work-item", "release", "build"] {
        world
            .port
            .set_cursor(&identifier, kind, index_of(kind), OLD_CURSOR);
    }
    let ours = adoport_publish::exporter_user_agent(
        adoport_publish::COMPATIBLE_INTEGRATION_VERSION,
        &identifier,
    );
    world
        .port
        .put_entity(
            "azureDevopsRelease",
            json!({"identifier": "an-older-release", "title": "older", "properties": {}}),
            Some(&ours),
        )
        .expect("an entity of ours");
    let changed = world.ado.work_items()[0]["id"].as_u64().expect("id");
    assert!(world.ado.set_work_item_title(changed, "Changed since"));
    // The release read is held up (429, Retry-After) until the run is killed.
    world.ado.fail_next(
        RELEASES,
        vec![ScriptedAnswer::rate_limited(RETRY_AFTER_SECS)],
    );

    let incremental = || {
        let mut command = adoport(&["all"], &broker.environment, "info,lapin=warn");
        command
            .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
            .env("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "true")
            .stdout(std::process::Stdio::piped());
        command
    };
    let mut first = incremental().spawn().expect("adoport starts");
    let every = Duration::from_millis(20);
    until(
        60,
        every,
        "the work items to be read and the release read to start",
        || async {
            world
                .port
                .cursor(&identifier, "work-item", index_of("work-item"))
                .as_deref()
                != Some(OLD_CURSOR)
                && requests(&world, RELEASES) > 0
        },
    )
    .await;
    // Killed while reading releases.
    first.kill().await.expect("killed");
    let work_item_cursor = world
        .port
        .cursor(&identifier, "work-item", index_of("work-item"))
        .expect("work-item cursor");
    assert_ne!(work_item_cursor, OLD_CURSOR, "a finished kind advanced");
    for kind in ["release", "build"] {
        assert_eq!(
            world
                .port
                .cursor(&identifier, kind, index_of(kind))
                .as_deref(),
            Some(OLD_CURSOR),
            "{kind} did not finish: its cursor stays"
        );
    }
    assert_eq!(requests(&world, BUILDS), 0, "build was not reached");
    let written = world.port.entity_count();

    // The next run reads the unfinished kinds again since their old cursors.
    let wiql_before = world.ado.queries("WIQL").len();
    let output = tokio::time::timeout(Duration::from_secs(120), incremental().output())
        .await
        .expect("the next run finishes within 2 minutes")
        .expect("adoport runs");
    let log = log_of_success(&output);
    assert!(log.contains("ONCE incremental sync finished"), "{log}");
    assert_eq!(last_asked(&world, RELEASES, "minCreatedTime"), OLD_CURSOR);
    assert_eq!(last_asked(&world, BUILDS, "minTime"), OLD_CURSOR);
    let wiql = world.ado.queries("WIQL");
    assert!(wiql.len() > wiql_before);
    assert!(
        wiql.last().expect("wiql")["query"]
            .contains(&format!("[System.ChangedDate] >= '{work_item_cursor}'")),
        "work items since the cursor the killed run saved: {:?}",
        wiql.last()
    );
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).expect("a time");
    for kind in ["work-item", "release", "build"] {
        let cursor = world
            .port
            .cursor(&identifier, kind, index_of(kind))
            .expect("cursor");
        assert!(
            time(&cursor) > time(&work_item_cursor),
            "{kind} advanced past the killed run's start: {cursor}"
        );
    }
    // Nothing was deleted: what the killed run wrote and the older entity of ours remain.
    assert!(
        world
            .port
            .entity("azureDevopsRelease", "an-older-release")
            .is_some()
    );
    assert!(world.port.entity_count() >= written);
    assert!(requests(&world, WIQL) >= 2);
    broker.clean_up().await;
    world.shutdown().await;
}
