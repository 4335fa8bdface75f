//! The kinds ingest knows, by the names a mapping's `kind:` uses ([`Kind`]), and the handlers a
//! service-hook event can be routed to ([`Handler`]). The bottom layer: names only. What a
//! kind *is* (its crawl, selector, live handlers, whether it is read repository by repository)
//! is its row in `crate::kinds::KINDS`; which event type goes to which handler is
//! `crate::events::EVENTS`.
//!
//! A mapping may name a kind this version does not know: it stays a string in
//! [`crate::plan::KindPlan`], [`Kind::parse`] answers `None`, and the crawler reports it failed.

use std::fmt;

use adoport_shared::messages::GITOPS_KIND;

/// Declares [`Kind`] with the name of each variant, so that a name is written once.
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:expr,)*) => {
        /// A kind ingest crawls or publishes, named as in the mapping.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The mapping's name of the kind, e.g. `pull-request`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    Project = "project",
    Repository = "repository",
    RepositoryPolicy = "repository-policy",
    PullRequest = "pull-request",
    Branch = "branch",
    File = "file",
    Folder = "folder",
    Wiki = "wiki",
    AdvancedSecurityAlert = "advanced-security-alert",
    Team = "team",
    Member = "member",
    Iteration = "iteration",
    AreaPath = "area-path",
    User = "user",
    Group = "group",
    GroupMember = "group-member",
    Board = "board",
    Column = "column",
    WorkItem = "work-item",
    Release = "release",
    Pipeline = "pipeline",
    Build = "build",
    Environment = "environment",
    ReleaseDefinition = "release-definition",
    ReleaseDeployment = "release-deployment",
    PipelineRun = "pipeline-run",
    PipelineStage = "pipeline-stage",
    PipelineDeployment = "pipeline-deployment",
    TestRun = "test-run",
    /// The reserved kind of GitOps entities (`port.yml` specs), appended to every plan with a
    /// `specPath`.
    Gitops = GITOPS_KIND,
}

impl Kind {
    /// The kind a mapping's `kind:` names, if this version knows it.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq<Kind> for &str {
    fn eq(&self, kind: &Kind) -> bool {
        *self == kind.name()
    }
}

impl PartialEq<Kind> for String {
    fn eq(&self, kind: &Kind) -> bool {
        self == kind.name()
    }
}

/// What handles a service-hook event: which object it names and how it is read again
/// (`crate::live_events`), and for [`Handler::Push`] also what the push changed
/// (`crate::push_events`, `crate::gitops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handler {
    /// A repository created, renamed, deleted or whose status changed.
    Repository,
    /// A push: the repository again, and the branches, files, folders, wiki pages and GitOps
    /// specs it changed.
    Push,
    PullRequest,
    WorkItem,
    /// A completed build (and the test runs of it).
    Build,
    PipelineRun,
    PipelineStage,
    /// A pipeline check that names its pipeline.
    Pipeline,
    /// A release (and its definition).
    Release,
    ReleaseDeployment,
    Alert,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name_and_names_are_distinct() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Some(*kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        assert_eq!(Kind::parse("no-such-kind"), None);
        let owned = String::from("work-item");
        assert!("work-item" == Kind::WorkItem && owned == Kind::WorkItem);
        assert!("work-items" != Kind::WorkItem);
        assert_eq!(Kind::Gitops.name(), "gitops");
    }
}
