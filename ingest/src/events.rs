//! The one table of service-hook event types ([`EVENTS`]), from subscription to handler: who
//! publishes each, which [`Handler`] the receiver routes it to, which kinds it updates and when
//! it is subscribed. The subscription manager subscribes from it, the receiver routes by it,
//! and `crate::live_events` resolves each handler. The bottom layer: it names kinds and
//! handlers only.

use crate::kind::{Handler, Kind};

/// When an event type is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribe {
    /// When the mapping has one of the kinds it updates.
    WhenMapped,
    /// Whatever the mapping's kinds, for this reason.
    Always(&'static str),
    /// Never by this integration (handled when it arrives, e.g. from a subscription made by
    /// hand), for this reason.
    Never(&'static str),
}

/// One event type Azure DevOps can send us, who publishes it and what handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// The service hook's publisher (`tfs`, `pipelines`, `rm`, `advsec`).
    pub publisher: &'static str,
    pub event_type: &'static str,
    pub handler: Handler,
    /// The kinds it updates.
    pub kinds: &'static [Kind],
    pub subscribe: Subscribe,
}

impl EventType {
    /// Whether the subscription manager subscribes it for a mapping with `mapped` kinds.
    pub fn subscribed_for(&self, mapped: impl Fn(Kind) -> bool) -> bool {
        match self.subscribe {
            Subscribe::Always(_) => true,
            Subscribe::Never(_) => false,
            Subscribe::WhenMapped => self.kinds.iter().any(|kind| mapped(*kind)),
        }
    }
}

const fn event(
    publisher: &'static str,
    event_type: &'static str,
    handler: Handler,
    kinds: &'static [Kind],
) -> EventType {
    EventType {
        publisher,
        event_type,
        handler,
        kinds,
        subscribe: Subscribe::WhenMapped,
    }
}

const REPOSITORY: &[Kind] = &[Kind::Repository];
const PULL_REQUEST: &[Kind] = &[Kind::PullRequest];
const WORK_ITEM: &[Kind] = &[Kind::WorkItem];
const STAGE: &[Kind] = &[Kind::PipelineStage];
const RELEASE: &[Kind] = &[Kind::Release, Kind::ReleaseDefinition];
const DEPLOYMENT: &[Kind] = &[Kind::ReleaseDeployment];
const ALERT: &[Kind] = &[Kind::AdvancedSecurityAlert];

/// Every event type the webhook receiver handles, in subscription order: the Python
/// integration's 23 plus `git.repo.renamed`, `git.repo.deleted` and `git.pullrequest.merged`,
/// and `git.repo.statuschanged`, handled but not subscribed.
pub const EVENTS: &[EventType] = &[
    EventType {
        publisher: "tfs",
        event_type: "git.push",
        handler: Handler::Push,
        kinds: &[
            Kind::Repository,
            Kind::Branch,
            Kind::File,
            Kind::Folder,
            Kind::Wiki,
        ],
        subscribe: Subscribe::Always(
            "git.push handling: files, folders, branches, GitOps port.yml, repository refresh",
        ),
    },
    event("tfs", "git.repo.created", Handler::Repository, REPOSITORY),
    event("tfs", "git.repo.renamed", Handler::Repository, REPOSITORY),
    event("tfs", "git.repo.deleted", Handler::Repository, REPOSITORY),
    EventType {
        publisher: "tfs",
        event_type: "git.repo.statuschanged",
        handler: Handler::Repository,
        kinds: REPOSITORY,
        subscribe: Subscribe::Never(
            "the Python integration does not subscribe it; a push or a resync refreshes the repository",
        ),
    },
    event(
        "tfs",
        "git.pullrequest.created",
        Handler::PullRequest,
        PULL_REQUEST,
    ),
    event(
        "tfs",
        "git.pullrequest.updated",
        Handler::PullRequest,
        PULL_REQUEST,
    ),
    event(
        "tfs",
        "git.pullrequest.merged",
        Handler::PullRequest,
        PULL_REQUEST,
    ),
    event("tfs", "workitem.created", Handler::WorkItem, WORK_ITEM),
    event("tfs", "workitem.updated", Handler::WorkItem, WORK_ITEM),
    event("tfs", "workitem.deleted", Handler::WorkItem, WORK_ITEM),
    event("tfs", "workitem.restored", Handler::WorkItem, WORK_ITEM),
    event("tfs", "workitem.commented", Handler::WorkItem, WORK_ITEM),
    event(
        "tfs",
        "build.complete",
        Handler::Build,
        &[Kind::Build, Kind::TestRun],
    ),
    EventType {
        publisher: "pipelines",
        event_type: "ms.vss-pipelines.run-state-changed-event",
        handler: Handler::PipelineRun,
        kinds: &[Kind::PipelineRun],
        subscribe: Subscribe::Always("completion of the trigger_pipeline action"),
    },
    event(
        "pipelines",
        "ms.vss-pipelines.stage-state-changed-event",
        Handler::PipelineStage,
        STAGE,
    ),
    event(
        "pipelines",
        "ms.vss-pipelines.job-state-changed-event",
        Handler::PipelineStage,
        STAGE,
    ),
    event(
        "pipelines",
        "ms.vss-pipelinechecks-events.approval-pending",
        Handler::PipelineStage,
        STAGE,
    ),
    event(
        "pipelines",
        "ms.vss-pipelinechecks-events.approval-completed",
        Handler::PipelineStage,
        STAGE,
    ),
    event(
        "pipelines",
        "ms.vss-pipelinechecks-events.check-updated-event",
        Handler::Pipeline,
        &[Kind::Pipeline],
    ),
    event(
        "rm",
        "ms.vss-release.release-created-event",
        Handler::Release,
        RELEASE,
    ),
    event(
        "rm",
        "ms.vss-release.release-abandoned-event",
        Handler::Release,
        RELEASE,
    ),
    event(
        "rm",
        "ms.vss-release.deployment-started-event",
        Handler::ReleaseDeployment,
        DEPLOYMENT,
    ),
    event(
        "rm",
        "ms.vss-release.deployment-completed-event",
        Handler::ReleaseDeployment,
        DEPLOYMENT,
    ),
    event(
        "advsec",
        "ms.vss-alerts.alert-created-event",
        Handler::Alert,
        ALERT,
    ),
    event(
        "advsec",
        "ms.vss-alerts.alert-state-changed-event",
        Handler::Alert,
        ALERT,
    ),
    event(
        "advsec",
        "ms.vss-alerts.alert-updated-event",
        Handler::Alert,
        ALERT,
    ),
];

/// The row of `event_type`, when the receiver handles it (others are acknowledged and ignored).
pub fn event_type(event_type: &str) -> Option<&'static EventType> {
    EVENTS.iter().find(|e| e.event_type == event_type)
}

/// The event types the subscription manager may subscribe, in subscription order.
pub fn subscribable() -> impl Iterator<Item = &'static EventType> {
    EVENTS
        .iter()
        .filter(|e| !matches!(e.subscribe, Subscribe::Never(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_distinct_and_every_one_updates_a_kind() {
        let mut names: Vec<&str> = EVENTS.iter().map(|e| e.event_type).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EVENTS.len());
        for event in EVENTS {
            assert!(
                !event.kinds.is_empty(),
                "{} updates no kind",
                event.event_type
            );
            assert!(
                ["tfs", "pipelines", "rm", "advsec"].contains(&event.publisher),
                "{}: publisher {}",
                event.event_type,
                event.publisher
            );
        }
    }

    #[test]
    fn every_handled_event_is_subscribed_when_its_kinds_are_mapped() {
        for event in EVENTS {
            let subscribed = event.subscribed_for(|kind| event.kinds.contains(&kind));
            assert_eq!(
                subscribed,
                !matches!(event.subscribe, Subscribe::Never(_)),
                "{}",
                event.event_type
            );
            if let Subscribe::WhenMapped = event.subscribe {
                assert!(!event.subscribed_for(|_| false), "{}", event.event_type);
            }
        }
        assert_eq!(subscribable().count(), 26);
        assert_eq!(
            event_type("git.repo.statuschanged").map(|e| e.subscribe),
            Some(Subscribe::Never(
                "the Python integration does not subscribe it; a push or a resync refreshes the repository"
            ))
        );
        assert!(event_type("git.repo.forked").is_none());
    }
}
