//! Operating it, on the real RabbitMQ: replay from the archive stream (dry run and apply), the
//! dead-letter tools (list, show, requeue, purge), and metrics that move when work flows.

use std::time::Duration;

use adoport::cli::{DlqAction, DlqArgs, DlqName};
use adoport::health::{HealthState, Upstream};
use adoport::pipeline::Roles;
use adoport::port_reader::PortReader;
use adoport::replay::{ReplayFilter, ReplayMode, replay};
use adoport_shared::bus::{ArchiveStart, Destination, Outgoing};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::{DeadLetterQueue, WorkQueue};
use adoport_tests::{
    BusKind, Running, port_access_token, start, start_webhooks_only, test_mapping, within,
};
use adoport_transform::mapping::CompiledMapping;

/// How long a replay waits for more archived messages before it ends.
const IDLE: Duration = Duration::from_millis(1500);

fn compiled_test_mapping() -> CompiledMapping {
    let config = PortAppConfig::from_json_value(test_mapping()).expect("mapping parses");
    CompiledMapping::compile(&config).expect("mapping compiles")
}

/// Deletes an entity through Port's API, as someone editing the catalog by hand would.
async fn delete_in_port(settings: &adoport_shared::config::Settings, blueprint: &str, id: &str) {
    let access = settings.port_access().expect("Port settings");
    let http = reqwest::Client::new();
    let token = port_access_token(
        &http,
        &access.base_url,
        &access.client_id,
        access.client_secret.expose(),
    )
    .await;
    let status = http
        .delete(format!(
            "{}/v1/blueprints/{blueprint}/entities/{id}",
            access.base_url
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete")
        .status();
    assert!(status.is_success(), "delete answered {status}");
}

#[tokio::test]
async fn replay_dry_run_compares_with_port_and_apply_feeds_the_pipeline_again() {
    let mut running = start("replay", BusKind::Rabbit, Roles::ALL, 2, 3, &[]).await;
    let report = running.resync_settled().await;
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    let repository_events = report.kinds["repository"].events;
    let repositories = running.world.ado.repositories();
    assert_eq!(repositories.len(), 6);

    // Dry run of the repositories: the mapping makes what Port already holds.
    let port = PortReader::new(&running.settings, "the dry run compares with Port")
        .expect("Port sim sign-in");
    let dry = ReplayMode::DryRun {
        mapping: Box::new(compiled_test_mapping()),
        port: Some(port),
        show: 100,
    };
    let filter = ReplayFilter {
        kinds: vec!["repository".into()],
        ..ReplayFilter::default()
    };
    let mut out = Vec::new();
    let summary = within(
        30,
        "the dry run",
        replay(
            &running.bus,
            &ArchiveStart::First,
            &filter,
            &dry,
            IDLE,
            None,
            &mut out,
        ),
    )
    .await
    .expect("dry run");
    let printed = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(
        summary.read, events,
        "every archived event is read: {summary}"
    );
    assert_eq!(summary.matched, repository_events, "{summary}");
    assert_eq!(summary.entities, 6, "{summary}\n{printed}");
    assert_eq!(summary.same_in_port, 6, "{summary}\n{printed}");
    assert_eq!(summary.replayed, 0, "a dry run publishes nothing");
    assert!(printed.contains("azureDevopsRepository/"), "{printed}");

    // One object by id, and Port changed behind our back: the dry run names the field.
    let repository = &repositories[0];
    let id = repository["id"]
        .as_str()
        .expect("repository id")
        .to_string();
    delete_in_port(&running.settings, "azureDevopsRepository", &id).await;
    assert!(
        running
            .world
            .port
            .entity("azureDevopsRepository", &id)
            .is_none()
    );
    let one = ReplayFilter {
        id: Some(id.clone()),
        ..ReplayFilter::default()
    };
    let mut out = Vec::new();
    let summary = replay(
        &running.bus,
        &ArchiveStart::First,
        &one,
        &dry,
        IDLE,
        None,
        &mut out,
    )
    .await
    .expect("dry run by id");
    assert_eq!((summary.matched, summary.entities), (1, 1), "{summary}");
    assert_eq!(summary.missing_in_port, 1, "{summary}");
    assert!(
        String::from_utf8_lossy(&out).contains("not in Port"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Apply: the event goes back through transform and publish, and Port has the entity again.
    let settled_before = running.pipeline.transform_stats.events_settled();
    let before = running.pipeline.publish_stats.snapshot();
    let (acked_before, upserted_before, skipped_before) = (
        before.acked,
        before.upserted,
        before.skipped_stale + before.skipped_unchanged,
    );
    let summary = replay(
        &running.bus,
        &ArchiveStart::First,
        &one,
        &ReplayMode::Apply,
        IDLE,
        None,
        &mut Vec::new(),
    )
    .await
    .expect("apply");
    assert_eq!(summary.replayed, 1, "{summary}");
    running
        .transform_settled(settled_before + 1, "transform to take the replayed event")
        .await;
    within(
        30,
        "publish to write the replayed entity",
        running
            .pipeline
            .publish_stats
            .wait_until(|s| s.acked > acked_before),
    )
    .await;
    // The replayed change reached publish. It carries its original observation time, so the
    // ordering guard may skip it as already applied, or the comparison with what Port holds
    // as unchanged: written or skipped, never lost.
    let after = running.pipeline.publish_stats.snapshot();
    assert!(
        after.upserted + after.skipped_stale + after.skipped_unchanged
            > upserted_before + skipped_before,
        "{after:?}"
    );

    // The replayed event went straight to the work queue: the archive did not grow.
    let summary = replay(
        &running.bus,
        &ArchiveStart::First,
        &ReplayFilter::default(),
        &ReplayMode::Apply,
        IDLE,
        Some(0),
        &mut Vec::new(),
    )
    .await
    .expect("empty read");
    assert_eq!(summary.read, 0, "--limit 0 reads nothing");
    let mut archive = running
        .bus
        .read_archive(&ArchiveStart::First, IDLE)
        .await
        .expect("archive reader");
    let mut archived = 0;
    while archive.next().await.expect("archive read").is_some() {
        archived += 1;
    }
    archive.close().await;
    assert_eq!(archived, events, "replayed events are not archived twice");
    assert_eq!(running.ready(WorkQueue::Raw).await, 0);
    running.stop().await;
}

/// What `adoport dlq raw ACTION` prints, run on the test's queues; fails the test on an error.
async fn dlq_prints(running: &Running, action: DlqAction) -> String {
    dlq_says(running, action)
        .await
        .unwrap_or_else(|e| panic!("adoport dlq: {e:#}"))
}

/// What `adoport dlq raw ACTION` prints, run on the test's queues, or its error.
async fn dlq_says(running: &Running, action: DlqAction) -> anyhow::Result<String> {
    let args = DlqArgs {
        queue: DlqName::Raw,
        action,
    };
    let mut out = Vec::new();
    adoport::dlq::run(&running.bus, &args, &mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn dead_letters_are_listed_shown_requeued_and_purged() {
    let mut running = start("dlq", BusKind::Rabbit, Roles::ALL, 1, 1, &[]).await;
    let report = running.resync_settled().await;
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    let stats = running.pipeline.transform_stats.clone();

    // Two raw events transform cannot read.
    running
        .bus
        .publish_all(vec![
            Outgoing::new(Destination::Raw, &b"not json"[..]),
            Outgoing::new(Destination::Raw, &br#"{"v": 9, "kind": "repository"}"#[..]),
        ])
        .await
        .expect("published");
    running
        .transform_settled(events + 2, "transform to dead-letter both")
        .await;
    assert_eq!(stats.events_dead_lettered(), 2);

    // Listing leaves the letters in place.
    for _ in 0..2 {
        let letters = running.list_dead_letters(DeadLetterQueue::Raw).await;
        assert_eq!(letters.len(), 2);
        assert!(
            letters[0].reason.contains("not JSON"),
            "{}",
            letters[0].reason
        );
        assert!(
            letters[1].reason.contains("schema version 9"),
            "{}",
            letters[1].reason
        );
        assert!(
            letters
                .iter()
                .all(|l| l.origin_queue.ends_with("ado.raw.work"))
        );
    }
    let listed = dlq_prints(&running, DlqAction::List { limit: 10 }).await;
    assert!(
        listed.contains("2 dead letter(s)") && listed.contains("schema version 9"),
        "{listed}"
    );
    let shown = dlq_prints(&running, DlqAction::Show { position: 1 }).await;
    assert!(
        shown.contains("\"v\": 9") && shown.contains("reason:"),
        "{shown}"
    );
    let err = dlq_says(&running, DlqAction::Show { position: 5 })
        .await
        .expect_err("no position 5");
    assert!(err.to_string().contains("no position 5"), "{err}");

    // Requeue by filter: only the version-9 letter goes back, and transform dead-letters it again.
    let outcome = running
        .bus
        .requeue_dead_letters(DeadLetterQueue::Raw, &|_, l| l.reason.contains("version 9"))
        .await
        .expect("requeue");
    assert_eq!((outcome.requeued, outcome.kept), (1, 1), "{outcome:?}");
    running
        .transform_settled(events + 3, "transform to take the requeued letter")
        .await;
    assert_eq!(stats.events_dead_lettered(), 3);
    assert_eq!(
        running.dead_letters(DeadLetterQueue::Raw).await,
        2,
        "the requeued letter came back, the other stayed"
    );

    let purged = dlq_prints(&running, DlqAction::Purge).await;
    assert!(purged.contains("2 dead letter(s) purged"), "{purged}");
    assert_eq!(running.dead_letters(DeadLetterQueue::Raw).await, 0);
    running.stop().await;
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} in\n{text}"))
}

#[tokio::test]
async fn metrics_move_when_work_flows_and_probes_answer() {
    let mut running = start_webhooks_only("metrics", 2, 2).await;
    let topology = running.bus.topology().clone();
    let mut queues = vec![WorkQueue::Raw];
    queues.extend(topology.change_queues());
    let state = HealthState::new(
        "all",
        running.bus.clone(),
        Some(running.pipeline.transform_stats.clone()),
        Some(running.pipeline.publish_stats.clone()),
        vec![Upstream {
            name: "port",
            url: running.world.port.base_url(),
        }],
        queues,
    )
    .with_ingest(Some(running.pipeline.ingest_stats.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(adoport::health::serve(listener, state, shutdown.clone()));
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let response = request.send().await.expect("endpoint answers");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // WEBHOOKS_ONLY: nothing has flowed yet.
    let (_, before) = get("/metrics").await;
    assert_eq!(
        sample(&before, "adoport_messages_in_total{stage=\"publish\"}"),
        0
    );
    assert_eq!(sample(&before, "adoport_broker_connected{role=\"all\"}"), 1);
    assert!(
        before.contains("# TYPE adoport_messages_in_total counter"),
        "{before}"
    );
    assert!(
        before.contains("adoport_queue_ready_messages{queue=\""),
        "{before}"
    );
    assert_eq!(sample(&before, "adoport_resyncs_started_total"), 0);
    assert_eq!(
        sample(&before, "adoport_port_request_duration_seconds_count"),
        0
    );
    assert!(
        before.contains("# TYPE adoport_port_request_duration_seconds histogram"),
        "{before}"
    );

    // A manual resync makes them move.
    running.request_resync_over_http().await;
    let crawl = running.resync_settled().await;
    let (_, after) = get("/metrics").await;
    let published = running.pipeline.publish_stats.snapshot();
    assert_eq!(
        sample(&after, "adoport_messages_in_total{stage=\"publish\"}"),
        published.received
    );
    assert!(
        published.received >= 6,
        "2 projects + 4 repositories: {published:?}"
    );
    assert!(sample(&after, "adoport_messages_in_total{stage=\"transform\"}") > 0);
    assert!(sample(&after, "adoport_port_entities_total{outcome=\"upserted\"}") >= 6);
    assert!(sample(&after, "adoport_port_requests_total") > 0);

    // Per stage and kind.
    let report = &crawl.kinds;
    // A kind that published nothing (GitOps without specs) has no transform series.
    for (kind, crawled) in report.iter().filter(|(_, k)| k.events > 0) {
        assert_eq!(
            sample(
                &after,
                &format!("adoport_resync_items_crawled{{kind=\"{kind}\"}}")
            ),
            crawled.items,
            "{after}"
        );
        assert_eq!(
            sample(
                &after,
                &format!("adoport_transform_items_by_kind_total{{kind=\"{kind}\"}}")
            ),
            crawled.items,
            "{after}"
        );
        assert_eq!(
            sample(
                &after,
                &format!(
                    "adoport_messages_in_by_kind_total{{stage=\"transform\",kind=\"{kind}\"}}"
                )
            ),
            crawled.events,
            "{after}"
        );
    }
    let repositories = report["repository"].items;
    assert_eq!(repositories, 4);
    assert!(
        sample(
            &after,
            "adoport_messages_out_by_kind_total{stage=\"transform\",kind=\"repository\"}"
        ) >= repositories
    );
    assert_eq!(
        sample(
            &after,
            "adoport_messages_in_by_kind_total{stage=\"publish\",kind=\"repository\"}"
        ),
        running
            .pipeline
            .publish_stats
            .per_kind()
            .get("repository", "received")
    );
    assert!(
        sample(
            &after,
            "adoport_port_entities_by_kind_total{kind=\"repository\",outcome=\"upserted\"}"
        ) >= repositories,
        "{after}"
    );
    // Azure DevOps and Port requests by status, Port latency, resync progress.
    assert!(
        sample(
            &after,
            "adoport_azure_devops_requests_total{status=\"200\"}"
        ) > 0
    );
    assert!(
        sample(
            &after,
            "adoport_azure_devops_request_duration_seconds_count"
        ) > 0
    );
    assert!(sample(&after, "adoport_port_http_requests_total{status=\"200\"}") > 0);
    let port_requests = sample(&after, "adoport_port_request_duration_seconds_count");
    assert!(port_requests >= sample(&after, "adoport_port_requests_total"));
    assert_eq!(
        sample(
            &after,
            "adoport_port_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        port_requests
    );
    assert_eq!(sample(&after, "adoport_resyncs_started_total"), 1);
    assert_eq!(sample(&after, "adoport_resyncs_completed_total"), 1);
    assert_eq!(sample(&after, "adoport_resyncs_failed_total"), 0);
    assert_eq!(sample(&after, "adoport_resync_running"), 0);
    assert!(
        after.contains("adoport_resync_last_duration_seconds "),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            &format!(
                "adoport_dead_letter_messages{{queue=\"{}\"}}",
                topology.dead_letter_queue(DeadLetterQueue::Changes)
            )
        ),
        0
    );

    shutdown.cancel();
    within(10, "the endpoint to stop", server)
        .await
        .expect("joined")
        .expect("served");
    running.stop().await;
}
