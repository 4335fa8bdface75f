//! Resources of one kind with different selectors, through the whole pipeline (real RabbitMQ):
//! each resource is crawled with its own selector and its items are mapped by it alone, as the
//! Python integration runs each resource on its own. Resources whose selectors are identical
//! (but for `query`) share one crawl; a push's file changes reach only the resources whose
//! paths take them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_shared::topology::WorkQueue;
use adoport_sim::ado::{AdoSim, FileChange, SimCommit};
use adoport_tests::soak::rng::Rng;
use adoport_tests::{BusKind, Start, ado_requests_on, resyncs_reported, roles, within};
use serde_json::{Value, json};

/// Azure DevOps' WIQL route: one request per project and work-item crawl unit.
const WIQL: &str = "POST /{org}/{project}/_apis/wit/wiql";

/// A mapping resource of `kind` writing `blueprint` entities, titled by their identifier.
fn resource(kind: &str, selector: Value, identifier: &str, blueprint: &str) -> Value {
    titled_resource(kind, selector, identifier, identifier, blueprint)
}

/// A mapping resource of `kind` writing `blueprint` entities with `identifier` and `title`
/// (jq), the item's file content as property `raw`.
fn titled_resource(
    kind: &str,
    selector: Value,
    identifier: &str,
    title: &str,
    blueprint: &str,
) -> Value {
    json!({
        "kind": kind,
        "selector": selector,
        "port": {"entity": {"mappings": {
            "identifier": identifier,
            "title": title,
            "blueprint": format!("\"{blueprint}\""),
            "properties": {"raw": ".file.content.raw // null"},
        }}},
    })
}

/// Two work-item resources with different wiql (and a third sharing the first's), two file
/// resources with different paths and blueprints.
fn mapping() -> Value {
    let work_item = ".id | tostring";
    let file = ".repo.name + \"/\" + .file.path";
    json!({
        "specPath": [],
        "resources": [
            resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Active'"}), work_item, "activeWorkItem"),
            resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Closed'"}), work_item, "closedWorkItem"),
            resource("file", json!({"query": "true", "files": {"path": "port.yml"}}), file, "service"),
            resource("work-item", json!({"query": ".fields[\"System.WorkItemType\"] == \"Bug\"", "wiql": "[System.State] = 'Active'"}), work_item, "activeBug"),
            resource("file", json!({"query": "true", "files": {"path": "service.json"}}), file, "npmPackage"),
        ],
    })
}

fn identifiers(port: &adoport_sim::PortSim, blueprint: &str) -> BTreeSet<String> {
    (port.entities(blueprint).iter())
        .filter_map(|e| e["identifier"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn each_resource_gets_exactly_the_entities_of_its_own_selector() {
    let mut running = Start::new("per-resource", BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(mapping())
        .run()
        .await;
    let report = running.resync_settled_without_failures().await;
    assert_eq!(
        report.kinds.keys().collect::<Vec<_>>(),
        ["file#2", "file#4", "work-item#0,3", "work-item#1"],
        "one crawl per distinct selector"
    );
    let port = &running.world.port;

    let work_items = running.world.ado.work_items();
    let ids = |keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        (work_items.iter())
            .filter(|w| keep(w))
            .filter_map(|w| w["id"].as_u64().map(|id| id.to_string()))
            .collect()
    };
    let state = |w: &Value, s: &str| w["fields"]["System.State"] == s;
    let active = ids(&|w| state(w, "Active"));
    let closed = ids(&|w| state(w, "Closed"));
    let active_bugs = ids(&|w| state(w, "Active") && w["fields"]["System.WorkItemType"] == "Bug");
    assert!(!active.is_empty() && !closed.is_empty() && !active_bugs.is_empty());
    assert_eq!(identifiers(port, "activeWorkItem"), active);
    assert_eq!(identifiers(port, "closedWorkItem"), closed);
    assert_eq!(identifiers(port, "activeBug"), active_bugs);

    let files = |path: &str| -> BTreeSet<String> {
        ["repo-0-0", "repo-0-1"]
            .iter()
            .map(|repo| format!("{repo}/{path}"))
            .collect()
    };
    assert_eq!(identifiers(port, "service"), files("port.yml"));
    assert_eq!(identifiers(port, "npmPackage"), files("service.json"));
    // Nothing else: no entity of one resource's items under another resource's blueprint.
    assert_eq!(
        port.entity_count(),
        active.len() + closed.len() + active_bugs.len() + 4,
        "no cross-blueprint entities"
    );
    // The two resources with the same wiql shared one query per project.
    assert_eq!(ado_requests_on(&running.world.ado, WIQL), 2);
    // The summary counts each resource apart, those sharing a crawl too: resources 0 and 3
    // read the same Active items, and each made its own entities of them.
    let summary = (running.pipeline.resync_summaries.as_ref())
        .and_then(|summaries| summaries.borrow().clone())
        .expect("the resync's summary");
    let figures: Vec<(u32, u64, u64)> = (summary.resources.iter())
        .map(|r| (r.index, r.items_crawled, r.entities_produced))
        .collect();
    let n = |set: &BTreeSet<String>| set.len() as u64;
    assert_eq!(
        figures,
        [
            (0, n(&active), n(&active)),
            (1, n(&closed), n(&closed)),
            (2, 2, 2),
            (3, n(&active), n(&active_bugs)),
            (4, 2, 2),
        ],
        "{summary:?}"
    );

    // A push changing port.yml and service.json: each file updates its own resource's entity.
    let repository = running.repository_id(|r| r["name"] == "repo-0-0");
    let pushed = running
        .world
        .ado
        .push(
            &repository,
            "main",
            vec![SimCommit::new(
                "both",
                vec![
                    FileChange::put("port.yml", "service:\n  name: pushed\n"),
                    FileChange::put("service.json", "{\"name\": \"pushed\"}"),
                ],
            )],
        )
        .expect("pushed");
    let answer = running.post_event(&pushed.webhook).await;
    assert_eq!(answer.status().as_u16(), 200);
    let raw = |blueprint: &str, identifier: &str| {
        (port.entity(blueprint, identifier)).map(|e| e["properties"]["raw"].clone())
    };
    let landed = port
        .wait_for(
            |_| {
                raw("service", "repo-0-0/port.yml") == Some(json!("service:\n  name: pushed\n"))
                    && raw("npmPackage", "repo-0-0/service.json")
                        == Some(json!("{\"name\": \"pushed\"}"))
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(landed, "{:?}", port.entities("service"));
    // Still one entity per file, under its own resource's blueprint only.
    assert_eq!(identifiers(port, "service"), files("port.yml"));
    assert_eq!(identifiers(port, "npmPackage"), files("service.json"));
    running.stop().await;
}

#[tokio::test]
async fn a_failed_crawl_unit_deletes_nothing() {
    let mut running = Start::new("per-resource-failed-unit", BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(mapping())
        .run()
        .await;
    running.resync_settled_without_failures().await;
    let port = &running.world.port;
    let first = |blueprint: &str| -> String {
        identifiers(port, blueprint)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("a {blueprint} entity"))
    };
    // Gone from Azure DevOps: an item of the unit that will fail, and a file of a unit that
    // will not (its push is never delivered: only the resync can see it).
    let active = first("activeWorkItem");
    assert!((running.world.ado).remove_work_item(active.parse().expect("numeric id")));
    let repository = running.repository_id(|r| r["name"] == "repo-0-1");
    (running.world.ado)
        .push(
            &repository,
            "main",
            vec![SimCommit::new("drop", vec![FileChange::delete("port.yml")])],
        )
        .expect("pushed");
    // The next crawl's first WIQL query — the Active unit's (resources 0 and 3) — is refused.
    running
        .world
        .ado
        .fail_next(WIQL, vec![adoport_sim::ScriptedAnswer::status(400)]);
    running.world.port.enable_sync_metrics();
    let resync_id = running.request_resync().await;
    let done = adoport_tests::within(60, "the crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let report = done.report.expect("crawl ran");
    assert_eq!(report.failed_kinds(), vec!["work-item#0,3"], "{report:?}");
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "failed", "{summary:?}");
    assert_eq!(summary.deleted, 0);
    let port = &running.world.port;
    assert!(port.entity("activeWorkItem", &active).is_some());
    assert!(
        port.entity("service", "repo-0-1/port.yml").is_some(),
        "not even the stale entities of a unit crawled whole"
    );
    // Port is told per resource: the two resources of the refused unit failed, the others
    // (the other work-item resource among them) completed with their own counts.
    let failed: Vec<u32> = (summary.resources.iter())
        .filter(|r| r.crawl_failure.is_some())
        .map(|r| r.index)
        .collect();
    assert_eq!(failed, [0, 3], "{summary:?}");
    let batches = port.sync_metrics();
    let last = batches.last().expect("the resync's sync metrics");
    let states: Vec<(&str, &str)> = (last.iter())
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or("?");
            (text("kindIdentifier"), text("syncState"))
        })
        .collect();
    assert_eq!(
        states,
        [
            ("work-item-0", "failed"),
            ("work-item-1", "completed"),
            ("file-2", "completed"),
            ("work-item-3", "failed"),
            ("file-4", "completed"),
        ]
    );
    let closed = (running.world.ado.work_items().iter())
        .filter(|w| w["fields"]["System.State"] == "Closed")
        .count() as u64;
    assert_eq!(object_count(&last[1], "extract", "raw_extracted"), closed);
    assert_eq!(object_count(&last[1], "transform", "transformed"), closed);
    assert_eq!(last[1]["metrics"]["phase"]["resync"]["success"], 1.0);
    assert_eq!(last[0]["metrics"]["phase"]["resync"]["success"], 0.0);
    assert_eq!(
        object_count(&last[2], "extract", "raw_extracted"),
        1,
        "one port.yml left"
    );
    running.stop().await;
}

/// The mapping of the many-cycle tests: two work-item resources with different wiql, two file
/// resources with different paths, each under a blueprint of its own, titles and contents
/// taken from the items (so that a hand edit in Port is drift the next resync repairs).
fn cycles_mapping() -> Value {
    let work_item = ".id | tostring";
    let file = ".repo.name + \"/\" + .file.path";
    json!({
        "specPath": [],
        "resources": [
            titled_resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Active'"}), work_item, ".fields[\"System.Title\"]", ACTIVE),
            titled_resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Closed'"}), work_item, ".fields[\"System.Title\"]", CLOSED),
            titled_resource("file", json!({"query": "true", "files": {"path": PORT_YML}}), file, ".file.path", SERVICE),
            titled_resource("file", json!({"query": "true", "files": {"path": SERVICE_JSON}}), file, ".file.path", PACKAGE),
        ],
    })
}

const ACTIVE: &str = "activeWorkItem";
const CLOSED: &str = "closedWorkItem";
const SERVICE: &str = "service";
const PACKAGE: &str = "npmPackage";
const PORT_YML: &str = "port.yml";
const SERVICE_JSON: &str = "service.json";
/// Every blueprint of [`cycles_mapping`], at its resource's index.
const BLUEPRINTS: [&str; 4] = [ACTIVE, CLOSED, SERVICE, PACKAGE];

/// Per blueprint, per identifier: the entity's title and `raw` property.
type Catalog = BTreeMap<String, BTreeMap<String, (Value, Value)>>;

/// What Port must hold after a resync with [`cycles_mapping`]: every Active work item under
/// its blueprint, every Closed one under the other, and each repository's `port.yml` and
/// `service.json` on its default branch under theirs — nothing else.
fn expected(ado: &AdoSim) -> Catalog {
    let mut catalog: Catalog = BLUEPRINTS
        .iter()
        .map(|b| (b.to_string(), BTreeMap::new()))
        .collect();
    for item in ado.work_items() {
        let blueprint = match item["fields"]["System.State"].as_str() {
            Some("Active") => ACTIVE,
            Some("Closed") => CLOSED,
            _ => continue,
        };
        let id = item["id"].as_u64().expect("work item id").to_string();
        let title = item["fields"]["System.Title"].clone();
        (catalog.get_mut(blueprint).expect("blueprint")).insert(id, (title, Value::Null));
    }
    for repository in live_repositories(ado) {
        let (id, name) = (
            repository["id"].as_str().expect("id"),
            repository["name"].as_str().expect("name"),
        );
        for (path, blueprint) in [(PORT_YML, SERVICE), (SERVICE_JSON, PACKAGE)] {
            if let Some(content) = ado.file_at(id, "main", path) {
                (catalog.get_mut(blueprint).expect("blueprint"))
                    .insert(format!("{name}/{path}"), (json!(path), json!(content)));
            }
        }
    }
    catalog
}

/// The repositories whose files the crawl reads: not disabled, with a default branch.
fn live_repositories(ado: &AdoSim) -> Vec<Value> {
    (ado.repositories().into_iter())
        .filter(|r| r["isDisabled"] != true && r["defaultBranch"].is_string())
        .collect()
}

/// What Port holds, in the shape of [`expected`] (every blueprint, whatever it is).
fn held(port: &adoport_sim::PortSim) -> Catalog {
    let mut catalog: Catalog = BLUEPRINTS
        .iter()
        .map(|b| (b.to_string(), BTreeMap::new()))
        .collect();
    for entity in port.all_entities() {
        let text = |field: &str| entity[field].as_str().unwrap_or_default().to_string();
        let raw = entity["properties"]["raw"].clone();
        (catalog.entry(text("blueprint")).or_default())
            .insert(text("identifier"), (entity["title"].clone(), raw));
    }
    catalog
}

/// Asserts that Port holds exactly `expected`, naming per blueprint what is missing, stale or
/// different.
fn assert_port_holds(port: &adoport_sim::PortSim, expected: &Catalog, after: &str) {
    let held = held(port);
    if held == *expected {
        return;
    }
    let mut problems = Vec::new();
    for (blueprint, entities) in &held {
        let want = expected.get(blueprint).cloned().unwrap_or_default();
        for (id, value) in entities {
            match want.get(id) {
                None => problems.push(format!("stale {blueprint}/{id}")),
                Some(w) if w != value => {
                    problems.push(format!("{blueprint}/{id}: holds {value:?}, expected {w:?}"))
                }
                Some(_) => {}
            }
        }
        for id in want.keys().filter(|id| !entities.contains_key(*id)) {
            problems.push(format!("missing {blueprint}/{id}"));
        }
    }
    for (blueprint, want) in expected.iter().filter(|(b, _)| !held.contains_key(*b)) {
        problems.extend(want.keys().map(|id| format!("missing {blueprint}/{id}")));
    }
    panic!("after {after}, Port differs from the resources' entities: {problems:#?}");
}

/// One change to the simulated Azure DevOps: a work item added, retitled, removed or moved
/// between the two wiql selectors; a file written, deleted, or moved from one resource's path
/// to the other's — never emptying a resource.
fn change_ado(rng: &mut Rng, ado: &AdoSim, n: usize) {
    let items = ado.work_items();
    let id_of = |item: &Value| item["id"].as_u64().expect("id");
    let in_state = |state: &str| -> Vec<u64> {
        (items.iter())
            .filter(|w| w["fields"]["System.State"] == state)
            .map(id_of)
            .collect()
    };
    let repositories: Vec<String> = (live_repositories(ado).iter())
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    let repository = rng.pick(&repositories).expect("a repository").clone();
    let push = |changes: Vec<FileChange>| {
        ado.push(
            &repository,
            "main",
            vec![SimCommit::new(&format!("change {n}"), changes)],
        )
        .expect("pushed");
    };
    // A resource is never emptied: a unit that suddenly returns nothing is taken for a
    // failure until the next resync confirms it (the resync deletes nothing), which is not
    // what this test is about.
    let last_of_its_resource = |item: &Value| {
        let state = item["fields"]["System.State"].as_str().unwrap_or_default();
        matches!(state, "Active" | "Closed") && in_state(state).len() < 2
    };
    let holding = |path: &str| {
        (repositories.iter())
            .filter(|r| ado.file_at(r, "main", path).is_some())
            .count()
    };
    let path = if rng.chance(0.5) {
        PORT_YML
    } else {
        SERVICE_JSON
    };
    let other = if path == PORT_YML {
        SERVICE_JSON
    } else {
        PORT_YML
    };
    match rng.below(8) {
        0 => {
            let projects = ado.projects();
            let project = rng.pick(&projects).expect("a project")["id"]
                .as_str()
                .expect("id")
                .to_string();
            ado.add_work_item(&project, &format!("added {n}"))
                .expect("added");
        }
        1 => {
            if let Some(item) = rng.pick(&items) {
                ado.set_work_item_title(id_of(item), &format!("retitled {n}"));
            }
        }
        2 => {
            if let Some(item) = rng.pick(&items)
                && !last_of_its_resource(item)
            {
                assert!(ado.remove_work_item(id_of(item)));
            }
        }
        3 | 4 => {
            // From one resource's selector to the other's.
            let (from, to) = if rng.chance(0.5) {
                ("Active", "Closed")
            } else {
                ("Closed", "Active")
            };
            let candidates = in_state(from);
            match rng.pick(&candidates) {
                Some(id) if candidates.len() > 1 => assert!(ado.set_work_item_state(*id, to)),
                Some(_) => {}
                // None left in that state: bring one over from a state neither selects.
                None => {
                    if let Some(item) = rng.pick(&items) {
                        assert!(ado.set_work_item_state(id_of(item), from));
                    }
                }
            }
        }
        5 => push(vec![FileChange::put(path, &format!("content {n}\n"))]),
        6 => {
            if ado.file_at(&repository, "main", path).is_some() && holding(path) > 1 {
                push(vec![FileChange::delete(path)]);
            }
        }
        _ => {
            // The file moves from one resource's path to the other's.
            if let Some(content) = ado.file_at(&repository, "main", path)
                && holding(path) > 1
            {
                push(vec![
                    FileChange::delete(path),
                    FileChange::put(other, &content),
                ]);
            }
        }
    }
}

/// One hand edit in Port: an entity retitled or deleted, a stale entity of ours planted under
/// another resource's blueprint (the same identifier) or under a new identifier.
fn drift_port(rng: &mut Rng, port: &adoport_sim::PortSim, n: usize) {
    let entities = port.all_entities();
    let Some(entity) = rng.pick(&entities) else {
        return;
    };
    let text = |field: &str| entity[field].as_str().unwrap_or_default().to_string();
    let (blueprint, identifier) = (text("blueprint"), text("identifier"));
    let ours = entity["$datasource"].as_str().map(str::to_string);
    match rng.below(5) {
        0 => {
            assert!(port.edit_entity(
                &blueprint,
                &identifier,
                json!({"title": format!("edited by hand {n}")})
            ));
        }
        1 => {
            port.delete_entity(&blueprint, &identifier, false)
                .expect("deleted");
        }
        2 => {
            // Of one resource, under its sibling's blueprint: never produced there.
            let sibling = match blueprint.as_str() {
                ACTIVE => CLOSED,
                CLOSED => ACTIVE,
                SERVICE => PACKAGE,
                _ => SERVICE,
            };
            port.put_entity(sibling, entity.clone(), ours.as_deref())
                .expect("planted");
        }
        3 => {
            let mut stale = entity.clone();
            stale["identifier"] = json!(format!("stale-{n}"));
            port.put_entity(&blueprint, stale, ours.as_deref())
                .expect("planted");
        }
        _ => {}
    }
}

/// Per resource of [`cycles_mapping`] (by index), the entities Port must hold for it.
fn counts(expected: &Catalog) -> [u64; 4] {
    BLUEPRINTS.map(|b| expected[b].len() as u64)
}

/// The count of one phase's `object_count_type` in a sync metrics event.
fn object_count(event: &Value, phase: &str, result: &str) -> u64 {
    event["metrics"]["phase"][phase]["object_count_type"][result]["object_count"]
        .as_f64()
        .map_or(u64::MAX, |n| n as u64)
}

/// The summary and Port's sync metrics of a resync say, per resource, what it read and made:
/// one line and one `{kind}-{index}` event per resource, with its own figures.
fn assert_per_resource_figures(
    summary: &adoport_publish::ResyncSummary,
    port: &adoport_sim::PortSim,
    want: [u64; 4],
    after: &str,
) {
    assert_per_resource_counts(summary, want, after);
    let batches = port.sync_metrics();
    let last = batches.last().expect("the resync's sync metrics");
    let identifiers: Vec<&str> = last
        .iter()
        .filter_map(|e| e["kindIdentifier"].as_str())
        .collect();
    assert_eq!(
        identifiers,
        ["work-item-0", "work-item-1", "file-2", "file-3"],
        "after {after}"
    );
    for (i, event) in last.iter().enumerate() {
        assert_eq!(event["syncState"], "completed", "after {after}: {event}");
        assert_eq!(
            event["blueprint"],
            format!("\"{}\"", BLUEPRINTS[i]),
            "{event}"
        );
        assert_eq!(
            object_count(event, "extract", "raw_extracted"),
            want[i],
            "after {after}: {event}"
        );
        assert_eq!(
            object_count(event, "transform", "transformed"),
            want[i],
            "after {after}: {event}"
        );
        assert_eq!(
            object_count(event, "load", "loaded") + object_count(event, "load", "skipped"),
            want[i],
            "after {after}: {event}"
        );
    }
}

/// The summary has one line per resource, in mapping order, with its own figures.
fn assert_per_resource_counts(
    summary: &adoport_publish::ResyncSummary,
    want: [u64; 4],
    after: &str,
) {
    let lines: Vec<(String, u32, u64, u64)> = (summary.resources.iter())
        .map(|r| {
            (
                r.kind.clone(),
                r.index,
                r.items_crawled,
                r.entities_produced,
            )
        })
        .collect();
    let kinds = ["work-item", "work-item", "file", "file"];
    let expected: Vec<(String, u32, u64, u64)> = (0..4)
        .map(|i| (kinds[i].to_string(), i as u32, want[i], want[i]))
        .collect();
    assert_eq!(lines, expected, "summary after {after}: {summary:?}");
    for r in &summary.resources {
        assert_eq!(
            r.upserted + r.skipped,
            r.entities_produced,
            "resource {} after {after}: every entity written or already held",
            r.index
        );
    }
}

/// Resyncs after resyncs with a mapping of two work-item resources (different wiql) and two
/// file resources (different paths), Azure DevOps changing between them (items added,
/// changed, removed, moved from one resource's selector to the other's; files written,
/// deleted, moved between the two paths) and hand edits in Port: after each one Port holds
/// exactly each resource's entities — nothing missing, nothing stale, nothing of one resource
/// under the other's blueprint — and the summary and the sync metrics count each resource
/// apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_resyncs_with_changes_and_drift_keep_every_resource_exact() {
    const CYCLES: usize = 300;
    let running = Start::new("per-resource-cycles", BusKind::Rabbit, Roles::ALL)
        .organization(2, 2)
        .mapping(cycles_mapping())
        .extra(&[adoport_tests::WEBHOOKS_ONLY])
        .run()
        .await;
    let (ado, port) = (&running.world.ado, &running.world.port);
    port.enable_sync_metrics();
    let first = running.request_resync().await;
    let summary = running.resync_summary(60, first).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    let want = expected(ado);
    assert!(counts(&want).iter().all(|n| *n > 0), "{want:?}");
    assert_port_holds(port, &want, "the first resync");
    assert_per_resource_figures(&summary, port, counts(&want), "the first resync");

    let mut rng = Rng::new(0x5eed_0001);
    for n in 1..=CYCLES {
        for _ in 0..=rng.below(2) {
            change_ado(&mut rng, ado, n);
        }
        drift_port(&mut rng, port, n);
        let resync_id = running.request_resync().await;
        let summary = running.resync_summary(60, resync_id).await;
        let after = format!("resync {n}");
        assert_eq!(summary.status, "completed", "{after}: {summary:?}");
        let want = expected(ado);
        assert_port_holds(port, &want, &after);
        assert_per_resource_figures(&summary, port, counts(&want), &after);
    }
    let tracking = running
        .pipeline
        .reconcile_tracking
        .clone()
        .expect("publish runs here");
    assert_eq!(tracking.borrow().open_resyncs, 0);
    running.stop().await;
}

/// Transform killed while a resync's crawl units are in flight (some of their raw events
/// mapped, the rest waiting): nothing is deleted meanwhile — not even what Azure DevOps no
/// longer has, in any resource — and once transform is back the resync completes, deletes
/// exactly what no resource produced, and the next resync converges too.
#[tokio::test]
async fn transform_killed_mid_resync_deletes_nothing_until_every_unit_is_done() {
    let mapping = cycles_mapping();
    let running = Start::new("per-resource-kill", BusKind::Rabbit, roles::INGEST_PUBLISH)
        .organization(6, 3)
        .mapping(mapping.clone())
        .extra(&[
            adoport_tests::WEBHOOKS_ONLY,
            ("ADOPORT__INGEST__ITEMS_PER_EVENT", "1"),
            ("ADOPORT__TRANSFORM__PREFETCH", "1"),
        ])
        .run()
        .await;
    let (ado, port) = (&running.world.ado, &running.world.port);
    // Transform alone, on the test's connection: a "process" to kill and restart.
    let first = running.start_transform(&mapping).await;
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    assert_port_holds(port, &expected(ado), "the first resync");
    first.stop().await.expect("stops");

    // Something of every resource goes away in Azure DevOps; a work item moves across.
    let items = ado.work_items();
    let in_state = |state: &str| -> Vec<u64> {
        (items.iter())
            .filter(|w| w["fields"]["System.State"] == state)
            .filter_map(|w| w["id"].as_u64())
            .collect()
    };
    let (active, closed) = (in_state("Active"), in_state("Closed"));
    assert!(active.len() >= 2 && !closed.is_empty());
    assert!(ado.remove_work_item(active[0]));
    assert!(ado.remove_work_item(closed[0]));
    assert!(ado.set_work_item_state(active[1], "Closed"));
    let repositories = live_repositories(ado);
    let repository = |i: usize| repositories[i]["id"].as_str().expect("id").to_string();
    for (i, path) in [(0, PORT_YML), (1, SERVICE_JSON)] {
        (ado.push(
            &repository(i),
            "main",
            vec![SimCommit::new("drop", vec![FileChange::delete(path)])],
        ))
        .expect("pushed");
    }
    let before = held(port);
    let want = expected(ado);

    let resync_id = running.request_resync().await;
    // Transform maps part of the resync's raw events, then is killed.
    let second = running.start_transform(&mapping).await;
    within(
        30,
        "transform to map some raw events",
        second.transform_stats.clone().wait_for_settled(4),
    )
    .await;
    second.stop().await.expect("stops");
    let waiting = running.ready(WorkQueue::Raw).await;
    assert!(
        waiting > 0,
        "killed with raw events of the resync still to map"
    );
    // Nothing deleted: every entity Port held before is still there, stale ones included.
    let now = held(port);
    for (blueprint, entities) in &before {
        for id in entities.keys() {
            assert!(
                now.get(blueprint).is_some_and(|held| held.contains_key(id)),
                "{blueprint}/{id} deleted while the resync's units were unfinished"
            );
        }
    }
    assert_eq!(
        resyncs_reported(port, "completed"),
        1,
        "the interrupted resync is not over"
    );

    let third = running.start_transform(&mapping).await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    assert_eq!(
        summary.deleted, 5,
        "two work items gone, one moved, two files: {summary:?}"
    );
    assert_port_holds(port, &want, "the interrupted resync");
    assert_per_resource_counts(&summary, counts(&want), "the interrupted resync");

    // And the next resync converges.
    let mut rng = Rng::new(0x5eed_0002);
    for n in 0..4 {
        change_ado(&mut rng, ado, n);
    }
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    assert_port_holds(port, &expected(ado), "the next resync");
    third.stop().await.expect("stops");
    running.stop().await;
}
