//! The kinds the crawler reads, one module per family ([`git`]: repositories, their policies and
//! pull requests; [`work`]: boards, columns, work items; [`teams`]: teams, members, iterations,
//! area paths; [`identity`]: users, groups, group members; [`releases`]; [`pipelines`]:
//! pipelines, builds, environments, release definitions and deployments, branches; [`runs`]:
//! pipeline runs, stages, deployments and pipeline/build enrichment; [`test_runs`];
//! [`security`]: Advanced Security alerts; [`files`], [`folders`] and [`wikis`]: Git content,
//! with [`glob`] for their patterns), and the fan-out
//! they share: per project (or per repository) concurrently within the client's request
//! budget and the crawl's byte budget (`crate::page_budget`), and for units that keep a
//! listing while they run within the crawl's listing budget (`crate::listing_budget`), every
//! page handed to the publisher as it arrives through a bounded channel.
//!
//! Failure semantics, the same for every kind: a 403 for one project or repository skips it
//! with a warning and marks the kind failed; a 404 in which Azure DevOps says the unit's
//! project or repository no longer exists ([`AdoError::unit_gone`]) means the unit went away
//! between the list and the read, and is skipped; any other 404 — a later page, a
//! sub-resource, a 404 that names nothing — is a failed read like any other, never "none"
//! (only where Azure DevOps' contract says a 404 means "none" does the kind's code say so,
//! at the call); a refused token stops the whole crawl; any other error marks the kind failed
//! (no stale entity of a failed kind is deleted).

pub(crate) mod files;
pub(crate) mod folders;
mod git;
pub(crate) mod gitops;
mod glob;
mod identity;
pub(crate) mod items;
mod pipelines;
mod projects;
mod releases;
mod runs;
mod security;
mod teams;
mod test_runs;
pub(crate) mod wikis;
mod work;

pub(crate) use git::{RepositoryUnit, kept_repository_units, repository_units};
pub(crate) use identity::group_list_readers;
pub(crate) use pipelines::build_list_readers;
pub(crate) use teams::team_member_readers;

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt, stream};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::ado::{AdoError, ProjectId};
use crate::byte_budget::{ByteBudget, HeldBytes};
use crate::crawl_context::{CONCURRENT_UNITS, CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::{Handler, Kind};
use crate::listing_budget::{HeldListing, ListingSizes};
use crate::page_budget::{PageSizes, heap_bytes, page_bytes};
use crate::plan::KindPlan;
use crate::selector::{SelectorError, SelectorType};
use adoport_shared::messages::ResyncId;

/// Where a unit's pages go: a bounded channel to the publisher, each page with the bytes it
/// holds of the crawl's budget (given back once the broker confirmed it), so that memory stays
/// flat however many units and kinds are read at once.
pub(crate) struct Pages {
    /// Each page with the index of the crawl (among those the fan-out feeds) it is for.
    tx: mpsc::Sender<(usize, Vec<Value>, HeldBytes)>,
    budget: ByteBudget,
    sizes: Arc<PageSizes>,
    /// What the unit took before its first request, until its first page takes it over.
    reserved: Mutex<Option<HeldBytes>>,
}

impl Drop for Pages {
    /// A unit that sent no page counts as one of no bytes: units that mostly find nothing
    /// (a repository without a spec file) then take little and run as wide as the requests.
    fn drop(&mut self) {
        let unsent = self
            .reserved
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if unsent {
            self.sizes.observe(0);
        }
    }
}

impl Pages {
    /// Publishes `items` as the fan-out's (first) crawl.
    pub(crate) async fn send(&self, items: Vec<Value>) -> Result<(), AdoError> {
        self.send_to(0, items).await
    }

    /// Publishes `items` as the `crawl`th of the crawls the fan-out feeds
    /// ([`Crawler::fan_out_to`]).
    pub(crate) async fn send_to(&self, crawl: usize, items: Vec<Value>) -> Result<(), AdoError> {
        if items.is_empty() {
            return Ok(());
        }
        let bytes = page_bytes(&items);
        self.sizes.observe(bytes);
        let held = self.hold(bytes).await;
        self.tx
            .send((crawl, items, held))
            .await
            .map_err(|_| AdoError::ShuttingDown)
    }

    /// Publishes the page `build` makes, built only once the publisher has room for it: a
    /// unit whose items are kept as text until built (a listing) then waits for the publisher
    /// with its text, not with the page parsed (about five times as large). Only a unit's
    /// first page waits so, with the bytes the unit took before its first request: a later one
    /// must take its bytes of the budget, and waiting for them while holding the publisher's
    /// room could leave the publisher nothing to give bytes back with.
    pub(crate) async fn send_built(
        &self,
        build: impl Future<Output = Result<Vec<Value>, AdoError>>,
    ) -> Result<(), AdoError> {
        let first = (self.reserved.lock().unwrap_or_else(|p| p.into_inner())).is_some();
        if !first {
            return self.send(build.await?).await;
        }
        let room = self
            .tx
            .reserve()
            .await
            .map_err(|_| AdoError::ShuttingDown)?;
        let items = build.await?;
        if items.is_empty() {
            return Ok(());
        }
        let Some(mut held) = self.take_reserved() else {
            // Another page of the unit went first: take its bytes as a later page does.
            drop(room);
            return self.send(items).await;
        };
        let bytes = page_bytes(&items);
        self.sizes.observe(bytes);
        held.grow_if_free(bytes);
        room.send((0, items, held));
        Ok(())
    }

    /// Publishes `items` in pages of at most `per_page` items, each closed once it holds
    /// `page_bytes` ([`heap_bytes`]) or more, each page built (its items taken from `items`,
    /// which may parse them as they come) only after it took `page_bytes` of the budget and
    /// the publisher has room for it. A unit whose pages are built from what it keeps as text
    /// then waits for the budget and the publisher with its text, not with a page parsed.
    pub(crate) async fn send_pages(
        &self,
        items: impl Iterator<Item = Value>,
        per_page: usize,
        page_bytes: usize,
    ) -> Result<(), AdoError> {
        let mut items = items.peekable();
        while items.peek().is_some() {
            // Bytes first, then room: waiting for room while holding bytes cannot stall, as
            // the publisher gives room back with every page it takes (the other order could).
            let held = self.hold(page_bytes).await;
            let room = self
                .tx
                .reserve()
                .await
                .map_err(|_| AdoError::ShuttingDown)?;
            let (mut page, mut bytes) = (Vec::new(), 0);
            while page.len() < per_page.max(1) && bytes < page_bytes {
                let Some(item) = items.next() else { break };
                bytes += heap_bytes(&item);
                page.push(item);
            }
            self.sizes.observe(bytes);
            room.send((0, page, held));
        }
        Ok(())
    }

    /// The bytes of a page of `bytes`: what the unit took before its first request if no
    /// page took it over yet, grown to `bytes` only if free now (see [`PageSizes`]);
    /// otherwise `bytes` of the budget, waited for.
    async fn hold(&self, bytes: usize) -> HeldBytes {
        match self.take_reserved() {
            Some(mut reserved) => {
                reserved.grow_if_free(bytes);
                reserved
            }
            None => self.budget.hold(bytes).await,
        }
    }

    /// What the unit took before its first request, if no page took it over yet.
    fn take_reserved(&self) -> Option<HeldBytes> {
        self.reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// What went wrong across the units of one kind.
#[derive(Default)]
struct Failures {
    fatal: Option<AdoError>,
    messages: Vec<String>,
}

/// Errors after which nothing more can be read (the crawl or the process stops).
pub(crate) fn is_fatal(error: &AdoError) -> bool {
    matches!(
        error,
        AdoError::Unauthorized { .. }
            | AdoError::UntrustedCertificate { .. }
            | AdoError::ShuttingDown
    )
}

/// `__project` and friends: adds `key: value` to an item object.
pub(crate) fn enrich(mut item: Value, key: &str, value: &Value) -> Value {
    if let Value::Object(map) = &mut item {
        map.insert(key.to_string(), value.clone());
    }
    item
}

pub(crate) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// One kind's crawl in a resync: what the crawl of its row is given.
pub(crate) struct KindCrawl<'a> {
    pub(crate) resync_id: ResyncId,
    pub(crate) kind: Kind,
    /// The kind's resources, their selectors read with the row's model.
    pub(crate) plan: &'a KindPlan,
    pub(crate) cache: &'a ResyncCache,
    pub(crate) report: &'a mut KindReport,
}

impl KindCrawl<'_> {
    /// Publishes `items` as this crawl's kind.
    pub(crate) async fn publish(
        &mut self,
        crawler: &Crawler,
        items: Vec<Value>,
    ) -> Result<(), CrawlError> {
        crawler
            .publish(self.resync_id, self.kind, items, self.report)
            .await
    }
}

/// How a kind is crawled: one of the `crawl_*` methods of its module.
pub(crate) type CrawlFn =
    for<'a> fn(&'a Crawler, KindCrawl<'a>) -> BoxFuture<'a, Result<(), CrawlError>>;

/// How a kind crawled [`Crawl::Together`] is crawled: every crawl unit of the kind (one per
/// distinct selector) at once, fed from the same reads.
pub(crate) type CrawlTogetherFn =
    for<'a> fn(&'a Crawler, Vec<KindCrawl<'a>>) -> BoxFuture<'a, Result<(), CrawlError>>;

/// Whether a kind's crawl units read Azure DevOps each on its own or together.
#[derive(Clone, Copy)]
pub(crate) enum Crawl {
    /// Each unit reads what its selector needs (the API filters by the selector's options).
    Each(CrawlFn),
    /// The units read one list together and each takes its part of every page: the API
    /// cannot filter by what tells the selectors apart (a pull request list per project
    /// serves every `minTimeInDays` and `maxResults`).
    Together(CrawlTogetherFn),
}

/// Everything ingest knows about one kind, in one row of [`KINDS`].
pub(crate) struct KindSpec {
    pub(crate) kind: Kind,
    /// The selector model its resources are read with (`crate::selector`): a resync does not
    /// crawl the kind, and live events do not update it, while a resource's selector does not
    /// read with it.
    pub(crate) selector: SelectorType,
    /// How a resync reads it.
    pub(crate) crawl: Crawl,
    /// The live-event handlers that publish it: the subscriptions it needs are the
    /// `crate::events::EVENTS` rows of these handlers (a test keeps the two tables agreeing;
    /// the receiver and the subscription manager read the event table, and the receiver
    /// checks the selectors of these kinds before an event of the handler updates them).
    pub(crate) live: &'static [Handler],
    /// Read repository by repository, from the repository list (the crawl then keeps the
    /// list for the kinds after `repository`).
    pub(crate) repository_derived: bool,
}

/// Declares [`KINDS`], one line per kind: its selector model, its crawl (a
/// `crawl_*(`[`KindCrawl`]`)` method of [`Crawler`]; `crawl_*(Vec<KindCrawl>) together` for
/// [`Crawl::Together`]), the handlers of the live events that update it, and `per_repository`
/// when it is read repository by repository.
macro_rules! kinds {
    ($($kind:ident: $selector:ident, $crawl:ident $($together:ident)?, [$($handler:ident),*] $(, $per:ident)?;)*) => {
        /// One row per kind: adding a kind is adding its [`Kind`] variant, its row here and
        /// the crawl it names (a test fails for a kind without a row).
        pub(crate) const KINDS: &[KindSpec] = &[$(
            KindSpec {
                kind: Kind::$kind,
                selector: SelectorType::$selector,
                crawl: kinds!(@crawl $crawl $($together)?),
                live: &[$(Handler::$handler),*],
                repository_derived: kinds!(@per $($per)?),
            },
        )*];
    };
    (@crawl $crawl:ident) => { Crawl::Each(|crawler, crawl| Box::pin(crawler.$crawl(crawl))) };
    (@crawl $crawl:ident together) => {
        Crawl::Together(|crawler, crawls| Box::pin(crawler.$crawl(crawls)))
    };
    (@per) => { false };
    (@per per_repository) => { true };
}

kinds! {
    Project: AzureDevops, crawl_projects, [];
    Repository: Repository, crawl_repositories, [Repository, Push];
    RepositoryPolicy: AzureDevops, crawl_policies, [], per_repository;
    PullRequest: PullRequest, crawl_pull_requests together, [PullRequest], per_repository;
    Branch: AzureDevops, crawl_branches, [Push], per_repository;
    File: File, crawl_files together, [Push], per_repository;
    Folder: Folder, crawl_folders, [Push], per_repository;
    Wiki: Wiki, crawl_wikis together, [Push];
    AdvancedSecurityAlert: Alert, crawl_security_alerts, [Alert], per_repository;
    Team: Team, crawl_teams, [];
    Member: AzureDevops, crawl_members, [];
    Iteration: AzureDevops, crawl_iterations, [];
    AreaPath: AreaPath, crawl_area_paths, [];
    User: User, crawl_users, [];
    Group: Bare, crawl_groups, [];
    GroupMember: Bare, crawl_group_members, [];
    Board: AzureDevops, crawl_boards, [];
    Column: AzureDevops, crawl_boards, [];
    WorkItem: WorkItem, crawl_work_items, [WorkItem];
    Release: Release, crawl_releases, [Release];
    Pipeline: Pipeline, crawl_project_list, [Pipeline];
    Build: Build, crawl_builds together, [Build];
    Environment: AzureDevops, crawl_project_list, [];
    ReleaseDefinition: ReleaseDefinition, crawl_project_list, [Release];
    ReleaseDeployment: AzureDevops, crawl_project_list, [ReleaseDeployment];
    PipelineRun: AzureDevops, crawl_pipeline_runs, [PipelineRun];
    PipelineStage: AzureDevops, crawl_pipeline_stages, [PipelineStage];
    PipelineDeployment: AzureDevops, crawl_pipeline_deployments, [];
    TestRun: TestRun, crawl_test_runs together, [Build];
    // Specs are also read on every push, whatever the mapping (`crate::gitops::on_push`).
    Gitops: Gitops, crawl_gitops, [];
}

/// The row of `kind`.
pub(crate) fn spec(kind: Kind) -> &'static KindSpec {
    KINDS
        .iter()
        .find(|row| row.kind == kind)
        .unwrap_or_else(|| {
            unreachable!("kind {kind} has no row in KINDS (a unit test checks every kind has one)")
        })
}

/// The crawl units at the start of `plan` that are crawled at once: the first, with the units
/// of its kind right after it when its kind is crawled [`Crawl::Together`] (a mapping's plan
/// holds a kind's units one after another).
pub(crate) fn crawled_at_once(plan: &[KindPlan]) -> &[KindPlan] {
    let Some(first) = plan.first() else {
        return plan;
    };
    let together = first
        .known()
        .is_some_and(|kind| matches!(spec(kind).crawl, Crawl::Together(_)));
    let count = match together {
        true => plan
            .iter()
            .take_while(|unit| unit.kind == first.kind)
            .count(),
        false => 1,
    };
    &plan[..count]
}

/// Crawls `units` of kind `kind` (see [`crawled_at_once`]; `reports` one for each) through
/// the kind's row: each unit's selectors are read with the row's model first, and a selector
/// that does not read fails its unit (none of its entities are deleted) without a request to
/// Azure DevOps. A unit's failure is written in its report; only an error that stops the
/// whole crawl is returned.
pub(crate) async fn crawl(
    kind: Kind,
    crawler: &Crawler,
    resync_id: ResyncId,
    units: &[KindPlan],
    cache: &ResyncCache,
    reports: &mut [KindReport],
) -> Result<(), CrawlError> {
    let row = spec(kind);
    let mut crawls = Vec::new();
    let mut checked = Vec::new();
    for (index, (plan, report)) in units.iter().zip(reports.iter_mut()).enumerate() {
        match row.selector.check(&plan.kind, plan.positioned()) {
            Ok(()) => {
                checked.push(index);
                crawls.push(KindCrawl {
                    resync_id,
                    kind,
                    plan,
                    cache,
                    report,
                });
            }
            Err(e) => failed(plan, report, &e.into()),
        }
    }
    // Each failure with the units it fails.
    let mut errors: Vec<(Vec<usize>, CrawlError)> = Vec::new();
    match row.crawl {
        Crawl::Together(together) => {
            if !crawls.is_empty()
                && let Err(e) = together(crawler, crawls).await
            {
                errors.push((checked, e));
            }
        }
        Crawl::Each(each) => {
            for (crawl, index) in crawls.into_iter().zip(checked) {
                match each(crawler, crawl).await {
                    Ok(()) => {}
                    Err(e) if e.stops_crawl() => return Err(e),
                    Err(e) => errors.push((vec![index], e)),
                }
            }
        }
    }
    for (indices, error) in errors {
        if error.stops_crawl() {
            return Err(error);
        }
        for index in indices {
            failed(&units[index], &mut reports[index], &error);
        }
    }
    Ok(())
}

/// Records that `unit` failed with `error` (not one that stops the crawl).
fn failed(unit: &KindPlan, report: &mut KindReport, error: &CrawlError) {
    let described = unit.describe();
    tracing::warn!(kind = %unit.kind, resources = ?unit.resources, error = %error, "{described} failed; its stale entities will not be deleted");
    report.failure = Some(error.to_string());
}

/// Checks the selectors of the mapped kinds an event of `handler` updates (their rows name
/// the handler), before the event is resolved: a selector that does not read refuses the
/// event for every kind it updates.
pub(crate) fn check_live(handler: Handler, plans: &[KindPlan]) -> Result<(), SelectorError> {
    for plan in plans {
        if let Some(row) = plan.known().map(spec)
            && row.live.contains(&handler)
        {
            row.selector.check(&plan.kind, plan.positioned())?;
        }
    }
    Ok(())
}

impl Crawler {
    /// Runs `fetch` for every unit, as many at a time as the crawl may have requests in
    /// flight (at least `CONCURRENT_UNITS`) and its byte budget allows, publishing each page it
    /// sends as it arrives: a unit is often one request (a repository's spec file, a project's
    /// policies), so fewer units than the budget's requests would leave it idle at real
    /// latency. A unit takes the bytes of the kind's mean page so far before its first request
    /// (the first `CONCURRENT_UNITS` of each kind read at once an even share of the budget, the
    /// others wait for the first page), so small
    /// pages keep every request busy and large ones narrow the fan-out instead of piling up.
    /// Per-unit failures mark the kind failed (see the module docs).
    pub(crate) async fn fan_out<T, F, Fut>(
        &self,
        crawl: &mut KindCrawl<'_>,
        units: impl IntoIterator<Item = (String, T)>,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        self.fan_out_stream(crawl, stream::iter(units), self.fan_out_width(), fetch)
            .await
    }

    /// [`Crawler::fan_out`] feeding several crawls of one kind (its crawl units, each for its
    /// own selector) from the same reads: `fetch` sends each page to the crawl it is for
    /// ([`Pages::send_to`], by index in `crawls`), and a unit that could not be read marks
    /// every crawl failed (each of them lacks what it would have published).
    pub(crate) async fn fan_out_to<T, F, Fut>(
        &self,
        crawls: &mut [KindCrawl<'_>],
        units: impl IntoIterator<Item = (String, T)>,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        self.fan_out_stream_to(crawls, stream::iter(units), self.fan_out_width(), fetch)
            .await
    }

    /// [`Crawler::fan_out`] for units that keep a listing until all their pages are sent (a
    /// project's policies): each unit starts only once it holds the bytes of the fan-out's
    /// mean listing of the crawl's listing budget (`crate::listing_budget`), taken before
    /// anything else of the unit (before the unit is even taken from `units`, so that a unit
    /// waiting for them holds nothing; only the next unit, taken to see whether there is one,
    /// waits with what `units` made of it), and `fetch` gets the hold to tell it what it
    /// keeps ([`HeldListing::keeps`]) once it read its listing. Small listings run as wide as
    /// the requests, large ones narrower; the hold ends with the unit.
    pub(crate) async fn fan_out_keeping<T, F, Fut>(
        &self,
        crawl: &mut KindCrawl<'_>,
        units: impl IntoIterator<Item = (String, T)>,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, HeldListing, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        let sizes = Arc::new(ListingSizes::default());
        let budget = &self.listing_budget;
        let units = stream::unfold(units.into_iter().peekable(), move |mut units| {
            let sizes = Arc::clone(&sizes);
            async move {
                // No wait for bytes past the last unit.
                units.peek()?;
                let held = sizes.reserve(budget).await;
                let (label, unit) = units.next()?;
                Some(((label, (held, unit)), units))
            }
        });
        let fetch = &fetch;
        self.fan_out_stream(crawl, units, self.fan_out_width(), |(held, unit), pages| {
            fetch(unit, held, pages)
        })
        .await
    }

    /// Units a fan-out runs at once: as many as the crawl may have requests in flight, at
    /// least [`CONCURRENT_UNITS`].
    pub(crate) fn fan_out_width(&self) -> usize {
        self.client.crawl_in_flight().max(CONCURRENT_UNITS)
    }

    /// [`Crawler::fan_out`] over units that arrive as a stream (repositories listed project by
    /// project as the fan-out reaches each project), `width` at a time: the next unit is asked
    /// for only when one may start.
    pub(crate) async fn fan_out_stream<T, F, Fut>(
        &self,
        crawl: &mut KindCrawl<'_>,
        units: impl Stream<Item = (String, T)>,
        width: usize,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        self.fan_out_stream_to(std::slice::from_mut(crawl), units, width, fetch)
            .await
    }

    /// The fan-out under [`Crawler::fan_out`], [`Crawler::fan_out_to`] and
    /// [`Crawler::fan_out_stream`]: units from a stream, `width` at a time, each unit's pages
    /// to the crawl of `crawls` it is for.
    pub(crate) async fn fan_out_stream_to<T, F, Fut>(
        &self,
        crawls: &mut [KindCrawl<'_>],
        units: impl Stream<Item = (String, T)>,
        width: usize,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        let Some(kind) = crawls.first().map(|crawl| crawl.kind) else {
            return Ok(());
        };
        let (tx, mut rx) = mpsc::channel::<(usize, Vec<Value>, HeldBytes)>(CONCURRENT_UNITS);
        let sizes = Arc::new(PageSizes::new(
            &self.page_budget,
            CONCURRENT_UNITS,
            self.concurrent_kinds,
        ));
        let (budget, sizes) = (&self.page_budget, &sizes);
        let name = kind.name();
        let failures = Mutex::new(Failures::default());
        let fetch = &fetch;
        let failures_ref = &failures;
        let producer = async move {
            units
                .for_each_concurrent(width, |(label, unit)| {
                    let tx = tx.clone();
                    async move {
                        let reserved = sizes.reserve(budget).await;
                        let pages = Pages {
                            tx,
                            budget: budget.clone(),
                            sizes: Arc::clone(sizes),
                            reserved: Mutex::new(Some(reserved)),
                        };
                        let outcome = fetch(unit, pages).await;
                        let mut failures = failures_ref.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Ok(()) => {}
                            Err(e) if e.unit_gone() => {
                                tracing::debug!(kind = name, unit = %label, error = %e, "gone between list and read; skipped");
                            }
                            Err(e @ AdoError::Forbidden { .. }) => {
                                tracing::warn!(kind = name, unit = %label, error = %e, "access denied; skipped, and the kind is marked failed so that none of its entities are deleted");
                                failures.messages.push(format!("{label}: {e}"));
                            }
                            Err(e) if is_fatal(&e) => {
                                if failures.fatal.is_none() {
                                    failures.fatal = Some(e);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(kind = name, unit = %label, error = %e, "could not read; the kind is marked failed");
                                failures.messages.push(format!("{label}: {e}"));
                            }
                        }
                    }
                })
                .await;
            drop(tx);
        };
        let consumer = async {
            while let Some((index, page, held)) = rx.recv().await {
                let Some(crawl) = crawls.get_mut(index) else {
                    unreachable!(
                        "a page for crawl {index} of {name}: fetch sends only to the crawls it was given"
                    )
                };
                crawl.publish(self, page).await?;
                // Confirmed by the broker: its bytes go back to the budget.
                drop(held);
            }
            Ok::<(), CrawlError>(())
        };
        let ((), published) = tokio::join!(producer, consumer);
        published?;
        let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(fatal) = failures.fatal {
            return Err(CrawlError::Ado(fatal));
        }
        if !failures.messages.is_empty() {
            let count = failures.messages.len();
            let first = failures.messages.into_iter().next().unwrap_or_default();
            for crawl in crawls.iter_mut() {
                crawl.report.failure = Some(format!(
                    "{count} unit(s) of kind {kind} could not be read, e.g. {first}"
                ));
            }
        }
        Ok(())
    }

    /// [`Crawler::fan_out`] over the projects of this resync: `fetch` gets each project's id
    /// and item.
    pub(crate) async fn per_project<F, Fut>(
        &self,
        crawl: &mut KindCrawl<'_>,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(ProjectId, Value, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        let units = self.project_units(crawl.cache).await?;
        let fetch = &fetch;
        self.fan_out(crawl, units, |project: Value, pages: Pages| {
            let id = ProjectId::new(text(&project, "id").unwrap_or_default());
            fetch(id, project, pages)
        })
        .await
    }

    /// The projects of this resync as fan-out units (label = project name), each copied from
    /// the resync's list only when the fan-out reaches it.
    pub(crate) async fn project_units(
        &self,
        cache: &ResyncCache,
    ) -> Result<impl Iterator<Item = (String, Value)> + use<>, CrawlError> {
        let projects = self.project_list(cache).await?;
        Ok((0..projects.len()).map(move |index| {
            let project = projects.get(index);
            let label = format!("project {}", text(&project, "name").unwrap_or("?"));
            (label, project)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EVENTS;

    #[test]
    fn every_kind_has_one_row() {
        for kind in Kind::ALL {
            let rows = KINDS.iter().filter(|row| row.kind == *kind).count();
            assert_eq!(rows, 1, "kind {kind} has {rows} rows in KINDS");
        }
        assert_eq!(KINDS.len(), Kind::ALL.len());
    }

    /// Every selector option the Python integration's default mapping and example mappings
    /// (tests/fixtures) set is a field of its kind's selector model.
    #[test]
    fn every_selector_model_reads_the_reference_mappings() {
        use adoport_shared::port_app_config::PortAppConfig;
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/ocean-azure-devops"
        );
        // Set by the example mappings, read by neither integration (pydantic ignores it).
        const IGNORED: &[(&str, &str)] = &[("release-deployment", "includeRelease")];
        let mut read = 0;
        for file in [
            "port-app-config.yaml",
            "mapping-example/example-mappings.yaml",
        ] {
            let text = std::fs::read_to_string(format!("{fixtures}/{file}")).expect("fixture");
            let config = PortAppConfig::from_yaml_str(&text).expect("parses");
            for resource in &config.resources {
                let kind = Kind::parse(&resource.kind).expect("a kind this version knows");
                let model = spec(kind).selector;
                let described = model
                    .describe(kind.name(), 0, &resource.selector.options)
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                for key in resource.selector.options.keys() {
                    let field: String = key
                        .chars()
                        .flat_map(|c| {
                            let lower = c.to_ascii_lowercase();
                            (c.is_ascii_uppercase().then_some('_').into_iter()).chain([lower])
                        })
                        .collect();
                    if IGNORED.contains(&(kind.name(), key.as_str())) {
                        continue;
                    }
                    assert!(
                        described.contains(&format!("{field}: ")),
                        "{file}: kind {kind} sets `{key}`, which its selector model {model:?} lacks: {described}"
                    );
                }
                read += 1;
            }
        }
        assert!(read >= 20, "{read} resources read");
    }

    #[test]
    fn live_handlers_and_the_event_table_agree() {
        for row in KINDS {
            for handler in row.live {
                assert!(
                    EVENTS
                        .iter()
                        .any(|e| e.handler == *handler && e.kinds.contains(&row.kind)),
                    "kind {} names {handler:?}, but no event type of that handler updates it",
                    row.kind
                );
            }
        }
        for event in EVENTS {
            for kind in event.kinds {
                assert!(
                    spec(*kind).live.contains(&event.handler),
                    "{} updates kind {kind}, whose row does not name {:?}",
                    event.event_type,
                    event.handler
                );
            }
        }
    }
}
