//! POLLING mode: a resync request made in Port (saving the mapping, the "Resync" button)
//! becomes a resync.

use adoport_tests::{start_polling, within};

#[tokio::test]
async fn a_resync_requested_in_port_runs() {
    let mut running = start_polling("polling", 1, 2).await;
    let first = running.resync_settled().await;
    assert_eq!(first.items(), 3);
    // Once the poller has seen the current request, a newer one is a resync.
    running.poll_port_resync_requests().await;
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
