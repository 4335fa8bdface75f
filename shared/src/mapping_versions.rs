//! Mapping versions: the port-app-config every role of a process follows, and how a new one
//! replaces it.
//!
//! One follower per process (the `adoport` binary reads the mapping file or Port) offers what
//! it reads here ([`MappingVersions::offer`]). A version is accepted only when it parses and the
//! validator the follower passes (the transform's compiler) accepts all of it; otherwise it is
//! refused with all its errors and the running version stays. Every role of the process reads
//! the same [`MappingVersions`]: ingest its crawl plan and service-hook subscriptions,
//! transform its compiled mapping and write options, publish its reconciliation policy.
//!
//! A version is named by its content ([`MappingVersionId`], a digest of the parsed config), so
//! every replica of every role that read the same mapping names it the same way. A resync
//! carries the id of the version it was crawled with; a process that does not know that
//! version yet asks its follower to read the source now and waits, bounded, for the answer
//! ([`MappingVersions::resolve`]). The last few accepted versions stay known, so that a resync
//! crawled just before a change is still mapped and reconciled with its own version.
//!
//! Nothing here does I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::messages::MappingVersionId;
use crate::port_app_config::PortAppConfig;

/// Accepted versions kept known (the one in force included): enough for the resyncs that
/// can be in flight across a few quick edits, small enough to be no memory concern.
pub const VERSIONS_KEPT: usize = 8;

/// Versions found missing from the source (by [`MappingVersions::resolve`]) that are not
/// looked for again.
const MISSING_KEPT: usize = 8;

/// One accepted mapping version.
#[derive(Debug)]
pub struct MappingVersion {
    pub id: MappingVersionId,
    /// 1 for the version this process started with, +1 per replacement (for logs).
    pub number: u64,
    pub config: PortAppConfig,
}

impl MappingVersion {
    /// The content id of a config: the first 8 bytes of the SHA-256 of its JSON form, in hex.
    pub fn id_of(config: &PortAppConfig) -> MappingVersionId {
        let json = serde_json::to_vec(config).unwrap_or_default();
        let digest = Sha256::digest(&json);
        MappingVersionId(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// What became of an offered version.
#[derive(Debug)]
pub enum Offer {
    /// The version in force: nothing to do.
    Unchanged,
    /// Accepted and now in force.
    Replaced {
        version: u64,
        id: MappingVersionId,
    },
    /// Refused, with every error found; the running version stays. Offering the same bad
    /// version again gives `AlreadyRefused` (so a follower logs it once).
    Refused(String),
    AlreadyRefused,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionStatus {
    /// The number of the version in force (1 for the one started with).
    pub version: u64,
    /// Versions refused so far.
    pub refused: u64,
    /// Why the last refused version was refused.
    pub last_refusal: Option<String>,
    /// Reads of the source the follower started, and the last one it finished.
    pub checks_started: u64,
    pub checks_finished: u64,
}

struct Inner {
    current: watch::Sender<Arc<MappingVersion>>,
    status: watch::Sender<VersionStatus>,
    /// Newest last; the one in force is the last.
    kept: Mutex<VecDeque<Arc<MappingVersion>>>,
    refused: Mutex<Option<Value>>,
    missing: Mutex<VecDeque<MappingVersionId>>,
    /// Followers attached (0: nobody reads the source, so nobody is asked to).
    followers: AtomicUsize,
    read_now: Notify,
}

/// The mapping versions of one process. Cheap to clone.
#[derive(Clone)]
pub struct MappingVersions {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MappingVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("MappingVersions")
            .field("version", &current.number)
            .field("id", &current.id)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single push, pop or read: a poisoned lock is still whole.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl MappingVersions {
    /// Starts with the mapping the process was started with (already validated).
    pub fn new(config: PortAppConfig) -> Self {
        let first = Arc::new(MappingVersion {
            id: MappingVersion::id_of(&config),
            number: 1,
            config,
        });
        Self {
            inner: Arc::new(Inner {
                current: watch::Sender::new(first.clone()),
                status: watch::Sender::new(VersionStatus {
                    version: 1,
                    ..VersionStatus::default()
                }),
                kept: Mutex::new(VecDeque::from([first])),
                refused: Mutex::new(None),
                missing: Mutex::new(VecDeque::new()),
                followers: AtomicUsize::new(0),
                read_now: Notify::new(),
            }),
        }
    }

    /// The version in force.
    pub fn current(&self) -> Arc<MappingVersion> {
        self.inner.current.borrow().clone()
    }

    /// Watches the version in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MappingVersion>> {
        self.inner.current.subscribe()
    }

    pub fn status(&self) -> watch::Receiver<VersionStatus> {
        self.inner.status.subscribe()
    }

    /// A version this process accepted recently, by id.
    pub fn get(&self, id: &MappingVersionId) -> Option<Arc<MappingVersion>> {
        lock(&self.inner.kept).iter().find(|v| v.id == *id).cloned()
    }

    /// How many versions are kept (bounded by [`VERSIONS_KEPT`]).
    pub fn kept(&self) -> usize {
        lock(&self.inner.kept).len()
    }

    /// Asks the follower to read the source now and waits until a read that started after
    /// this call has finished, at most `patience`. Returns at once (false) when no follower
    /// reads the source.
    pub async fn refresh(&self, patience: Duration) -> bool {
        if self.inner.followers.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut status = self.status();
        let started_before = status.borrow().checks_started;
        self.inner.read_now.notify_one();
        tokio::time::timeout(
            patience,
            status.wait_for(|s| s.checks_finished > started_before),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The version `id`: a kept one, or else the one a fresh read of the source brings (within
    /// `patience`). `None` when the source no longer has it (or cannot be read): the caller
    /// goes on with the version in force and says so. A version found missing once is not
    /// looked for again.
    pub async fn resolve(
        &self,
        id: &MappingVersionId,
        patience: Duration,
    ) -> Option<Arc<MappingVersion>> {
        if let Some(version) = self.get(id) {
            return Some(version);
        }
        if lock(&self.inner.missing).contains(id) {
            return None;
        }
        self.refresh(patience).await;
        let found = self.get(id);
        if found.is_none() {
            let mut missing = lock(&self.inner.missing);
            if !missing.contains(id) {
                if missing.len() == MISSING_KEPT {
                    missing.pop_front();
                }
                missing.push_back(id.clone());
            }
        }
        found
    }

    /// Offers a version read from the source: it replaces the running one only when it parses
    /// and `validate` accepts it (`validate` returns every error it finds, as text).
    pub fn offer(
        &self,
        raw: Value,
        validate: impl FnOnce(&PortAppConfig) -> Result<(), String>,
    ) -> Offer {
        if lock(&self.inner.refused).as_ref() == Some(&raw) {
            return Offer::AlreadyRefused;
        }
        let parsed = PortAppConfig::from_json_value(raw.clone())
            .map_err(|e| format!("not a valid port-app-config: {e}"));
        // The version in force again (the usual answer of a poll): nothing to validate.
        if let Ok(config) = &parsed
            && MappingVersion::id_of(config) == self.current().id
        {
            return Offer::Unchanged;
        }
        let checked = parsed.and_then(|config| validate(&config).map(|()| config));
        let config = match checked {
            Ok(config) => config,
            Err(reason) => {
                *lock(&self.inner.refused) = Some(raw);
                self.inner.status.send_modify(|s| {
                    s.refused += 1;
                    s.last_refusal = Some(reason.clone());
                });
                return Offer::Refused(reason);
            }
        };
        *lock(&self.inner.refused) = None;
        let id = MappingVersion::id_of(&config);
        let number = self.current().number + 1;
        let version = Arc::new(MappingVersion {
            id: id.clone(),
            number,
            config,
        });
        {
            let mut kept = lock(&self.inner.kept);
            kept.retain(|v| v.id != id);
            if kept.len() == VERSIONS_KEPT {
                kept.pop_front();
            }
            kept.push_back(version.clone());
        }
        lock(&self.inner.missing).retain(|m| *m != id);
        self.inner.current.send_replace(version);
        self.inner.status.send_modify(|s| s.version = number);
        Offer::Replaced {
            version: number,
            id,
        }
    }

    /// Registers the follower that reads the source; dropping the guard unregisters it.
    pub fn attach_follower(&self) -> FollowerGuard {
        self.inner.followers.fetch_add(1, Ordering::AcqRel);
        FollowerGuard {
            versions: self.clone(),
        }
    }
}

/// Held by the follower while it reads the source for a [`MappingVersions`].
pub struct FollowerGuard {
    versions: MappingVersions,
}

impl FollowerGuard {
    /// The versions this follower offers what it reads to.
    pub fn versions(&self) -> &MappingVersions {
        &self.versions
    }

    /// Resolves when someone asked for a read of the source now ([`MappingVersions::refresh`]).
    pub async fn read_requested(&self) {
        self.versions.inner.read_now.notified().await
    }

    /// A read of the source starts; finish it with [`SourceRead::finished`].
    pub fn read_started(&self) -> SourceRead<'_> {
        let mut number = 0;
        self.versions.inner.status.send_modify(|s| {
            s.checks_started += 1;
            number = s.checks_started;
        });
        SourceRead {
            guard: self,
            number,
        }
    }
}

impl Drop for FollowerGuard {
    fn drop(&mut self) {
        self.versions.inner.followers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One read of the source, in progress.
pub struct SourceRead<'a> {
    guard: &'a FollowerGuard,
    number: u64,
}

impl SourceRead<'_> {
    /// The read is over (whatever it found): waiters of [`MappingVersions::refresh`] go on.
    pub fn finished(self) {
        let number = self.number;
        self.guard
            .versions
            .inner
            .status
            .send_modify(|s| s.checks_finished = s.checks_finished.max(number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(kinds: &[&str]) -> Value {
        crate::port_app_config::minimal_json(kinds)
    }

    fn config(kinds: &[&str]) -> PortAppConfig {
        PortAppConfig::from_json_value(raw(kinds)).expect("valid")
    }

    #[test]
    fn the_same_content_has_the_same_id_in_every_process() {
        let a = MappingVersion::id_of(&config(&["project"]));
        assert_eq!(a, MappingVersion::id_of(&config(&["project"])));
        assert_ne!(
            a,
            MappingVersion::id_of(&config(&["project", "repository"]))
        );
        assert_eq!(a.0.len(), 16);
    }

    #[test]
    fn a_good_version_replaces_a_bad_one_is_refused_and_the_running_one_stays() {
        let versions = MappingVersions::new(config(&["project"]));
        let first = versions.current().id.clone();
        assert!(matches!(
            versions.offer(raw(&["project"]), |_| Ok(())),
            Offer::Unchanged
        ));
        match versions.offer(raw(&["project", "repository"]), |_| Ok(())) {
            Offer::Replaced { version: 2, .. } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(versions.current().config.kinds(), ["project", "repository"]);
        assert!(
            versions.get(&first).is_some(),
            "the older version stays known"
        );

        let bad = raw(&["team"]);
        let refusal = |_: &PortAppConfig| Err("a: nosuch; b: nosuch2".to_string());
        match versions.offer(bad.clone(), refusal) {
            Offer::Refused(reason) => assert!(reason.contains("nosuch2"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            versions.offer(bad, |_| Ok(())),
            Offer::AlreadyRefused
        ));
        assert_eq!(versions.current().number, 2, "the running version stays");
        match versions.offer(json!({"resources": [{"kind": 3}]}), |_| Ok(())) {
            Offer::Refused(reason) => assert!(reason.contains("resources[0]"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let status = versions.status().borrow().clone();
        assert_eq!((status.version, status.refused), (2, 2));
    }

    #[test]
    fn only_the_last_few_versions_are_kept() {
        let versions = MappingVersions::new(config(&["project"]));
        for n in 0..(VERSIONS_KEPT * 3) {
            let kind = format!("kind-{n}");
            versions.offer(raw(&[kind.as_str()]), |_| Ok(()));
        }
        assert_eq!(versions.kept(), VERSIONS_KEPT);
    }

    #[tokio::test]
    async fn resolve_reads_the_source_once_for_an_unknown_version() {
        let versions = MappingVersions::new(config(&["project"]));
        let wanted = MappingVersion::id_of(&config(&["project", "repository"]));
        // No follower: nothing to wait for.
        assert!(
            versions
                .resolve(&wanted, Duration::from_secs(5))
                .await
                .is_none()
        );

        let versions = MappingVersions::new(config(&["project"]));
        let follower = versions.attach_follower();
        let source = versions.clone();
        let reader = tokio::spawn(async move {
            for _ in 0..2 {
                follower.read_requested().await;
                let read = follower.read_started();
                source.offer(raw(&["project", "repository"]), |_| Ok(()));
                read.finished();
            }
        });
        let found = versions
            .resolve(&wanted, Duration::from_secs(5))
            .await
            .expect("the fresh read brings it");
        assert_eq!(found.number, 2);
        let gone = MappingVersion::id_of(&config(&["team"]));
        assert!(
            versions
                .resolve(&gone, Duration::from_secs(5))
                .await
                .is_none()
        );
        // Known missing: no third read is asked for (the reader ended after two).
        assert!(
            versions
                .resolve(&gone, Duration::from_secs(5))
                .await
                .is_none()
        );
        reader.await.expect("reader");
    }
}
