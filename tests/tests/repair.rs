//! Every resync repairs Port (real RabbitMQ, simulated Azure DevOps and Port; issue 13, point
//! 2): whatever was deleted, edited, cascaded or taken over in Port between resyncs, the next
//! resync leaves each entity the mapping produces exactly as a clean sync landed it — and a
//! resync of an unchanged organization with an unchanged Port writes nothing, decided from
//! what Port holds now: a freshly started publish process, which remembers nothing, decides
//! the same.
//!
//! Ingest and transform run in the test's pipeline; publish (with the reconciliation
//! coordinator) runs as its own "process", on its own broker connection, so that a test can
//! replace it with a fresh one.

use std::collections::BTreeMap;

use adoport::pipeline::Pipeline;
use adoport_ingest::resync;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::messages::ResyncTrigger;
use adoport_shared::topology::DeadLetterQueue;
use adoport_sim::port::PortSim;
use adoport_tests::{BusKind, OURS, Running, publish_process, roles, start, within};
use serde_json::{Value, json};

const PROJECT: &str = "azureDevopsProject";
const REPOSITORY: &str = "azureDevopsRepository";
/// The route of the reads publish makes of its entities' current state.
const SEARCH: &str = "POST /v1/entities/search";
const BULK_UPSERT: &str = "POST /v1/blueprints/{bp}/entities/bulk";

/// Port's catalog as a user sees it: every entity's content and owner, by (blueprint,
/// identifier), without the times and authors of its last write.
fn catalog(port: &PortSim) -> BTreeMap<(String, String), Value> {
    let mut all = BTreeMap::new();
    for blueprint in [PROJECT, REPOSITORY] {
        for mut entity in port.entities(blueprint) {
            let identifier = entity["identifier"]
                .as_str()
                .expect("identifier")
                .to_string();
            if let Value::Object(fields) = &mut entity {
                for volatile in [
                    "createdAt",
                    "updatedAt",
                    "createdBy",
                    "updatedBy",
                    "$createdAt",
                    "$updatedAt",
                ] {
                    fields.remove(volatile);
                }
            }
            all.insert((blueprint.to_string(), identifier), entity);
        }
    }
    all
}

/// What one resync cost, from Port's request counts and publish's counters.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// Reads of entities' current state (`POST /v1/entities/search`).
    reads: u64,
    /// Bulk upsert requests.
    write_requests: u64,
    /// Entities publish wrote.
    upserted: u64,
    /// Upserts publish compared with Port's state, and those Port already held.
    compared: u64,
    unchanged: u64,
}

/// Ingest and transform in the test's pipeline, publish as a separate process.
struct Stack {
    running: Running,
    publish_settings: Settings,
    publish: Option<(Pipeline, Bus)>,
    /// Changes transform had published before the running publisher started: settled by the
    /// publishers before it.
    baseline: u64,
    /// Raw events of every crawl so far.
    events: u64,
}

impl Stack {
    /// Starts the stack on an organization of `projects` × `repositories`, with the blueprints
    /// defined in Port (so that a project's deletion can cascade to its repositories), and
    /// waits for the start-up resync. `publish_vars` go to the publish process's settings.
    async fn start(
        test: &str,
        projects: usize,
        repositories: usize,
        publish_vars: &[(&str, &str)],
    ) -> (Stack, Cost) {
        let running = start(
            test,
            BusKind::Rabbit,
            roles::INGEST_TRANSFORM,
            projects,
            repositories,
            &[],
        )
        .await;
        let port = &running.world.port;
        port.define_blueprint(json!({"identifier": PROJECT, "relations": {}}));
        port.define_blueprint(json!({"identifier": REPOSITORY,
            "relations": {"project": {"target": PROJECT, "required": false, "many": false}}}));
        let publish_settings = running.process_settings(publish_vars);
        let mut stack = Stack {
            running,
            publish_settings,
            publish: None,
            baseline: 0,
            events: 0,
        };
        stack.start_publisher().await;
        let cost = stack.settle(None).await;
        (stack, cost)
    }

    fn port(&self) -> &PortSim {
        &self.running.world.port
    }

    /// Starts a publish process that has seen nothing (no earlier writes, no memory).
    async fn start_publisher(&mut self) {
        assert!(self.publish.is_none());
        let (pipeline, bus) = publish_process(&self.publish_settings).await;
        self.baseline = self.running.pipeline.transform_stats.changes_published();
        self.publish = Some((pipeline, bus));
    }

    /// Stops the publish process (everything it held was settled).
    async fn stop_publisher(&mut self) {
        let (pipeline, bus) = self.publish.take().expect("a publisher runs");
        pipeline.stop().await.expect("publish stops");
        bus.close().await;
    }

    fn publisher(&self) -> &Pipeline {
        &self.publish.as_ref().expect("a publisher runs").0
    }

    /// Asks for a resync and waits until it is settled and reported completed.
    async fn resync(&mut self) -> Cost {
        let requested = resync::request(&self.running.bus, ResyncTrigger::Manual)
            .await
            .expect("request");
        self.settle(Some(requested)).await
    }

    /// Waits for the next crawl, for transform and publish to settle all it produced, and for
    /// the coordinator to report it completed; returns what it cost.
    async fn settle(&mut self, requested: Option<adoport_shared::messages::ResyncId>) -> Cost {
        let requests_before = self.port().requests();
        let stats_before = self.publisher().publish_stats.snapshot();
        let done = within(120, "the resync crawl", self.running.pipeline.next_resync())
            .await
            .expect("pipeline running");
        if let Some(id) = requested {
            assert_eq!(done.resync_id, id, "the crawl of the requested resync");
        }
        let report = done.report.expect("crawl succeeded");
        self.events += report.kinds.values().map(|k| k.events).sum::<u64>();
        let transform = self.running.pipeline.transform_stats.clone();
        within(
            120,
            "transform to settle the crawl",
            transform.clone().wait_for_settled(self.events),
        )
        .await;
        let published = transform.changes_published() - self.baseline;
        let publish = self.publisher().publish_stats.clone();
        within(
            120,
            "publish to settle every change",
            publish.wait_until(|s| s.acked + s.dead_lettered >= published),
        )
        .await;
        let mut summaries = self
            .publisher()
            .resync_summaries
            .clone()
            .expect("the coordinator runs with publish");
        let summary = within(
            120,
            "the resync's reconciliation",
            summaries.wait_for(|s| s.as_ref().is_some_and(|s| s.resync_id == done.resync_id)),
        )
        .await
        .expect("coordinator running")
        .clone()
        .expect("a summary");
        assert_eq!(summary.status, "completed", "{summary:?}");
        let after = publish.snapshot();
        assert_eq!(after.dead_lettered, stats_before.dead_lettered, "{after:?}");
        let requests_after = self.port().requests();
        let delta = |route: &str| {
            requests_after.get(route).copied().unwrap_or(0)
                - requests_before.get(route).copied().unwrap_or(0)
        };
        Cost {
            reads: delta(SEARCH),
            write_requests: delta(BULK_UPSERT),
            upserted: after.upserted - stats_before.upserted,
            compared: after.compared - stats_before.compared,
            unchanged: after.skipped_unchanged - stats_before.skipped_unchanged,
        }
    }

    /// Port holds exactly `expected`, and nothing was dead-lettered.
    async fn assert_port_is(&self, expected: &BTreeMap<(String, String), Value>, after: &str) {
        let now = catalog(self.port());
        let missing: Vec<_> = expected.keys().filter(|k| !now.contains_key(*k)).collect();
        let extra: Vec<_> = now.keys().filter(|k| !expected.contains_key(*k)).collect();
        let differing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| now.get(*k).is_some_and(|n| n != *v))
            .map(|(k, v)| (k, v, &now[k]))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && differing.is_empty(),
            "after {after}: missing {missing:?}, extra {extra:?}, differing (expected, now) {differing:?}"
        );
        assert!(
            self.running
                .bus
                .drain_dead_letters(DeadLetterQueue::Changes, 10)
                .await
                .expect("drain")
                .is_empty(),
            "after {after}: nothing dead-lettered"
        );
    }

    async fn stop(mut self) {
        if self.publish.is_some() {
            self.stop_publisher().await;
        }
        self.running.stop().await;
    }
}

/// The fewest reads of current state a resync of `entities` per blueprint can make.
fn fewest_reads(entities_per_blueprint: &[usize]) -> u64 {
    entities_per_blueprint
        .iter()
        .map(|n| n.div_ceil(adoport_publish::client::MAX_READ_IDENTIFIERS) as u64)
        .sum()
}

#[tokio::test]
async fn every_resync_repairs_what_was_deleted_edited_or_cascaded_in_port() {
    const PROJECTS: usize = 2;
    const REPOSITORIES: usize = 150;
    let entities = PROJECTS + PROJECTS * REPOSITORIES;
    // Check groups linger a second (the default is 250 ms): the crawl of this machine, shared
    // with other tests, may pause longer than that between pages, and this test counts reads.
    let (mut stack, first) = Stack::start(
        "repair",
        PROJECTS,
        REPOSITORIES,
        &[("ADOPORT__PUBLISH__BATCH_LINGER_MS", "1000")],
    )
    .await;
    // The clean sync: what every later resync must leave in Port.
    let clean = catalog(stack.port());
    assert_eq!(clean.len(), entities);
    assert!(
        clean.values().all(|e| e["$datasource"] == OURS),
        "every entity is ours"
    );
    assert_eq!(first.upserted, entities as u64, "{first:?}");

    // 1. Nothing changed anywhere: nothing is written, and Port is read in bulk.
    let unchanged = stack.resync().await;
    assert_eq!(
        (unchanged.upserted, unchanged.write_requests),
        (0, 0),
        "{unchanged:?}"
    );
    assert_eq!(
        (unchanged.compared, unchanged.unchanged),
        (entities as u64, entities as u64),
        "{unchanged:?}"
    );
    let fewest = fewest_reads(&[PROJECTS, PROJECTS * REPOSITORIES]);
    assert!(
        unchanged.reads <= fewest + 1,
        "{} reads for {entities} entities (fewest {fewest})",
        unchanged.reads
    );
    stack.assert_port_is(&clean, "an unchanged resync").await;

    // 2. One repository's property and title edited by hand (its datasource stays ours).
    let repository = stack.running.world.ado.repositories()[7]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(stack.port().edit_entity(
        REPOSITORY,
        &repository,
        json!({"title": "renamed by hand", "properties": {"url": "https://example.invalid"}})
    ));
    let edited = stack.resync().await;
    assert_eq!(
        (edited.upserted, edited.write_requests),
        (1, 1),
        "{edited:?}"
    );
    stack.assert_port_is(&clean, "a hand edit").await;

    // 3. A project deleted with its dependents: Port cascades to its repositories.
    let project = stack.running.world.ado.projects()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let cascade = stack
        .port()
        .delete_entity(PROJECT, &project, true)
        .expect("delete with dependents");
    assert_eq!(
        cascade.len(),
        1 + REPOSITORIES,
        "the project and its repositories"
    );
    let cascaded = stack.resync().await;
    assert_eq!(cascaded.upserted, cascade.len() as u64, "{cascaded:?}");
    stack.assert_port_is(&clean, "a cascading delete").await;

    // 4. Everything deleted by hand.
    assert_eq!(stack.port().delete_all_entities(), entities);
    let emptied = stack.resync().await;
    assert_eq!(emptied.upserted, entities as u64, "{emptied:?}");
    stack.assert_port_is(&clean, "deleting every entity").await;

    // 5. And once more with nothing changed: the repairs cost nothing afterwards.
    let again = stack.resync().await;
    assert_eq!((again.upserted, again.write_requests), (0, 0), "{again:?}");
    stack
        .assert_port_is(&clean, "a last unchanged resync")
        .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_fresh_publish_process_writes_nothing_for_an_unchanged_org_and_still_repairs() {
    let (mut stack, _) = Stack::start("repair-fresh", 3, 4, &[]).await;
    let clean = catalog(stack.port());
    assert_eq!(clean.len(), 3 + 3 * 4);

    // Publish restarts (or the partitions move to another replica): it remembers nothing.
    stack.stop_publisher().await;
    stack.start_publisher().await;
    let unchanged = stack.resync().await;
    assert_eq!(
        (unchanged.upserted, unchanged.write_requests),
        (0, 0),
        "{unchanged:?}"
    );
    assert_eq!(unchanged.unchanged, clean.len() as u64, "{unchanged:?}");
    assert!(unchanged.reads <= 2, "{unchanged:?}");
    stack
        .assert_port_is(&clean, "a resync by a fresh publisher")
        .await;

    // It repairs what it never wrote itself.
    let repository = stack.running.world.ado.repositories()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        !stack
            .port()
            .delete_entity(REPOSITORY, &repository, false)
            .expect("delete")
            .is_empty()
    );
    let repaired = stack.resync().await;
    assert_eq!(repaired.upserted, 1, "{repaired:?}");
    stack
        .assert_port_is(&clean, "a delete repaired by a fresh publisher")
        .await;
    stack.stop().await;
}

#[tokio::test]
async fn an_entity_made_by_hand_with_our_content_is_taken_over() {
    let (mut stack, _) = Stack::start("repair-owner", 2, 3, &[]).await;
    let clean = catalog(stack.port());
    // Someone recreates a repository by hand in Port's UI with exactly our content: its
    // datasource is theirs, so reconciliation would never list it, and only a write makes
    // it ours again.
    let key = clean
        .keys()
        .find(|(blueprint, _)| blueprint == REPOSITORY)
        .expect("a repository")
        .clone();
    let ours = &clean[&key];
    stack
        .port()
        .delete_entity(&key.0, &key.1, false)
        .expect("delete");
    stack
        .port()
        .put_entity(
            &key.0,
            json!({
                "identifier": key.1,
                "title": ours["title"],
                "properties": ours["properties"],
                "relations": ours["relations"],
            }),
            Some("Mozilla/5.0"),
        )
        .expect("made by hand");
    assert_eq!(
        stack.port().entity(&key.0, &key.1).expect("there")["$datasource"],
        "Mozilla/5.0"
    );
    let taken = stack.resync().await;
    assert_eq!((taken.upserted, taken.write_requests), (1, 1), "{taken:?}");
    stack
        .assert_port_is(&clean, "taking over a hand-made entity")
        .await;
    stack.stop().await;
}
