//! `test-run`: every project's test runs (`includeRunDetails=true`, `$top`/`$skip` until an
//! empty page), each with
//!
//! - `__testResults` (selector `includeResults`, default true): all of the run's results,
//!   paged with `$top`/`$skip` until a short page (`[]` when not asked for);
//! - `__codeCoverage` (selector `codeCoverage: {flags}`, off by default): the build's code
//!   coverage answer as a whole (`{}` when not asked for, for a run without a build or a build
//!   without coverage).
//!
//! A page of runs is enriched [`ENRICHMENT_CONCURRENCY`] runs at a time and published before
//! the next page is read. Every `test-run` selector of a resync is fed from the same listing
//! (the kind is crawled together): what tells them apart is what each run is enriched with.

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use super::KindCrawl;
use super::items::{ENRICHMENT_CONCURRENCY, ItemBuilder};
use super::runs::id_text;
use super::{Pages, enrich, text};
use crate::ado::{AdoError, BuildId, ProjectId, TestRunId};
use crate::crawl_context::{CrawlError, Crawler};
use crate::plan::KindPlan;
use crate::selector::{SelectorError, TestRunSelector};

/// What to add to every test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestRunEnrichment {
    results: bool,
    /// `Some(flags)` when code coverage is wanted (`flags` as the user gave them, if at all).
    coverage: Option<Option<u64>>,
}

/// `typeKey`s of a 404 saying a test run is gone.
const RUN_GONE: &[&str] = &["TestObjectNotFoundException", "TestRunNotFoundException"];
/// `typeKey`s of a 404 saying a build is gone.
const BUILD_GONE: &[&str] = &["BuildNotFoundException"];

impl TestRunEnrichment {
    /// The union over the kind's resources: results unless every resource turns them off,
    /// coverage when any resource asks for it (with the first flags given).
    pub(crate) fn for_plan(plan: &KindPlan) -> Result<Self, SelectorError> {
        let selectors = plan.selectors::<TestRunSelector>()?;
        let results = selectors.is_empty() || selectors.iter().any(|s| s.include_results.0);
        let mut coverage: Option<Option<u64>> = None;
        for config in selectors.iter().filter_map(|s| s.code_coverage.as_ref()) {
            let flags = config.flags.and_then(|f| u64::try_from(f.0).ok());
            coverage = match coverage {
                Some(Some(existing)) => Some(Some(existing)),
                _ => Some(flags),
            };
        }
        Ok(Self { results, coverage })
    }
}

/// Largest page of the test-run list (`$top`/`$skip`; no continuation token).
const TEST_RUNS_PAGE_MAX: usize = 100;

impl Crawler {
    /// Every `test-run` crawl unit of the resync at once (one per distinct selector): one
    /// listing of each project's runs feeds them all, each run enriched once for what any unit
    /// asks (its results; its build's coverage per distinct `flags`) and published to each
    /// unit with only what that unit asks.
    pub(crate) async fn crawl_test_runs(
        &self,
        mut crawls: Vec<KindCrawl<'_>>,
    ) -> Result<(), CrawlError> {
        let Some(cache) = crawls.first().map(|crawl| crawl.cache) else {
            return Ok(());
        };
        // At most what the API serves, so that a short page is the last one.
        let top = self.limits.page.min(TEST_RUNS_PAGE_MAX);
        let enrichments = (crawls.iter())
            .map(|crawl| TestRunEnrichment::for_plan(crawl.plan))
            .collect::<Result<Vec<_>, _>>()?;
        // Incremental: runs updated since the cursor (the earliest of the units'), in windows
        // of at most 7 days (what the API allows); a full resync reads them all in one listing.
        let since = match crawls.iter().any(|crawl| crawl.plan.since.is_none()) {
            true => None,
            false => crawls.iter().filter_map(|crawl| crawl.plan.since).min(),
        };
        let windows: Vec<Option<(String, String)>> = match since {
            None => vec![None],
            Some(since) => update_windows(since, chrono::Utc::now())
                .into_iter()
                .map(|(a, b)| Some((crate::cursors::iso(a), crate::cursors::iso(b))))
                .collect(),
        };
        let (windows, enrichments) = (&windows, &enrichments);
        let units = self.project_units(cache).await?;
        self.fan_out_to(
            &mut crawls,
            units,
            |project: Value, pages: Pages| async move {
                let project_id = &ProjectId::new(text(&project, "id").unwrap_or_default());
                for window in windows {
                    let updated = window.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
                    let mut skip = 0;
                    loop {
                        let runs = self
                            .client
                            .test_runs_page(project_id, None, updated, top, skip)
                            .await?;
                        if runs.is_empty() {
                            break;
                        }
                        skip += runs.len();
                        // A short page is the last one: no request for an empty page after it.
                        let last = runs.len() < top;
                        let builder = self.items();
                        let enriched: Vec<Vec<Value>> = stream::iter(runs)
                            .map(|run| builder.test_run_for_each(project_id, run, enrichments))
                            .buffered(ENRICHMENT_CONCURRENCY)
                            .try_collect()
                            .await?;
                        let mut per_unit =
                            vec![Vec::with_capacity(enriched.len()); enrichments.len()];
                        for items in enriched {
                            for (unit, item) in per_unit.iter_mut().zip(items) {
                                unit.push(item);
                            }
                        }
                        for (index, items) in per_unit.into_iter().enumerate() {
                            pages.send_to(index, items).await?;
                        }
                        if last {
                            break;
                        }
                    }
                }
                Ok(())
            },
        )
        .await
    }
}

type Time = chrono::DateTime<chrono::Utc>;

/// The test-run API's update windows from `since` to `now`: 7 days at most each.
fn update_windows(since: Time, now: Time) -> Vec<(Time, Time)> {
    let mut windows = Vec::new();
    let mut start = since;
    while start < now {
        let end = (start + chrono::Duration::days(7)).min(now);
        windows.push((start, end));
        start = end;
    }
    if windows.is_empty() {
        windows.push((since, since.max(now)));
    }
    windows
}

impl ItemBuilder<'_> {
    /// A `test-run` item: the run (as listed with `includeRunDetails=true`) with
    /// `__testResults` and `__codeCoverage` as `enrichment` asks.
    pub(crate) async fn test_run(
        &self,
        project_id: &ProjectId,
        run: Value,
        enrichment: TestRunEnrichment,
    ) -> Result<Value, AdoError> {
        let mut items = self
            .test_run_for_each(project_id, run, &[enrichment])
            .await?;
        Ok(items.pop().unwrap_or(Value::Null))
    }

    /// The `test-run` item of `run` for each of `enrichments`, in order: the results read
    /// once if any asks for them, the coverage once per distinct `flags` asked for.
    pub(crate) async fn test_run_for_each(
        &self,
        project_id: &ProjectId,
        run: Value,
        enrichments: &[TestRunEnrichment],
    ) -> Result<Vec<Value>, AdoError> {
        // Not asked for, the fields are still there, empty (`[]`, `{}`), as the Python
        // integration writes them.
        let results = match id_text(&run, "id").map(TestRunId::new) {
            Some(run_id) if enrichments.iter().any(|e| e.results) => {
                self.test_results(project_id, &run_id).await?
            }
            _ => Vec::new(),
        };
        let results = Value::Array(results);
        let build_id = (run.get("build").and_then(|b| id_text(b, "id"))).map(BuildId::new);
        let mut coverages: Vec<(Option<u64>, Value)> = Vec::new();
        for flags in enrichments.iter().filter_map(|e| e.coverage) {
            if coverages.iter().any(|(read, _)| *read == flags) {
                continue;
            }
            let coverage = match &build_id {
                Some(build_id) => {
                    match self
                        .client
                        .build_code_coverage(project_id, build_id, flags)
                        .await
                    {
                        Ok(Value::Null) => json!({}),
                        // The run's build is gone: no coverage, as the Python integration has it.
                        Err(e) if e.says_missing(BUILD_GONE) => json!({}),
                        Ok(coverage) => coverage,
                        Err(e) => return Err(e),
                    }
                }
                None => json!({}),
            };
            coverages.push((flags, coverage));
        }
        let (empty_results, no_coverage) = (json!([]), json!({}));
        Ok((enrichments.iter())
            .map(|enrichment| {
                let results = if enrichment.results {
                    &results
                } else {
                    &empty_results
                };
                let coverage = (enrichment.coverage)
                    .and_then(|flags| coverages.iter().find(|(read, _)| *read == flags))
                    .map_or(&no_coverage, |(_, coverage)| coverage);
                let run = enrich(run.clone(), "__testResults", results);
                enrich(run, "__codeCoverage", coverage)
            })
            .collect())
    }

    /// Every result of a test run (`$top`/`$skip` until a short page). None if Azure DevOps
    /// says on the first page that the run is gone; a 404 on a later page fails the read (the
    /// results are not "the ones read so far").
    async fn test_results(
        &self,
        project_id: &ProjectId,
        run_id: &TestRunId,
    ) -> Result<Vec<Value>, AdoError> {
        let top = self.page;
        let mut all = Vec::new();
        loop {
            let page = match self
                .client
                .test_results_page(project_id, run_id, top, all.len())
                .await
            {
                Ok(page) => page,
                Err(e) if all.is_empty() && e.says_missing(RUN_GONE) => return Ok(all),
                Err(e) => return Err(e),
            };
            let short = page.len() < top;
            all.extend(page);
            if short {
                return Ok(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_on_by_default_and_coverage_off() {
        let enrichment =
            |selectors: &[Value]| TestRunEnrichment::for_plan(&KindPlan::of("test-run", selectors));
        let default = enrichment(&[json!({})]).expect("reads");
        assert_eq!(
            default,
            TestRunEnrichment {
                results: true,
                coverage: None
            }
        );
        let off = enrichment(&[json!({"includeResults": false})]).expect("reads");
        assert!(!off.results);
        let coverage = enrichment(&[
            json!({"includeResults": "false"}),
            json!({"includeResults": false, "codeCoverage": {"flags": 2}}),
        ])
        .expect("reads");
        assert_eq!(
            coverage,
            TestRunEnrichment {
                results: false,
                coverage: Some(Some(2))
            }
        );
        let no_flags = enrichment(&[json!({"codeCoverage": {}})]).expect("reads");
        let refused = enrichment(&[json!({}), json!({"codeCoverage": 2})]);
        assert_eq!(
            refused.map_err(|e| (e.resource, e.field)),
            Err((2, "codeCoverage".to_string()))
        );
        assert_eq!(no_flags.coverage, Some(None));
    }
}
