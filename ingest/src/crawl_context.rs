//! What every kind's crawl works with: the [`Crawler`] (the client, page sizes, the projects
//! of a resync without those of `excludedTags`, and the publisher of a resync's pages, stamped
//! with the crawl and checked against its fence), the reports and errors of a crawl, and what a
//! resync reads once and shares between the kinds it crawls at the same time
//! (`ResyncCache`; what grows with the organization only up to a byte limit: the repositories,
//! [`REPOSITORY_LIST_BYTES`], and the boards, [`BOARD_LIST_BYTES`]). Below the kinds: the kinds
//! add their own `impl Crawler` blocks (`crate::kinds`) and the crawl of a whole plan runs them
//! ([`crate::crawler`]); this module names neither.
//!
//! Memory stays flat whatever the organization's size: the pages a crawl holds at once, of
//! every kind it reads at the same time, are bounded in bytes by its page budget
//! (`crate::page_budget`, taken before a page is handed to the publisher, given back once the
//! broker confirmed it), and a page is published without a copy of its items.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use serde_json::Value;

use crate::ado::organization::OrganizationStamp;
use crate::ado::{AdoClient, AdoError, ProjectId};
use crate::byte_budget::ByteBudget;
use crate::examples::ExampleSampler;
use crate::kind::Kind;
use crate::listing_budget::LISTING_BUDGET_BYTES;
use crate::page_budget::DEFAULT_BUFFER_BYTES;
use crate::project_tags::{is_excluded, normalized};
use crate::selector::SelectorError;
use crate::shared_reads::{BoundedList, SHARED_READ_BYTES, SharedReads};
pub(crate) use crate::shared_reads::{compact, parse};
use adoport_shared::bus::{Bus, BusError, Destination, Outgoing};
use adoport_shared::messages::{
    AttemptId, MappingVersionId, Origin, RawAction, RawEvent, ResyncId, encode,
};
use adoport_shared::metrics::ResyncStats;

/// Units (projects, repositories) read at the same time by one kind.
pub(crate) const CONCURRENT_UNITS: usize = 8;

/// Crawl units (kinds) read at the same time unless the crawler is told otherwise
/// (`ADOPORT__INGEST__CONCURRENT_KINDS`).
pub const DEFAULT_CONCURRENT_KINDS: usize =
    adoport_shared::config::DEFAULT_CONCURRENT_KINDS as usize;

/// Which crawl this is: the resync, this attempt at crawling it, and the mapping version it
/// crawls with. Stamped on every raw event the crawl publishes, so that the coordinator counts
/// only the attempt that finished and transform maps with the crawl's mapping version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlStamp {
    pub resync_id: ResyncId,
    pub attempt: AttemptId,
    pub mapping_version: Option<MappingVersionId>,
    /// When the attempt started: the `observed_at` of every raw event it publishes.
    ///
    /// An item is published after everything it is built from has been read (a repository's
    /// files, a build's first commit …), seconds or minutes after the read that listed it. A
    /// webhook re-read of the same object in that gap holds newer data, and publish keeps the
    /// newer observation of an entity: so the crawl must not claim a later time than its first
    /// read, or its older copy would overwrite the webhook's. The attempt's start is earlier
    /// than any of its reads; a change the crawl saw after a webhook's read has a webhook of its
    /// own, and the next resync repairs what a lost webhook left behind.
    pub observed_at: DateTime<Utc>,
}

impl CrawlStamp {
    /// A new attempt at `resync_id` starting now, with no mapping version named (tools and
    /// tests).
    pub fn new(resync_id: ResyncId) -> Self {
        Self {
            resync_id,
            attempt: AttemptId::new(),
            mapping_version: None,
            observed_at: Utc::now(),
        }
    }
}

/// Whether a crawl may still publish: false once the resync request it runs for was taken
/// away from this process (see the lease of `crate::resync`). Checked before every page.
#[derive(Clone)]
pub struct CrawlFence(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl CrawlFence {
    /// A crawl that holds no request (tools and tests): never fenced off.
    pub fn none() -> Self {
        Self(None)
    }

    pub fn new(holds: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(holds)))
    }

    fn holds(&self) -> bool {
        self.0.as_ref().is_none_or(|holds| holds())
    }
}

/// What the crawler found for one crawl unit (a kind, for the mapping resources that share a
/// selector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindReport {
    /// The mapping resources the unit's raw events name (`None`: every resource of the kind).
    pub resources: Option<Vec<u32>>,
    /// Raw items published.
    pub items: u64,
    /// Raw events published (pages).
    pub events: u64,
    /// Why the kind is incomplete, when it is.
    pub failure: Option<String>,
}

/// The outcome of one resync's crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlReport {
    /// Per crawl unit, keyed as resync bookkeeping names it (`KindPlan::key`: the kind alone
    /// when one unit reads every resource of the kind).
    pub kinds: BTreeMap<String, KindReport>,
}

impl CrawlReport {
    pub fn items(&self) -> u64 {
        self.kinds.values().map(|k| k.items).sum()
    }

    pub fn failed_kinds(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.failure.is_some())
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Why a crawl stopped as a whole (a kind's own failure is recorded in its report instead).
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error(transparent)]
    Ado(#[from] AdoError),
    /// A resource's selector that its kind's model refuses: the kind is not read.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("could not publish raw events: {0}")]
    Bus(#[from] BusError),
    #[error(
        "the resync request was taken away from this crawler (its delivery was lost); the crawl stopped and the broker hands the request out again"
    )]
    LeaseLost,
}

impl CrawlError {
    /// Whether the crawl as a whole stops (nothing more can be done by it).
    pub(crate) fn stops_crawl(&self) -> bool {
        match self {
            CrawlError::Ado(e) => e.stops_crawl(),
            CrawlError::Selector(_) => false,
            CrawlError::Bus(_) | CrawlError::LeaseLost => true,
        }
    }
}

/// Page sizes the crawler asks for. The defaults are the largest the APIs allow; tests lower
/// them to cross page boundaries with little data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrawlLimits {
    /// `$top` of a WIQL query; the next id range starts after the last id when a query
    /// returns this many (Azure DevOps refuses results over 20,000).
    pub wiql_page: usize,
    /// `$top` of continuation-token lists (releases).
    pub page: usize,
    /// `$top` of the pull request lists (`$skip` paging; the API takes up to 1000).
    pub pull_request_page: usize,
}

impl Default for CrawlLimits {
    fn default() -> Self {
        Self {
            wiql_page: 19_999,
            page: 100,
            pull_request_page: 1000,
        }
    }
}

/// Most bytes of repository listings (their JSON text) a resync keeps for the kinds read
/// repository by repository, so that the organization's repository list is listed once per
/// resync. An Azure DevOps repository listing is about 0.8 to 1.2 KB of text, so this keeps
/// organizations of up to about 8,000 repositories at one list request per project; past it the
/// list is not kept (a list kept whole grows with the organization: about 30 MB at 30,000
/// repositories) and each such kind lists each project's repositories again as it reaches the
/// project (one request per project and kind, what a bounded cache costs).
pub const REPOSITORY_LIST_BYTES: usize = 8 * 1024 * 1024;

/// Most bytes of boards (their JSON text, each board's detail with its columns and
/// `__project`) a resync keeps for the second of `board` and `column`, so that the boards are
/// read once per resync. An Azure DevOps board detail with its columns and project is a few KB
/// of text (about 3.3 KB in the simulator, 2.5 MiB at 800 projects of one board each; real
/// boards have more columns, rows and fields), so this keeps about 1,000 boards of 4 KB (1,270
/// of the simulator's); past it the boards are not kept (a list kept whole grows with the
/// organization) and the other kind reads them again itself, project by project (per team one
/// board list, per board one read: what a bounded cache costs).
pub const BOARD_LIST_BYTES: usize = 4 * 1024 * 1024;

/// What a resync keeps of a list it reads project by project across the organization (the
/// repositories, for the kinds read repository by repository; the boards, for `board` and
/// `column`).
#[derive(Clone)]
pub(crate) enum OrganizationList {
    /// Every item, each project's one after another.
    Kept(Arc<CompactList>),
    /// More than the resync may keep: each kind reads each project's items itself.
    PerProject,
}

/// Listings (repositories, boards) kept as text until they pass a byte limit; past it nothing
/// is kept.
pub(crate) struct BoundedTexts {
    texts: Option<Vec<Box<str>>>,
    bytes: usize,
    limit: usize,
}

impl BoundedTexts {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            texts: Some(Vec::new()),
            bytes: 0,
            limit,
        }
    }

    /// Keeps `text` (an item's JSON text) unless the texts kept so far and it pass the limit,
    /// when everything kept is dropped. Returns whether the texts are still kept.
    pub(crate) fn push(&mut self, text: Box<str>) -> bool {
        let Some(texts) = self.texts.as_mut() else {
            return false;
        };
        self.bytes += text.len() + std::mem::size_of::<Box<str>>();
        if self.bytes > self.limit {
            self.texts = None;
            return false;
        }
        texts.push(text);
        true
    }

    pub(crate) fn finish(self) -> OrganizationList {
        match self.texts {
            Some(texts) => OrganizationList::Kept(Arc::new(CompactList::from_texts(texts))),
            None => OrganizationList::PerProject,
        }
    }
}

/// What one resync reads once and shares between its crawl units, which run at the same time
/// (see [`crate::crawler`]): the first unit that needs a list reads it while the others that
/// need it wait, then read it from here.
#[derive(Default)]
pub(crate) struct ResyncCache {
    /// Every project of the organization, kept whole: Azure DevOps itself bounds it, at most
    /// 1,000 projects an organization (Microsoft's "About projects"), about 0.6 MB of text.
    pub(crate) projects: SharedList,
    /// Kept only when a kind of the plan reads it repository by repository
    /// (`keep_repositories`), and only up to `repository_list_bytes`: it grows with the
    /// organization, and the `repository` kind alone must not hold it.
    pub(crate) repositories: tokio::sync::Mutex<Option<OrganizationList>>,
    pub(crate) keep_repositories: bool,
    /// Most bytes of repository listings the resync keeps ([`REPOSITORY_LIST_BYTES`] unless
    /// the crawler was told otherwise).
    pub(crate) repository_list_bytes: usize,
    /// Boards with `__project`, for `board` and `column`: kept by the first of them only up to
    /// `board_list_bytes` (they grow with the organization); past it the other reads them
    /// itself.
    pub(crate) boards: tokio::sync::Mutex<Option<OrganizationList>>,
    /// Most bytes of boards the resync keeps ([`BOARD_LIST_BYTES`] unless the crawler was told
    /// otherwise).
    pub(crate) board_list_bytes: usize,
    /// The organization's teams (`GET _apis/teams`), for `team` (each of its crawl units),
    /// `member` and the boards.
    pub(crate) teams: SharedList,
    /// Per project, the lists two kinds read: the pipelines (`pipeline`, `pipeline-run`) and
    /// the environments (`environment`, `pipeline-deployment`).
    pub(crate) project_lists: ProjectLists,
    /// The organization's groups, for `group`, `group-member` and the users' `__groups`; each
    /// team's members, for `team`'s `includeMembers` and `member`; each page of a project's
    /// builds, for `build` and `pipeline-stage`: kept within a byte limit (see
    /// [`crate::shared_reads`]).
    pub(crate) groups: BoundedList,
    pub(crate) team_members: SharedReads,
    pub(crate) build_pages: SharedReads,
}

/// A project's lists that several kinds (and several crawl units of one kind) read, by project
/// id and path: each read once per resync. Only the pipelines and environments are kept so (a
/// project has few); lists that grow with the project's history (builds, runs) are not.
#[derive(Default)]
pub(crate) struct ProjectLists(
    std::sync::Mutex<std::collections::HashMap<(String, &'static str), Arc<SharedList>>>,
);

impl ProjectLists {
    /// The list at `path` of `project` (empty until a unit reads it).
    pub(crate) fn of(&self, project: &str, path: &'static str) -> Arc<SharedList> {
        let mut lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(lists.entry((project.to_string(), path)).or_default())
    }
}

/// A list a resync keeps, each item as its JSON text: about a fifth of the memory of the
/// parsed items (whose every object is an ordered map of its own), parsed again as a kind reads
/// it. The projects, repositories and boards of a resync are kept so; what grows with the
/// organization is kept as small as it can be, and only up to a byte limit.
#[derive(Debug, Default)]
pub(crate) struct CompactList(Vec<Box<str>>);

impl CompactList {
    pub(crate) fn from_values(items: impl IntoIterator<Item = Value>) -> Self {
        Self(items.into_iter().map(|item| compact(&item)).collect())
    }

    /// A list of JSON texts ([`compact`] wrote them, or Azure DevOps).
    pub(crate) fn from_texts(texts: Vec<Box<str>>) -> Self {
        Self(texts)
    }

    /// The `index`th item's text, not parsed.
    pub(crate) fn text(&self, index: usize) -> Option<&str> {
        self.0.get(index).map(|text| &**text)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `index`th item (`Null` past the end).
    pub(crate) fn get(&self, index: usize) -> Value {
        self.0.get(index).map_or(Value::Null, |text| parse(text))
    }

    /// The items, in order, each parsed as it is reached.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Value> + '_ {
        self.0.iter().map(|text| parse(text))
    }
}

/// A list of one resync that one unit reads and the others share. Only a complete read is
/// kept: after a failed one, the next unit that needs the list reads it again (each unit that
/// needed it fails with its own read, as when units ran one after another).
#[derive(Default)]
pub(crate) struct SharedList(tokio::sync::Mutex<Option<Arc<CompactList>>>);

/// A unit's hold on a [`SharedList`]: the list when an earlier unit read it; otherwise the
/// unit reads it, and the units that need it wait until it is dropped.
pub(crate) type SharedListHold<'a> = tokio::sync::MutexGuard<'a, Option<Arc<CompactList>>>;

impl SharedList {
    /// Waits until no other unit is reading the list.
    pub(crate) async fn hold(&self) -> SharedListHold<'_> {
        self.0.lock().await
    }

    /// The list, read with `read` unless a unit read it before (units that ask meanwhile wait
    /// for this read).
    pub(crate) async fn get_or_read<Fut>(
        &self,
        read: impl FnOnce() -> Fut,
    ) -> Result<Arc<CompactList>, CrawlError>
    where
        Fut: std::future::Future<Output = Result<CompactList, CrawlError>>,
    {
        let mut held = self.hold().await;
        if let Some(list) = held.as_ref() {
            return Ok(Arc::clone(list));
        }
        let list = Arc::new(read().await?);
        *held = Some(Arc::clone(&list));
        Ok(list)
    }
}

/// Reads Azure DevOps and publishes raw events.
pub struct Crawler {
    pub(crate) client: AdoClient,
    bus: Bus,
    pub(crate) items_per_event: usize,
    pub(crate) limits: CrawlLimits,
    /// Items per kind in the previous crawl of this process, to tell an empty answer that
    /// follows a full one (suspicious) from a confirmed empty kind.
    pub(crate) previous_items: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Resync progress for `/metrics` (items crawled per kind as they are published).
    pub(crate) resync_stats: ResyncStats,
    /// Raw data examples for Port, when `sendRawDataExamples` is on.
    examples: Option<ExampleSampler>,
    /// Projects with any of these tags are left out (see [`crate::project_tags`]).
    pub(crate) excluded_tags: Vec<String>,
    /// The crawl running now (a crawler runs one at a time): its raw events carry the stamp,
    /// and it publishes only while the fence holds.
    pub(crate) running: std::sync::Mutex<Option<(CrawlStamp, CrawlFence)>>,
    /// Crawl units read at the same time (`ADOPORT__INGEST__CONCURRENT_KINDS`).
    pub(crate) concurrent_kinds: usize,
    /// Bytes of pages the crawl holds at most, across its units
    /// (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`).
    pub(crate) page_budget: ByteBudget,
    /// Bytes of listings the crawl's units keep at once, across its units
    /// ([`LISTING_BUDGET_BYTES`]; separate from the pages', see `crate::listing_budget`).
    pub(crate) listing_budget: ByteBudget,
    /// Most bytes of repository listings a resync keeps ([`REPOSITORY_LIST_BYTES`]).
    pub(crate) repository_list_bytes: usize,
    /// Most bytes of boards a resync keeps ([`BOARD_LIST_BYTES`]).
    pub(crate) board_list_bytes: usize,
    /// Most bytes each read shared between kinds keeps ([`SHARED_READ_BYTES`]).
    pub(crate) shared_read_bytes: usize,
}

impl Crawler {
    pub fn new(client: AdoClient, bus: Bus, items_per_event: usize) -> Self {
        Self {
            client,
            bus,
            items_per_event: items_per_event.max(1),
            limits: CrawlLimits::default(),
            previous_items: std::sync::Mutex::new(BTreeMap::new()),
            resync_stats: ResyncStats::default(),
            examples: None,
            excluded_tags: Vec::new(),
            running: std::sync::Mutex::new(None),
            concurrent_kinds: DEFAULT_CONCURRENT_KINDS,
            page_budget: ByteBudget::new(DEFAULT_BUFFER_BYTES),
            listing_budget: ByteBudget::new(LISTING_BUDGET_BYTES),
            repository_list_bytes: REPOSITORY_LIST_BYTES,
            board_list_bytes: BOARD_LIST_BYTES,
            shared_read_bytes: SHARED_READ_BYTES,
        }
    }

    /// Keeps at most `bytes` of each read shared between kinds instead of
    /// [`SHARED_READ_BYTES`] (tests cross the limit with a small organization).
    pub fn with_shared_read_bytes(mut self, bytes: usize) -> Self {
        self.shared_read_bytes = bytes;
        self
    }

    /// Holds at most `bytes` of pages at once, across the units read at the same time (a
    /// single page larger than that is still read, alone).
    pub fn with_crawl_buffer(mut self, bytes: usize) -> Self {
        self.page_budget = ByteBudget::new(bytes);
        self
    }

    /// Keeps at most `bytes` of repository listings per resync instead of
    /// [`REPOSITORY_LIST_BYTES`] (tests cross the limit with a small organization).
    pub fn with_repository_list_bytes(mut self, bytes: usize) -> Self {
        self.repository_list_bytes = bytes;
        self
    }

    /// Keeps at most `bytes` of boards per resync instead of [`BOARD_LIST_BYTES`] (tests cross
    /// the limit with a small organization).
    pub fn with_board_list_bytes(mut self, bytes: usize) -> Self {
        self.board_list_bytes = bytes;
        self
    }

    /// Reads up to `units` crawl units at the same time (at least one), all within the
    /// client's request budget.
    pub fn with_concurrent_kinds(mut self, units: usize) -> Self {
        self.concurrent_kinds = units.max(1);
        self
    }

    /// Sends the first items of each kind in each resync to Port as raw data examples.
    pub fn with_examples(mut self, sampler: ExampleSampler) -> Self {
        self.examples = Some(sampler);
        self
    }

    /// Reports resync progress into `stats` (the process's `/metrics`).
    pub fn with_resync_stats(mut self, stats: ResyncStats) -> Self {
        self.resync_stats = stats;
        self
    }

    /// Resync progress: started, finished, items crawled per kind.
    pub fn resync_stats(&self) -> &ResyncStats {
        &self.resync_stats
    }

    /// Uses other page sizes (tests).
    pub fn with_limits(mut self, limits: CrawlLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The client this crawler reads with (its request counts, for the benchmark).
    pub fn client(&self) -> &AdoClient {
        &self.client
    }

    pub(crate) async fn publish(
        &self,
        resync_id: ResyncId,
        kind: Kind,
        mut items: Vec<Value>,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let kind = kind.name();
        let stamp = OrganizationStamp::new(self.client.organization_url());
        items.iter_mut().for_each(|item| stamp.apply(item));
        let mut messages = Vec::new();
        if let Some(examples) = self
            .examples
            .as_ref()
            .and_then(|sampler| sampler.sample(resync_id, kind, &items))
        {
            messages.push(Outgoing::new(
                Destination::ResyncProgress,
                encode(&examples),
            ));
        }
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(s, _)| s.resync_id == resync_id);
        if running.as_ref().is_some_and(|(_, fence)| !fence.holds()) {
            return Err(CrawlError::LeaseLost);
        }
        let stamp = running.map(|(stamp, _)| stamp);
        let count = items.len() as u64;
        // Each chunk is moved into its event and encoded at once: the page is not copied, and
        // the items of a chunk are freed as soon as it is encoded.
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<Value> = items.by_ref().take(self.items_per_event).collect();
            let chunk_len = chunk.len() as u64;
            let mut event = RawEvent::new(
                kind,
                Origin::Resync { resync_id },
                self.client.organization_url(),
                RawAction::Upsert,
                chunk,
            );
            event.resources = report.resources.clone();
            if let Some(stamp) = &stamp {
                event.attempt = Some(stamp.attempt);
                event.mapping_version = stamp.mapping_version.clone();
                event.observed_at = stamp.observed_at;
            }
            report.items += chunk_len;
            report.events += 1;
            messages.push(Outgoing::new(Destination::Raw, encode(&event)));
        }
        self.bus.publish_all(messages).await?;
        self.resync_stats.crawled(kind, count);
        Ok(())
    }

    /// The project references of the organization, listed once per resync.
    pub(crate) async fn project_list(
        &self,
        cache: &ResyncCache,
    ) -> Result<Arc<CompactList>, CrawlError> {
        cache
            .projects
            .get_or_read(|| async {
                let all = self.client.projects().await?;
                Ok(CompactList::from_values(
                    self.without_excluded_projects(all).await,
                ))
            })
            .await
    }

    /// Leaves out of project-derived kinds the projects tagged with any of `tags`
    /// (`excludedTags` of the integration config).
    pub fn with_excluded_tags(mut self, tags: &[String]) -> Self {
        self.excluded_tags = normalized(tags);
        self
    }

    /// `projects` without those carrying an excluded tag, in order.
    pub(crate) async fn without_excluded_projects(&self, projects: Vec<Value>) -> Vec<Value> {
        if self.excluded_tags.is_empty() {
            return projects;
        }
        let kept: Vec<Value> = stream::iter(projects)
            .map(|project| async move {
                let id = project
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let excluded =
                    is_excluded(&self.client, &self.excluded_tags, &ProjectId::new(id)).await;
                if excluded {
                    let name = project.get("name").and_then(Value::as_str).unwrap_or(id);
                    tracing::info!(
                        project = name,
                        "project left out: it carries one of excludedTags"
                    );
                }
                (!excluded).then_some(project)
            })
            .buffered(CONCURRENT_UNITS)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        kept
    }
}
