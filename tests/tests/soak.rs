//! The chaos soak, bounded (issue 13): the scaled-out stack — two `adoport` processes per role
//! on a private RabbitMQ node — under SIGKILLs of every role, a broker restart, a Port outage
//! (scaled down to the run's length), hand edits and deletes in Port (and emptying it), service
//! hooks retried, duplicated and delivered late as Azure DevOps does, forged deletes, a mapping
//! change and many resyncs; then, after the calm and one more resync, Port must equal what a
//! clean one-shot sync of the same Azure DevOps state lands, with nothing dead-lettered.
//!
//! About a minute and a half of wall time. Longer runs and other seeds:
//! `cargo run -p adoport-tests --release --bin soak -- --duration 30m --seed 42`.

use std::time::Duration;

use adoport_tests::soak::fleet::{Executable, Role};
use adoport_tests::soak::{SoakConfig, run};

/// A fixed seed: the same decisions on every run (the processes decide their own timing).
const SEED: u64 = 13;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_chaos_port_equals_a_clean_sync_and_nothing_is_dead_lettered() {
    let report = run(SoakConfig {
        duration: Duration::from_secs(80),
        seed: SEED,
        executable: Executable {
            // This package's `soak` binary runs `adoport` itself when asked (see its docs).
            program: env!("CARGO_BIN_EXE_soak").into(),
            arguments: vec!["adoport".into()],
        },
        projects: 4,
        repositories: 3,
        directory: None,
        port_outage: None,
    })
    .await
    .expect("the soak's harness runs");
    let text = report.render();
    println!("{text}");
    assert!(report.passed(), "{text}");

    // Every fault kind happened at least once: a pass proves something only then.
    for role in Role::ALL {
        assert!(
            report.fleet.kills.get(&role).copied().unwrap_or(0) >= 1,
            "no {} replica was killed\n{text}",
            role.name()
        );
    }
    assert_eq!(report.timeline.broker_restarts, 1, "{text}");
    assert!(report.timeline.port_outage_answers > 0, "{text}");
    assert!(report.timeline.mapping_changed_at.is_some(), "{text}");
    assert_eq!(report.timeline.port_emptied, 1, "{text}");
    for figure in ["retries", "duplicates", "late", "delivered"] {
        assert!(report.hooks[figure] > 0, "no webhook {figure}\n{text}");
    }
    for figure in ["created", "deleted", "forged deletes"] {
        assert!(
            report.ado_changes[figure] > 0,
            "no Azure DevOps change: {figure}\n{text}"
        );
    }
    assert!(report.hand_edits["deletes"] > 0, "{text}");
    assert!(report.hand_edits.values().sum::<u64>() >= 5, "{text}");
    assert!(
        report
            .resyncs_by_status
            .get("completed")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{text}"
    );
    assert!(report.final_resync.is_some(), "{text}");
    assert!(report.comparison.compared > 0, "{text}");
}
