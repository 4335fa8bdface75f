//! Azure DevOps requests against the fewest possible: a ONCE resync of a small organization
//! with the default mapping (every kind it names, GitOps included) makes at most 1.05 times the
//! minimum the simulator computes for that organization and mapping, in total and kind by kind
//! (the README's benchmark section states it).

use std::process::Stdio;
use std::time::Duration;

use adoport::sim::default_mapping;

mod support;

use support::{adoport, log_of_success, organization, start_world};

/// What 1.05 times `minimum` allows, rounded up (a row of 2 may take 3: at most one request
/// more than the minimum on any row).
fn allowed(minimum: u64) -> u64 {
    (minimum * 105).div_ceil(100)
}

#[tokio::test]
async fn a_default_mapping_resync_makes_at_most_1_05_times_the_minimum_requests() {
    let mapping = default_mapping(None).expect("the default mapping parses");
    let world = start_world(organization(3, 4), mapping.clone()).await;
    let mut command = adoport(&["all"], &world.environment(None), "warn");
    command
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the ONCE run finishes within 2 minutes")
        .expect("adoport runs");
    log_of_success(&output);
    let report = world.ado.request_report(&mapping);
    assert!(report.unmodeled.is_empty(), "{report}");
    assert!(
        report.made() <= allowed(report.minimum()),
        "more than 1.05 × the minimum:\n{report}"
    );
    for row in &report.rows {
        assert!(
            row.made <= allowed(row.minimum),
            "{} above 1.05 × its minimum:\n{report}",
            row.kind
        );
    }
    // Every kind of the mapping read something: the minimum is not met by reading nothing.
    assert!(
        report.rows.iter().all(|r| r.minimum == 0 || r.made > 0),
        "{report}"
    );
    world.shutdown().await;
}
