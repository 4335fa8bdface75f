//! Publish's retry rules over the shared Port client's: what an answer means
//! ([`adoport_shared::port::retry::classify`], [`classify_status`]: 429 honouring `Retry-After`, 5xx and no answer retried,
//! 413 split, other 4xx dead-lettered) and the schedule with its driver ([`RetryPolicy`],
//! [`Schedule::wait_next`], which stops waiting on shutdown) are
//! [`adoport_shared::port::retry`]'s; this module adds the decision for a [`PublishError`],
//! which may also be a failure of publish itself (never retried).
//!
//! Publish's bound on one write: `max_attempts` attempts *and* `retry_window` of retrying
//! (`ADOPORT__PUBLISH__RETRY_WINDOW_SECS`, 10 minutes by default), so that a Port outage
//! shorter than the window dead-letters nothing (a minute-long outage used to exhaust 8
//! attempts in ~30–60 s and dead-letter every change in flight; found by the chaos soak).

pub use adoport_shared::port::retry::{Next, Retry, RetryPolicy, Schedule, classify_status};

use crate::error::PublishError;

/// The decision for an error returned by the client (or by publish around it).
pub fn classify_error(error: &PublishError) -> Retry {
    match error {
        PublishError::Port(error) => adoport_shared::port::retry::classify_error(error),
        PublishError::Setup(_)
        | PublishError::Config(_)
        | PublishError::Bus(_)
        | PublishError::Decode(_) => Retry::DontRetry(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::port::PortError;
    use std::time::Duration;

    #[test]
    fn port_errors_are_classified_by_the_shared_classifier_and_ours_are_not_retried() {
        let throttled = PublishError::Port(PortError::Status {
            operation: "op".into(),
            request: "POST http://port/v1/op".into(),
            status: 429,
            excerpt: String::new(),
            trace_id: None,
            retry_after: Some(Duration::from_secs(4)),
        });
        assert_eq!(
            classify_error(&throttled),
            Retry::RetryAfter(Duration::from_secs(4))
        );
        let setup = PublishError::Setup("no mapping".into());
        assert!(matches!(classify_error(&setup), Retry::DontRetry(_)));
    }
}
