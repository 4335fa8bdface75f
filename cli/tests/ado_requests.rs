//! Azure DevOps requests against the fewest possible: a ONCE resync of a small organization
//! with the default mapping (every kind it names, GitOps included) makes at most 1.05 times the
//! minimum the simulator computes for that organization and mapping, in total and kind by kind
//! (the README's benchmark section states it).

use adoport::sim::default_mapping;

mod support;

use support::{allowed, once_request_report, organization, start_world};

#[tokio::test]
async fn a_default_mapping_resync_makes_at_most_1_05_times_the_minimum_requests() {
    let mapping = default_mapping(None).expect("the default mapping parses");
    let world = start_world(organization(3, 4), mapping.clone()).await;
    let report = once_request_report(&world, &mapping).await;
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
