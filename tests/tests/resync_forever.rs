//! Resyncs run for as long as the process does: 1,000 resyncs of a tiny simulated organization
//! in one process each complete (the coordinator's summary says `completed`, and Port is told),
//! what the resync path holds stays bounded, and every trigger — start-up, `POST /resync`,
//! Port's resync request, the schedule — still starts a resync after them.
//!
//! Nobody reads the pipeline's finished-crawl announcements here, as in a long-lived
//! deployment: the crawler must never wait for a reader (it used to stop after the 17th).

use std::time::Duration;

use adoport::process_status::status_kib;
use adoport_ingest::resync;
use adoport_publish::ResyncSummary;
use adoport_publish::reconcile::ENDED_KEPT;
use adoport_shared::mapping_versions::VERSIONS_KEPT;
use adoport_shared::messages::ResyncId;
use adoport_tests::{Running, resyncs_reported, start_polling, within};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RESYNCS: usize = 1_000;

/// Resync states Port was told, by status.
fn reported(running: &Running, status: &str) -> usize {
    resyncs_reported(&running.world.port, status)
}

/// The resident set size of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS").expect("VmRSS in /proc/<pid>/status")
}

/// Waits for the summary of a resync that is not `previous`, and for Port to have been told
/// `completed` `count` times; returns the summary.
async fn next_completed(
    running: &Running,
    summaries: &mut watch::Receiver<Option<ResyncSummary>>,
    previous: Option<ResyncId>,
    count: usize,
) -> ResyncSummary {
    let summary = within(30, "the next resync's summary", async {
        summaries
            .wait_for(|s| s.as_ref().is_some_and(|s| Some(s.resync_id) != previous))
            .await
            .expect("coordinator running")
            .clone()
            .expect("a summary")
    })
    .await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    let told = running
        .world
        .port
        .wait_for(
            |port| resyncs_reported(port, "completed") >= count,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        told,
        "Port told of {count} completed resyncs; {}",
        reported(running, "completed")
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_resyncs_complete_in_one_process_and_every_trigger_still_works() {
    // Quiet logs: libtest keeps a test's output in memory, which would count as growth.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,lapin=error"))
        .with_test_writer()
        .try_init();
    let mut running = start_polling("forever", 1, 1).await;
    let entities = 2;
    let mut summaries = running
        .pipeline
        .resync_summaries
        .clone()
        .expect("publish runs here");
    let tracking = running
        .pipeline
        .reconcile_tracking
        .clone()
        .expect("publish runs here");
    running.pipeline.poll_mapping(&running.settings);

    // Start-up: the first resync.
    let mut last = next_completed(&running, &mut summaries, None, 1).await;
    assert_eq!(running.world.port.entity_count(), entities);

    let mut warm_rss = 0;
    for n in 1..=RESYNCS {
        let id = running.request_resync().await;
        let summary = next_completed(&running, &mut summaries, Some(last.resync_id), n + 1).await;
        assert_eq!(summary.resync_id, id, "resync {n} is the one requested");
        assert_eq!(summary.deleted, 0);
        last = summary;
        let held = *tracking.borrow();
        assert_eq!(held.open_resyncs, 0, "after resync {n}: {held:?}");
        assert!(held.ended_remembered <= ENDED_KEPT, "{held:?}");
        if n == RESYNCS / 5 {
            warm_rss = rss_kib();
        }
    }
    let grown_kib = rss_kib().saturating_sub(warm_rss);
    eprintln!(
        "{RESYNCS} resyncs: RSS grew {grown_kib} KiB after the first {}",
        RESYNCS / 5
    );
    assert!(
        grown_kib < 16 * 1024,
        "memory grows with resyncs: {grown_kib} KiB over {} resyncs",
        RESYNCS - RESYNCS / 5
    );
    let versions = running.pipeline.mapping.clone().expect("mapping");
    assert!(versions.kept() <= VERSIONS_KEPT);
    assert_eq!(running.world.port.entity_count(), entities);
    let mut count = RESYNCS + 1;

    // POST /resync on ingest.
    running.request_resync_over_http().await;
    count += 1;
    last = next_completed(&running, &mut summaries, Some(last.resync_id), count).await;

    // Port's resync request (POLLING).
    running.poll_port_resync_requests().await;
    running.world.port.request_resync();
    count += 1;
    last = next_completed(&running, &mut summaries, Some(last.resync_id), count).await;

    // Every resync so far was requested after the one before it completed: none was
    // superseded, none failed.
    assert_eq!(
        reported(&running, "failed") + reported(&running, "aborted"),
        0
    );

    // A schedule of 300 ms (a plain ticker: a deployment's schedule is the ingest leader's,
    // `ingest::leader`, in whole seconds at least).
    let stop_schedule = CancellationToken::new();
    let schedule = tokio::spawn(resync::schedule(
        running.bus.clone(),
        Duration::from_millis(300),
        stop_schedule.clone(),
    ));
    count += 1;
    next_completed(&running, &mut summaries, Some(last.resync_id), count).await;
    stop_schedule.cancel();
    schedule.await.expect("schedule stops");

    assert_eq!(running.world.port.entity_count(), entities);
    // On a loaded machine a resync can outlast 300 ms: the next tick's resync then supersedes
    // it before it is reconciled (Port is told `aborted`, nothing is deleted), which is the
    // schedule working as designed; a failure is not.
    assert_eq!(reported(&running, "failed"), 0);
    running.stop().await;
}
