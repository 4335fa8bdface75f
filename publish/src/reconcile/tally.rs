//! What the coordinator knows about one resync: its crawl attempts, what transform reported
//! for each, and whether one of them is complete.
//!
//! A resync may be crawled more than once: ingest killed mid-crawl and its request delivered
//! again, or a request lost by one crawler and handed to another. Each crawl is an attempt with
//! its own id, carried by its raw events and so by transform's progress. Completion counts the
//! events of one attempt whose crawl finished — never a mix, so leftovers of an interrupted
//! attempt cannot make a resync look complete early. Progress of every attempt adds to the
//! produced set (more produced means fewer deletes: safe), and the earliest attempt's start
//! bounds the listing of owned entities, so nothing any attempt wrote is a deletion candidate.
//!
//! Events are counted per crawl unit (`messages::crawl_unit_key`: a kind, or a kind and the
//! mapping resources that share one selector), as ingest reports them. The summary is per
//! mapping resource, as Ocean reports a resync: a resource's items crawled are those of the
//! units read for it, its entities and failures what transform reported for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use adoport_shared::messages::{
    AttemptId, KindCrawl, MappingVersionId, ResourceProgress, crawl_unit_key, crawl_unit_kind,
    describe_crawl_unit,
};
use adoport_shared::port_app_config::PortAppConfig;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::ResourceSummary;
use super::barrier::{Barrier, Passed};
use crate::fingerprint::KeySet;

/// Attempts tracked per resync; the oldest is forgotten past it (its produced entities stay).
pub(crate) const ATTEMPTS_KEPT: usize = 8;

/// How a crawl ended, as ingest reported it.
#[derive(Debug, Default)]
pub(crate) struct CrawlEnd {
    pub(crate) kinds: BTreeMap<String, KindCrawl>,
    pub(crate) failure: Option<String>,
}

/// One crawl attempt of a resync.
#[derive(Debug, Default)]
pub(crate) struct AttemptTally {
    /// The mapping version it crawled with (from its `Started`).
    pub(crate) mapping_version: Option<MappingVersionId>,
    /// Set by its `CrawlFinished`.
    pub(crate) crawl: Option<CrawlEnd>,
    /// Raw events reported per crawl unit (distinct ids: a redelivery counts once).
    pub(crate) seen: HashMap<String, HashSet<Uuid>>,
    pub(crate) failed_items: BTreeMap<String, u64>,
    /// Entities produced per kind (counted per distinct raw event, even past the bound).
    pub(crate) produced_per_kind: BTreeMap<String, u64>,
    /// Mapping versions transform used for this attempt's events.
    pub(crate) versions_used: BTreeSet<MappingVersionId>,
    /// What transform made of the events per mapping resource (kind, index): at most one
    /// entry per resource of the mappings the attempt was mapped with.
    pub(crate) per_resource: BTreeMap<(String, u32), Mapped>,
}

/// One mapping resource's share of an attempt's events, as transform reported it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub(crate) produced: u64,
    pub(crate) failed_items: u64,
}

impl AttemptTally {
    /// Its crawl finished and transform reported every raw event it published.
    fn complete(&self) -> bool {
        self.crawl.as_ref().is_some_and(|crawl| {
            crawl
                .kinds
                .iter()
                .all(|(kind, k)| self.seen.get(kind).map_or(0, |s| s.len() as u64) >= k.events)
        })
    }
}

/// What happened to one progress report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Counted,
    /// The same raw event again (a redelivery): nothing changed.
    AlreadyCounted,
    /// It did not fit the coordinator's bound: the resync will not delete anything.
    Overflowed,
}

/// One progress report of transform, for [`Tally::progress`].
pub(crate) struct Reported {
    pub(crate) attempt: Option<AttemptId>,
    pub(crate) kind: String,
    pub(crate) raw_event_id: Uuid,
    pub(crate) produced: Vec<(String, String)>,
    pub(crate) related: Vec<String>,
    pub(crate) failed_items: u64,
    pub(crate) mapping_version: Option<MappingVersionId>,
    /// The raw event's mapping resources (its crawl unit, with `kind`).
    pub(crate) resources: Option<Vec<u32>>,
    /// What each resource that mapped it made of it.
    pub(crate) per_resource: Vec<ResourceProgress>,
}

/// What the coordinator knows about one resync.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The earliest attempt's start.
    pub(crate) started_at: Option<DateTime<Utc>>,
    /// Attempts in the order they were first heard of (`None`: messages without an attempt id,
    /// from an older ingest).
    attempts: Vec<(Option<AttemptId>, AttemptTally)>,
    /// `(blueprint, identifier)` of every entity any attempt produced, as fingerprints (8
    /// bytes each, whatever the identifiers' length). Compacted ([`Tally::compact`]) before it
    /// is looked up or counted.
    pub(crate) produced: KeySet,
    /// Relation targets named by them, as fingerprints (compacted with `produced`).
    pub(crate) related: KeySet,
    pub(crate) overflowed: bool,
    pub(crate) last_news: Option<Instant>,
    /// The barriers sent to the change partitions once an attempt was complete; the resync
    /// completes when they all passed.
    pub(crate) barrier: Option<Barrier>,
}

impl Tally {
    /// Keys held in the produced set and the relation targets: distinct once compacted; until
    /// then a key reported again may count more than once.
    pub(crate) fn tracked(&self) -> usize {
        self.produced.len() + self.related.len()
    }

    /// Compacts the produced set and the relation targets (duplicates dropped, sorted): before
    /// the reconciliation looks keys up and counts them, and before a report is found not to
    /// fit the bound.
    pub(crate) fn compact(&mut self) {
        self.produced.compact();
        self.related.compact();
    }

    /// Keys reported since the sets were last compacted: at most this many could be repeats
    /// that [`Tally::compact`] would drop.
    pub(crate) fn uncompacted(&self) -> usize {
        self.produced.uncompacted() + self.related.uncompacted()
    }

    /// Bytes the produced set and the relation targets take.
    pub(crate) fn tracked_bytes(&self) -> usize {
        self.produced.bytes() + self.related.bytes()
    }

    /// The tally of `attempt`, added if new (forgetting the oldest past [`ATTEMPTS_KEPT`]).
    fn attempt(&mut self, attempt: Option<AttemptId>) -> &mut AttemptTally {
        self.last_news = Some(Instant::now());
        let index = match self.attempts.iter().position(|(a, _)| *a == attempt) {
            Some(index) => index,
            None => {
                if self.attempts.len() == ATTEMPTS_KEPT {
                    self.attempts.remove(0);
                }
                self.attempts.push((attempt, AttemptTally::default()));
                self.attempts.len() - 1
            }
        };
        &mut self.attempts[index].1
    }

    /// The attempts heard of (at most [`ATTEMPTS_KEPT`]).
    pub(crate) fn attempt_ids(&self) -> Vec<Option<AttemptId>> {
        self.attempts.iter().map(|(attempt, _)| *attempt).collect()
    }

    /// A crawl attempt started.
    pub(crate) fn started(
        &mut self,
        started_at: DateTime<Utc>,
        attempt: Option<AttemptId>,
        mapping_version: Option<MappingVersionId>,
    ) {
        self.started_at = Some(self.started_at.map_or(started_at, |s| s.min(started_at)));
        self.attempt(attempt).mapping_version = mapping_version;
    }

    /// A crawl attempt finished publishing.
    pub(crate) fn crawl_finished(
        &mut self,
        started_at: DateTime<Utc>,
        attempt: Option<AttemptId>,
        kinds: BTreeMap<String, KindCrawl>,
        failure: Option<String>,
    ) {
        self.started_at = Some(self.started_at.map_or(started_at, |s| s.min(started_at)));
        self.attempt(attempt).crawl = Some(CrawlEnd { kinds, failure });
    }

    /// Transform's report of one raw event; `room` is how many more keys the coordinator may
    /// hold (`Resyncs::progress` compacts the sets before it passes a room too small for the
    /// report, when dropping the keys held twice could make the room: they would make it
    /// overflow early).
    pub(crate) fn progress(&mut self, report: Reported, room: usize) -> Progress {
        let Reported {
            attempt,
            kind,
            raw_event_id,
            produced,
            related,
            failed_items,
            mapping_version,
            resources,
            per_resource,
        } = report;
        let tally = self.attempt(attempt);
        if !tally
            .seen
            .entry(crawl_unit_key(&kind, resources.as_deref()))
            .or_default()
            .insert(raw_event_id)
        {
            return Progress::AlreadyCounted;
        }
        for resource in per_resource {
            let mapped = (tally.per_resource)
                .entry((kind.clone(), resource.resource))
                .or_default();
            mapped.produced += resource.produced;
            mapped.failed_items += resource.failed_items;
        }
        *tally.produced_per_kind.entry(kind.clone()).or_default() += produced.len() as u64;
        *tally.failed_items.entry(kind).or_default() += failed_items;
        if let Some(version) = mapping_version {
            tally.versions_used.insert(version);
        }
        if self.overflowed {
            return Progress::Counted;
        }
        if produced.len() + related.len() > room {
            self.overflowed = true;
            self.produced = KeySet::new();
            self.related = KeySet::new();
            return Progress::Overflowed;
        }
        for (blueprint, identifier) in &produced {
            self.produced.insert(&[blueprint, identifier]);
        }
        for identifier in &related {
            self.related.insert(&[identifier]);
        }
        Progress::Counted
    }

    /// A partition reported that publish settled every change before the barrier.
    pub(crate) fn barrier_passed(
        &mut self,
        barrier_id: Uuid,
        partition: u16,
        dead_lettered: u64,
    ) -> Passed {
        let Some(barrier) = self.barrier.as_mut() else {
            return Passed::Foreign;
        };
        let passed = barrier.pass(barrier_id, partition, dead_lettered);
        if passed == Passed::Counted {
            self.last_news = Some(Instant::now());
        }
        passed
    }

    /// Every change of the complete attempt is settled by publish: every partition passed the
    /// barrier.
    pub(crate) fn settled(&self) -> bool {
        self.barrier.as_ref().is_some_and(Barrier::all_passed)
    }

    /// Changes of the resync publish dead-lettered (reported with the barriers).
    pub(crate) fn changes_dead_lettered(&self) -> u64 {
        self.barrier.as_ref().map_or(0, |b| b.dead_lettered)
    }

    /// The first attempt whose crawl finished and whose every raw event was reported.
    pub(crate) fn complete_attempt(&self) -> Option<&AttemptTally> {
        self.attempts
            .iter()
            .map(|(_, tally)| tally)
            .find(|tally| tally.complete())
    }

    /// The id of the first complete attempt (`None` too for an attempt without an id).
    pub(crate) fn complete_attempt_id(&self) -> Option<AttemptId> {
        self.attempts
            .iter()
            .find(|(_, tally)| tally.complete())
            .and_then(|(attempt, _)| *attempt)
    }

    pub(crate) fn complete(&self) -> bool {
        self.complete_attempt().is_some()
    }

    /// The mapping version the complete attempt was crawled with.
    pub(crate) fn mapping_version(&self) -> Option<&MappingVersionId> {
        self.complete_attempt()?.mapping_version.as_ref()
    }

    /// Why nothing may be deleted, if anything forbids it.
    pub(crate) fn incomplete_reason(&self) -> Option<String> {
        let Some(attempt) = self.complete_attempt() else {
            return Some("no crawl of the resync was complete".into());
        };
        let crawl = attempt.crawl.as_ref()?;
        if let Some(failure) = &crawl.failure {
            return Some(format!("the crawl failed: {failure}"));
        }
        let failed: Vec<String> = crawl
            .kinds
            .iter()
            .filter_map(|(unit, k)| {
                (k.failure.as_ref()).map(|f| match unit.contains('#') {
                    true => format!("{} ({f})", describe_crawl_unit(unit)),
                    false => format!("{unit} ({f})"),
                })
            })
            .collect();
        if !failed.is_empty() {
            return Some(format!("kinds failed to crawl: {}", failed.join("; ")));
        }
        let unmapped: Vec<String> = attempt
            .failed_items
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        if !unmapped.is_empty() {
            return Some(format!(
                "items the mapping could not handle (see transform's problem summary): {}",
                unmapped.join(", ")
            ));
        }
        if let Some(crawled_with) = &attempt.mapping_version {
            let others: Vec<&str> = attempt
                .versions_used
                .iter()
                .filter(|v| *v != crawled_with)
                .map(|v| v.0.as_str())
                .collect();
            if !others.is_empty() {
                return Some(format!(
                    "the resync was crawled with mapping version {crawled_with} but transform mapped part of it with {} (the mapping changed again during the resync and transform could not find the crawl's version); the next resync reconciles",
                    others.join(", ")
                ));
            }
        }
        let refused = self.changes_dead_lettered();
        if refused > 0 {
            return Some(format!(
                "Port refused {refused} change(s) of the resync, which publish dead-lettered (see the port.changes DLQ: `adoport dlq`); nothing deleted"
            ));
        }
        if self.overflowed {
            return Some(
                "the resync produced more entities than the coordinator tracks (max_tracked)"
                    .into(),
            );
        }
        None
    }

    /// Per mapping resource (every resource of `mapping`, the mapping the resync was crawled
    /// with, in its order; then any resource transform reported that it lacks), from the
    /// complete attempt, else the latest one: items crawled for it, entities it produced,
    /// items it could not map, and why its crawl failed. Without a mapping, the resources
    /// transform reported.
    pub(crate) fn resource_summaries(
        &self,
        mapping: Option<&PortAppConfig>,
    ) -> Vec<ResourceSummary> {
        let mut resources: Vec<ResourceSummary> = mapping
            .map(|mapping| {
                (mapping.resources.iter().enumerate())
                    .map(|(index, resource)| ResourceSummary {
                        kind: resource.kind.clone(),
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        blueprint: resource.port.entity.mappings.blueprint.as_str().to_string(),
                        ..ResourceSummary::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(attempt) = self
            .complete_attempt()
            .or_else(|| self.attempts.last().map(|(_, t)| t))
        else {
            return resources;
        };
        for (kind, index) in attempt.per_resource.keys() {
            if !resources
                .iter()
                .any(|r| r.kind == *kind && r.index == *index)
            {
                resources.push(ResourceSummary {
                    kind: kind.clone(),
                    index: *index,
                    ..ResourceSummary::default()
                });
            }
        }
        let global_failure = attempt.crawl.as_ref().and_then(|c| c.failure.clone());
        for resource in &mut resources {
            for (unit, crawl) in attempt.crawl.iter().flat_map(|c| c.kinds.iter()) {
                if !unit_covers(unit, &resource.kind, resource.index) {
                    continue;
                }
                resource.items_crawled += crawl.items;
                if let Some(failure) = &crawl.failure {
                    resource.crawl_failure = Some(match resource.crawl_failure.take() {
                        Some(earlier) => format!("{earlier}; {failure}"),
                        None => failure.clone(),
                    });
                }
            }
            if resource.crawl_failure.is_none() {
                resource.crawl_failure = global_failure.clone();
            }
            if let Some(mapped) =
                (attempt.per_resource).get(&(resource.kind.clone(), resource.index))
            {
                resource.entities_produced = mapped.produced;
                resource.failed_items = mapped.failed_items;
            }
        }
        resources
    }
}

/// Whether the crawl unit `unit` was read for mapping resource `index` of `kind`: a unit of
/// the kind alone is read for every resource of it; `kind#i,j` for resources i and j.
fn unit_covers(unit: &str, kind: &str, index: u32) -> bool {
    if crawl_unit_kind(unit) != kind {
        return false;
    }
    match unit.split_once('#') {
        None => true,
        Some((_, indices)) => indices
            .split(',')
            .any(|i| i.parse::<u32>().is_ok_and(|i| i == index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crawl(kinds: &[(&str, u64, Option<&str>)]) -> BTreeMap<String, KindCrawl> {
        kinds
            .iter()
            .map(|(k, events, failure)| {
                (
                    k.to_string(),
                    KindCrawl {
                        events: *events,
                        items: *events,
                        failure: failure.map(String::from),
                    },
                )
            })
            .collect()
    }

    fn report(attempt: Option<AttemptId>, kind: &str, id: Uuid, entity: &str) -> Reported {
        Reported {
            attempt,
            kind: kind.into(),
            raw_event_id: id,
            produced: vec![("b".into(), entity.into())],
            related: Vec::new(),
            failed_items: 0,
            mapping_version: None,
            resources: None,
            per_resource: vec![ResourceProgress {
                resource: 0,
                items: 1,
                produced: 1,
                failed_items: 0,
            }],
        }
    }

    /// A mapping of `kinds`' resources, in order, each with its own blueprint.
    fn mapping(kinds: &[&str]) -> PortAppConfig {
        let resources: Vec<serde_json::Value> = (kinds.iter().enumerate())
            .map(|(i, kind)| {
                serde_json::json!({
                    "kind": kind,
                    "selector": {"query": "true"},
                    "port": {"entity": {"mappings": {
                        "identifier": ".id", "blueprint": format!("\"b{i}\"")
                    }}},
                })
            })
            .collect();
        PortAppConfig::from_json_value(serde_json::json!({ "resources": resources }))
            .expect("mapping")
    }

    #[test]
    fn a_resync_is_complete_when_every_event_of_its_crawl_is_reported() {
        let mut tally = Tally::default();
        assert!(!tally.complete(), "no crawl end yet");
        let now = Utc::now();
        tally.crawl_finished(
            now,
            None,
            crawl(&[("project", 1, None), ("repository", 2, None)]),
            None,
        );
        let room = usize::MAX;
        tally.progress(report(None, "project", Uuid::new_v4(), "p"), room);
        assert!(!tally.complete());
        let id = Uuid::new_v4();
        assert_eq!(
            tally.progress(report(None, "repository", id, "r1"), room),
            Progress::Counted
        );
        assert_eq!(
            tally.progress(report(None, "repository", id, "r1"), room),
            Progress::AlreadyCounted,
            "a redelivery counts once"
        );
        assert!(!tally.complete());
        tally.progress(report(None, "repository", Uuid::new_v4(), "r2"), room);
        assert!(tally.complete());
        assert_eq!(tally.incomplete_reason(), None);
    }

    #[test]
    fn only_the_attempt_that_finished_counts_and_every_attempt_adds_to_what_is_kept() {
        let mut tally = Tally::default();
        let (first, second) = (AttemptId::new(), AttemptId::new());
        let t0 = Utc::now();
        tally.started(t0, Some(first), None);
        // The first crawl published two repository pages, then ingest was killed.
        let room = usize::MAX;
        tally.progress(
            report(Some(first), "repository", Uuid::new_v4(), "r1"),
            room,
        );
        tally.progress(
            report(Some(first), "repository", Uuid::new_v4(), "r2"),
            room,
        );
        // The request came back: a second crawl of three pages finished.
        tally.started(t0 + chrono::Duration::seconds(5), Some(second), None);
        tally.crawl_finished(
            t0 + chrono::Duration::seconds(5),
            Some(second),
            crawl(&[("repository", 3, None)]),
            None,
        );
        assert!(
            !tally.complete(),
            "the first attempt's two events do not stand in for the second's"
        );
        tally.progress(
            report(Some(second), "repository", Uuid::new_v4(), "r1"),
            room,
        );
        tally.progress(
            report(Some(second), "repository", Uuid::new_v4(), "r2"),
            room,
        );
        assert!(!tally.complete());
        tally.progress(
            report(Some(second), "repository", Uuid::new_v4(), "r3"),
            room,
        );
        assert!(tally.complete());
        assert_eq!(
            tally.started_at,
            Some(t0),
            "the earliest start bounds the listing"
        );
        tally.compact();
        assert_eq!(tally.produced.len(), 3);
        let summary = tally.resource_summaries(Some(&mapping(&["repository"])));
        assert_eq!(
            (summary.len(), summary[0].entities_produced),
            (1, 3),
            "the summary is the complete attempt's"
        );
    }

    #[test]
    fn units_of_a_kind_are_counted_apart_and_a_failed_unit_forbids_deletion_naming_its_resources() {
        let now = Utc::now();
        let mut tally = Tally::default();
        tally.crawl_finished(
            now,
            None,
            crawl(&[
                ("work-item#0,1", 1, None),
                ("work-item#3", 1, Some("HTTP 400: the wiql does not parse")),
            ]),
            None,
        );
        // Each resource of a unit maps its items on its own: resource 1's selector takes none.
        let unit = |resources: &[u32], entity: &str| Reported {
            resources: Some(resources.to_vec()),
            per_resource: (resources.iter())
                .map(|&resource| ResourceProgress {
                    resource,
                    items: 1,
                    produced: u64::from(resource != 1),
                    failed_items: 0,
                })
                .collect(),
            ..report(None, "work-item", Uuid::new_v4(), entity)
        };
        tally.progress(unit(&[0, 1], "w1"), usize::MAX);
        assert!(
            !tally.complete(),
            "one unit's event does not stand in for the other's"
        );
        tally.progress(unit(&[3], "w2"), usize::MAX);
        assert!(tally.complete());
        assert_eq!(
            tally.incomplete_reason().as_deref(),
            Some(
                "kinds failed to crawl: kind work-item (mapping resource 3) (HTTP 400: the wiql does not parse)"
            )
        );
        let mapping = mapping(&["work-item", "work-item", "file", "work-item"]);
        let summary = tally.resource_summaries(Some(&mapping));
        let figures: Vec<(&str, u32, &str, u64, u64, bool)> = (summary.iter())
            .map(|r| {
                let (kind, blueprint) = (r.kind.as_str(), r.blueprint.as_str());
                let failed = r.crawl_failure.is_some();
                (
                    kind,
                    r.index,
                    blueprint,
                    r.items_crawled,
                    r.entities_produced,
                    failed,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [
                ("work-item", 0, "\"b0\"", 1, 1, false),
                ("work-item", 1, "\"b1\"", 1, 0, false),
                ("file", 2, "\"b2\"", 0, 0, false),
                ("work-item", 3, "\"b3\"", 1, 1, true),
            ],
            "one line per resource of the mapping, each with its own unit's figures"
        );
    }

    #[test]
    fn failures_forbid_deletion_with_a_reason() {
        let now = Utc::now();
        let mut tally = Tally::default();
        tally.crawl_finished(
            now,
            None,
            crawl(&[("project", 0, None), ("repository", 0, Some("HTTP 500"))]),
            None,
        );
        let reason = tally.incomplete_reason().expect("kind failed");
        assert!(
            reason.contains("repository") && reason.contains("HTTP 500"),
            "{reason}"
        );

        let mut tally = Tally::default();
        tally.crawl_finished(now, None, crawl(&[("project", 1, None)]), None);
        let mut failing = report(None, "project", Uuid::new_v4(), "p");
        failing.failed_items = 2;
        tally.progress(failing, usize::MAX);
        let reason = tally.incomplete_reason().expect("items failed");
        assert!(reason.contains("project: 2"), "{reason}");

        let mut tally = Tally::default();
        tally.crawl_finished(now, None, crawl(&[("project", 1, None)]), None);
        assert_eq!(
            tally.progress(report(None, "project", Uuid::new_v4(), "p"), 0),
            Progress::Overflowed
        );
        assert!(tally.incomplete_reason().is_some());

        let mut tally = Tally::default();
        tally.crawl_finished(now, None, BTreeMap::new(), Some("PAT refused".into()));
        assert!(
            tally
                .incomplete_reason()
                .expect("crawl")
                .contains("PAT refused")
        );
    }

    #[test]
    fn a_resync_mapped_with_another_version_than_it_was_crawled_with_deletes_nothing() {
        let crawled = MappingVersionId("aaaa".into());
        let other = MappingVersionId("bbbb".into());
        let attempt = Some(AttemptId::new());
        let mut tally = Tally::default();
        tally.started(Utc::now(), attempt, Some(crawled.clone()));
        tally.crawl_finished(Utc::now(), attempt, crawl(&[("project", 2, None)]), None);
        let mut first = report(attempt, "project", Uuid::new_v4(), "p1");
        first.mapping_version = Some(crawled.clone());
        tally.progress(first, usize::MAX);
        let mut second = report(attempt, "project", Uuid::new_v4(), "p2");
        second.mapping_version = Some(other);
        tally.progress(second, usize::MAX);
        assert!(tally.complete());
        assert_eq!(tally.mapping_version(), Some(&crawled));
        let reason = tally.incomplete_reason().expect("mixed versions");
        assert!(reason.contains("bbbb"), "{reason}");
    }

    #[test]
    fn attempts_are_bounded() {
        let mut tally = Tally::default();
        for _ in 0..(ATTEMPTS_KEPT * 4) {
            tally.started(Utc::now(), Some(AttemptId::new()), None);
        }
        assert_eq!(tally.attempts.len(), ATTEMPTS_KEPT);
    }

    /// The regression guard of the produced set's memory: a resync of a generated
    /// organization of 160,000 entities (twice the largest benchmarked) with long identifiers
    /// holds 8-byte fingerprints in one vector, never the identifiers (the bound at
    /// [`super::super::DEFAULT_MAX_TRACKED`] keys is checked in `reconcile.rs`).
    #[test]
    fn the_produced_set_holds_fingerprints_within_its_byte_limit() {
        let mut tally = Tally::default();
        let attempt = Some(AttemptId::new());
        let entities = 160_000usize;
        for page in 0..entities / 100 {
            let produced = (0..100)
                .map(|i| {
                    (
                        "azureDevopsRepository".to_string(),
                        format!(
                            "a-rather-long-project-name-{page}/a-rather-long-repository-name-{i}"
                        ),
                    )
                })
                .collect();
            let reported = Reported {
                produced,
                ..report(attempt, "repository", Uuid::new_v4(), "unused")
            };
            assert_eq!(tally.progress(reported, usize::MAX), Progress::Counted);
        }
        tally.compact();
        assert_eq!(tally.tracked(), entities);
        // 160,000 keys: 262,144 fingerprints of 8 bytes (13.1 per entity), where the
        // identifiers alone are over 60 bytes each.
        assert!(
            tally.tracked_bytes() <= 262_144 * 8,
            "{}",
            tally.tracked_bytes()
        );
        assert!(tally.produced.contains(&[
            "azureDevopsRepository",
            "a-rather-long-project-name-1599/a-rather-long-repository-name-99"
        ]));
    }
}
