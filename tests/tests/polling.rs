//! POLLING mode: a resync request made in Port (saving the mapping, the "Resync" button)
//! becomes a resync.

use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_tests::{BusKind, start, within};

const RESYNC_REQUEST: &str = "GET /v1/integration/{id}/resync-request";

#[tokio::test]
async fn a_resync_requested_in_port_runs() {
    let mut running = start(
        "polling",
        BusKind::Memory,
        Roles::ALL,
        1,
        2,
        &[
            ("OCEAN__EVENT_LISTENER__TYPE", "POLLING"),
            ("OCEAN__EVENT_LISTENER__INTERVAL", "1"),
        ],
    )
    .await;
    let first = running.resync_settled().await;
    assert_eq!(first.items(), 3);
    running
        .pipeline
        .poll_port_resync_requests(&running.settings)
        .expect("poller starts");
    // Once the poller has seen the current request, a newer one is a resync.
    let polled = running
        .world
        .port
        .wait_for(
            |port| port.requests().get(RESYNC_REQUEST).copied().unwrap_or(0) >= 1,
            Duration::from_secs(10),
        )
        .await;
    assert!(polled, "the poller reads Port's resync request");
    running.world.port.request_resync();
    let second = within(
        20,
        "the resync Port asked for",
        running.pipeline.next_resync(),
    )
    .await
    .expect("pipeline running");
    assert!(second.report.is_ok());
    running.stop().await;
}
