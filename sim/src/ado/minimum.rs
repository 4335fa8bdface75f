//! The fewest Azure DevOps requests a resync of the simulated organization can make for a
//! mapping, kind by kind, next to the requests it received, attributed to the same kinds: what
//! `adoport bench` and `scripts/side-by-side.sh --bench` print as "made N, minimum M".
//!
//! The minimum counts one request per page of each list at the largest page the API allows
//! (as this simulator serves it), batch endpoints where they exist, and one read per item only
//! where no list or batch returns what the mapping needs:
//!
//! - projects: one page per [`AdoSimConfig::max_page_size`] projects (every kind needs them);
//!   `project` with `defaultTeam` one read per project (only the single read has it);
//! - repositories: one list per project (the API does not page), for every kind read repository
//!   by repository (adoport keeps that list for those kinds up to a byte limit, about 8,000
//!   repositories, `REPOSITORY_LIST_BYTES` of the ingest crate; past it each of them lists each
//!   project's repositories again, one more list per project and kind than this minimum);
//! - `repository` `includedFiles`: per repository with a default branch, one read for a single
//!   file; for several, the fewer of one read each and one `itemsbatch` (or folder listing)
//!   telling which exist plus one read per existing file (the items API serves one file's
//!   content per request);
//! - `repository-policy`: one page of the project's policy configurations per project with a
//!   healthy repository (1000 a page);
//! - `board` / `column` (one row: a resync reads the boards once for both): one page of the
//!   organization's teams per 100 teams, per team one board list, per board one read (its
//!   columns) (adoport keeps the boards for the second kind up to a byte limit, about 1,000
//!   boards, `BOARD_LIST_BYTES` of the ingest crate; past it the second kind reads them again,
//!   one more board list per team and one more read per board than this minimum);
//! - `work-item`: per project one WIQL query and one `workitemsbatch` per 200 ids (the
//!   simulator's WIQL matches every item of the default mapping's query);
//! - `release`: one page of 100 releases per project and distinct selector (filters and
//!   `expand` are the API's: each distinct selector is another list);
//! - GitOps (`specPath`, default `port.yml`): one read per spec path of each healthy repository;
//! - `pull-request`: per project with a healthy repository and per status the kind reads
//!   (active, and abandoned and completed closed within the selectors' widest window), the
//!   project's list (every repository's, 1000 a page; `maxResults` cut per repository
//!   afterwards), or each healthy repository's list cut at the largest `maxResults` where
//!   those are fewer pages;
//! - `branch`: one `refs` page per healthy repository (1000 a page);
//! - `advanced-security-alert`: one alerts page per healthy repository and distinct selector
//!   (the criteria are the API's);
//! - `wiki`: one wikis list per project, one `pagesbatch` per 100 pages of each wiki and, with
//!   `includeContent`, one read per page (the batch has no content);
//! - `team`, `member`, `iteration`, `area-path` (one row): one page of the organization's
//!   teams per 100 (which the boards then share), per team one members read (`member` or
//!   `includeMembers`), one team field values read (`includeAreaPaths`) and one iterations
//!   read (`iteration`), per project one classification-nodes read per distinct `area-path`
//!   selector;
//! - `user`, `group`, `group-member` (one row): one page per `identity_page_size` of each list
//!   read (entitlements for `source: entitlements`; graph users for `source: graph` or
//!   `group-member`; graph groups for `group`, `group-member` or `includeGroupMemberships`,
//!   which names every group a membership points to), one memberships read per user
//!   (`includeGroupMemberships`) and per group (`group-member`);
//! - `work-item`: the WIQL query and batches above per distinct selector (WIQL and `expand`
//!   are the API's; a narrower query's ids are counted as every item of the project, which
//!   differs only past 200 items);
//! - `pipeline`, `pipeline-run` (one row): one pipelines page per project (1000 a page), per
//!   pipeline one build-definition read (`includeRepo`: the simulator serves no definitions
//!   list by ids) and one runs list (`pipeline-run`; the API does not page it);
//! - `build`, `pipeline-stage` (one row): one builds page per project, per build one changes
//!   read (`enrichWithFirstCommit`: plus its source commit when it lists no changes, the
//!   `__firstCommit` the Python integration publishes then) and one timeline read
//!   (`pipeline-stage`);
//! - `environment`, `pipeline-deployment` (one row): one environments page per project, per
//!   environment one deployment-records page (`pipeline-deployment`);
//! - `release-definition`: one page per project and distinct selector; `release-deployment`:
//!   one page per project;
//! - `test-run`: one page of 100 runs per project, per run one results page (unless every
//!   selector says `includeResults: false`), per run of a build one code-coverage read (when a
//!   selector asks `codeCoverage`);
//! - `file`, `folder` (with either, one row holds every Git item read: `repository`
//!   `includedFiles` and GitOps as above, plus): per healthy repository with a default branch
//!   that a `files` rule covers, one recursive listing (it tells which paths exist and match)
//!   and one read per matching file and per existing `includedFiles` path (from the root) of a
//!   rule with a match there; per
//!   `folders` entry one listing per repository it names (every healthy one when none).
//!
//! Requests are attributed by route; item reads by the path they ask for (an `includedFiles`
//! path is `repository`'s, a spec path GitOps') unless `file` or `folder` is mapped (then all
//! are the Git content row's). What no row claims is `other` (minimum 0), and kinds of the
//! mapping not listed above are named in [`RequestReport::unmodeled`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::content::WIKI_PAGES;
use super::pipelines::{BUILDS_PER_PIPELINE, ENVIRONMENTS_PER_PROJECT, PIPELINES_PER_PROJECT};
use super::runs::{DEPLOYMENTS_PER_ENVIRONMENT, RESULTS_PER_TEST_RUN, TEST_RUNS_PER_PROJECT};
use super::seed::Organization;
use super::work::POLICIES_PAGE_MAX;
use super::{AdoSim, AdoSimConfig};
use crate::traffic::lock;

/// Most ids one `workitemsbatch` takes.
const WORK_ITEMS_BATCH: u64 = 200;
/// Largest page of the releases list.
const RELEASES_PAGE_MAX: u64 = 100;
/// Largest page of a pull-request list.
const PULL_REQUEST_PAGE_MAX: u64 = 1000;
/// Largest page of the lists paged with a continuation token (pipelines, builds,
/// environments, deployment records, refs, alerts).
const TOKEN_PAGE_MAX: u64 = 1000;
/// Largest page of the test-run list (`$top`/`$skip`).
const TEST_RUNS_PAGE_MAX: u64 = 100;
/// Largest page of a test run's results.
const TEST_RESULTS_PAGE_MAX: u64 = 1000;
/// Most pages one wiki `pagesbatch` returns.
const WIKI_PAGES_BATCH_MAX: u64 = 100;
/// Teams per page of the organization's teams list (`$top` the simulator serves by default).
const TEAMS_PAGE_MAX: u64 = 100;
/// Teams of a simulated project (its default team).
const TEAMS_PER_PROJECT: u64 = 1;
/// Policy configurations of a simulated repository with a default branch
/// (`Organization::policies_json`).
const POLICIES_PER_REPOSITORY: u64 = 2;

/// One row: a kind (or a list several kinds share), the requests made and the fewest possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRequests {
    pub kind: String,
    pub made: u64,
    pub minimum: u64,
}

/// The rows of a mapping's requests, and the kinds the minimum does not model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestReport {
    pub rows: Vec<KindRequests>,
    pub unmodeled: Vec<String>,
}

impl RequestReport {
    pub fn made(&self) -> u64 {
        self.rows.iter().map(|r| r.made).sum()
    }

    pub fn minimum(&self) -> u64 {
        self.rows.iter().map(|r| r.minimum).sum()
    }

    /// The row of `kind`.
    pub fn row(&self, kind: &str) -> Option<&KindRequests> {
        self.rows.iter().find(|r| r.kind == kind)
    }

    /// This report with `made` counted from `earlier` on (the rows of both come from the same
    /// mapping): one run's share of a simulator that served several.
    pub fn since(&self, earlier: &RequestReport) -> RequestReport {
        let mut out = self.clone();
        for row in &mut out.rows {
            let before = earlier.row(&row.kind).map_or(0, |r| r.made);
            row.made = row.made.saturating_sub(before);
        }
        out
    }
}

/// `made/minimum`, one decimal more than needed for 1.05 (`-` when the minimum is 0).
fn ratio(made: u64, minimum: u64) -> String {
    if minimum == 0 {
        "-".into()
    } else {
        format!("{:.2}", made as f64 / minimum as f64)
    }
}

impl fmt::Display for RequestReport {
    /// One line per row, then the total: `Azure DevOps requests: made N, minimum M (N/M)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in &self.rows {
            writeln!(
                f,
                "Azure DevOps requests, {:<48} made {:>6}, minimum {:>6} ({})",
                format!("{}:", row.kind),
                row.made,
                row.minimum,
                ratio(row.made, row.minimum)
            )?;
        }
        if !self.unmodeled.is_empty() {
            writeln!(
                f,
                "(no minimum modelled for {}: their requests count as other)",
                self.unmodeled.join(", ")
            )?;
        }
        let (made, minimum) = (self.made(), self.minimum());
        write!(
            f,
            "Azure DevOps requests: made {made}, minimum {minimum} ({})",
            ratio(made, minimum)
        )
    }
}

/// What the minimum reads of a mapping (a port-app-config as JSON).
#[derive(Debug, Default)]
struct Wanted {
    kinds: BTreeSet<String>,
    /// Each kind's distinct selectors, `query` left out (what the API is asked differs only
    /// between these).
    selectors: BTreeMap<String, BTreeSet<String>>,
    default_team: bool,
    included_files: Vec<String>,
    spec_paths: Vec<String>,
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `README.md`, `/README.md` → `/readme.md` (item paths compare case-insensitively).
fn item_key(path: &str) -> String {
    format!("/{}", path.trim().trim_start_matches('/')).to_ascii_lowercase()
}

impl Wanted {
    fn of(mapping: &Value) -> Wanted {
        let mut wanted = Wanted::default();
        let resources = mapping.get("resources").and_then(Value::as_array);
        for resource in resources.into_iter().flatten() {
            let Some(kind) = resource.get("kind").and_then(Value::as_str) else {
                continue;
            };
            wanted.kinds.insert(kind.to_string());
            let selector = resource.get("selector");
            let mut options = selector.cloned().unwrap_or(Value::Null);
            if let Some(map) = options.as_object_mut() {
                map.remove("query");
            }
            (wanted.selectors.entry(kind.to_string()).or_default()).insert(options.to_string());
            let option = |name: &str| selector.and_then(|s| s.get(name));
            match kind {
                "project" => wanted.default_team |= truthy(option("defaultTeam")),
                "repository" => {
                    for path in strings(option("includedFiles")) {
                        if !wanted.included_files.contains(&path) {
                            wanted.included_files.push(path);
                        }
                    }
                }
                _ => {}
            }
        }
        wanted.spec_paths = match mapping.get("specPath") {
            None | Some(Value::Null) => vec!["port.yml".to_string()],
            other => strings(other),
        };
        wanted
    }

    /// The distinct selectors of `kind` (without `query`), as JSON.
    fn options(&self, kind: &str) -> Vec<Value> {
        (self.selectors.get(kind).into_iter().flatten())
            .map(|text| serde_json::from_str(text).unwrap_or(Value::Null))
            .collect()
    }

    /// How many different requests of its list `kind`'s selectors make (at least 1).
    fn sets(&self, kind: &str) -> u64 {
        self.selectors
            .get(kind)
            .map_or(1, |s| s.len().max(1) as u64)
    }

    /// Whether any selector of `kind` sets `name` true (`default` when unset).
    fn any(&self, kind: &str, name: &str, default: bool) -> bool {
        self.options(kind).iter().any(|o| match o.get(name) {
            None | Some(Value::Null) => default,
            value => truthy(value),
        })
    }

    fn has(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }

    /// Whether the `file` or `folder` kind reads Git content besides `includedFiles` and
    /// GitOps: then one row holds every item read.
    fn reads_content(&self) -> bool {
        self.has("file") || self.has("folder")
    }

    fn reads_teams(&self) -> bool {
        ["team", "member", "iteration", "area-path"]
            .iter()
            .any(|k| self.has(k))
    }

    fn reads_repositories(&self) -> bool {
        !self.spec_paths.is_empty()
            || self.kinds.iter().any(|k| {
                matches!(
                    k.as_str(),
                    "repository"
                        | "repository-policy"
                        | "pull-request"
                        | "branch"
                        | "file"
                        | "folder"
                        | "advanced-security-alert"
                )
            })
    }
}

/// Kinds whose minimum [`minimum_rows`] models (every kind adoport reads).
const MODELED: &[&str] = &[
    "project",
    "repository",
    "repository-policy",
    "pull-request",
    "branch",
    "file",
    "folder",
    "wiki",
    "advanced-security-alert",
    "team",
    "member",
    "iteration",
    "area-path",
    "user",
    "group",
    "group-member",
    "board",
    "column",
    "work-item",
    "release",
    "pipeline",
    "build",
    "environment",
    "release-definition",
    "release-deployment",
    "pipeline-run",
    "pipeline-stage",
    "pipeline-deployment",
    "test-run",
];

const PROJECTS_ROW: &str = "projects (list; every kind)";
const REPOSITORIES_ROW: &str = "repositories (lists; repository-derived kinds)";
const BOARDS_ROW: &str = "board, column (teams, boards, board reads)";
const GITOPS_ROW: &str = "gitops (specPath reads)";
const CONTENT_ROW: &str = "git content (repository includedFiles, file, folder, gitops)";
const TEAMS_ROW: &str = "team, member, iteration, area-path";
const IDENTITY_ROW: &str = "user, group, group-member (graph, entitlements)";
const PIPELINES_ROW: &str = "pipeline, pipeline-run (pipelines, definitions, runs)";
const BUILDS_ROW: &str = "build, pipeline-stage (builds, changes, timelines)";
const ENVIRONMENTS_ROW: &str = "environment, pipeline-deployment";
const OTHER_ROW: &str = "other";

/// The fewest requests per row for `mapping` (see the module docs), `made` left at 0.
fn minimum_rows(org: &Organization, config: &AdoSimConfig, wanted: &Wanted) -> Vec<KindRequests> {
    let page_size = config.max_page_size;
    let row = |kind: &str, minimum: u64| KindRequests {
        kind: kind.to_string(),
        made: 0,
        minimum,
    };
    let projects = org.projects.len() as u64;
    let healthy = |r: &&super::seed::Repository| !r.is_disabled;
    let enabled = org.repositories.iter().filter(healthy).count() as u64;
    let mut rows = vec![row(
        PROJECTS_ROW,
        projects.div_ceil(page_size.max(1) as u64).max(1),
    )];
    if wanted.reads_repositories() {
        rows.push(row(REPOSITORIES_ROW, projects));
    }
    if wanted.kinds.contains("project") {
        rows.push(row(
            "project",
            if wanted.default_team { projects } else { 0 },
        ));
    }
    let included = if wanted.kinds.contains("repository") {
        let n = wanted.included_files.len() as u64;
        org.repositories
            .iter()
            .filter(|r| r.default_branch.is_some())
            .map(|r| match n {
                0 => 0,
                1 => 1,
                _ => {
                    let existing = (wanted.included_files.iter())
                        .filter(|path| file_exists(org, r, path))
                        .count() as u64;
                    n.min(1 + existing)
                }
            })
            .sum()
    } else {
        0
    };
    let gitops = enabled * wanted.spec_paths.len() as u64;
    if wanted.reads_content() {
        let content = included + gitops + file_reads(org, wanted) + folder_listings(org, wanted);
        rows.push(row(CONTENT_ROW, content));
    } else if wanted.kinds.contains("repository") {
        rows.push(row("repository", included));
    }
    if wanted.kinds.contains("repository-policy") {
        let lists = org
            .projects
            .iter()
            .filter(|p| (org.repositories.iter().filter(healthy)).any(|r| r.project_id == p.id))
            .map(|p| {
                let policies = (org.repositories.iter())
                    .filter(|r| r.project_id == p.id && r.default_branch.is_some())
                    .count() as u64
                    * POLICIES_PER_REPOSITORY;
                policies.div_ceil(POLICIES_PAGE_MAX as u64).max(1)
            })
            .sum();
        rows.push(row("repository-policy", lists));
    }
    if wanted.has("pull-request") {
        rows.push(row("pull-request", pull_request_lists(org, wanted)));
    }
    if wanted.has("branch") {
        rows.push(row("branch", enabled));
    }
    if wanted.has("advanced-security-alert") {
        let sets = wanted.sets("advanced-security-alert");
        rows.push(row("advanced-security-alert", enabled * sets));
    }
    if wanted.has("wiki") {
        let wikis = org.git.wikis.len() as u64;
        let pages = WIKI_PAGES.len() as u64;
        let content = if wanted.any("wiki", "includeContent", false) {
            wikis * pages
        } else {
            0
        };
        rows.push(row(
            "wiki",
            projects + wikis * pages.div_ceil(WIKI_PAGES_BATCH_MAX) + content,
        ));
    }
    let teams = projects * TEAMS_PER_PROJECT;
    let team_pages = teams.div_ceil(TEAMS_PAGE_MAX).max(1);
    if wanted.reads_teams() {
        let members = wanted.has("member") || wanted.any("team", "includeMembers", false);
        let areas = wanted.any("team", "includeAreaPaths", false);
        let minimum = team_pages
            + if members { teams } else { 0 }
            + if areas { teams } else { 0 }
            + if wanted.has("iteration") { teams } else { 0 }
            + if wanted.has("area-path") {
                projects * wanted.sets("area-path")
            } else {
                0
            };
        rows.push(row(TEAMS_ROW, minimum));
    }
    if wanted.kinds.contains("board") || wanted.kinds.contains("column") {
        // The simulator's projects have one team (the default), which has one board; the
        // teams list counts for the team row when the mapping has one.
        let list = if wanted.reads_teams() { 0 } else { team_pages };
        rows.push(row(BOARDS_ROW, list + 2 * teams));
    }
    if wanted.has("user") || wanted.has("group") || wanted.has("group-member") {
        rows.push(row(
            IDENTITY_ROW,
            identity_minimum(org, config.identity_page_size as u64, wanted),
        ));
    }
    if wanted.kinds.contains("work-item") {
        let reads: u64 = (org.projects.iter())
            .map(|p| {
                let items = (org.work_items.iter())
                    .filter(|w| w.project_id == p.id)
                    .count() as u64;
                1 + items.div_ceil(WORK_ITEMS_BATCH)
            })
            .sum();
        rows.push(row("work-item", reads * wanted.sets("work-item")));
    }
    if wanted.kinds.contains("release") {
        let pages = org.releases_per_project.div_ceil(RELEASES_PAGE_MAX).max(1);
        rows.push(row("release", projects * pages * wanted.sets("release")));
    }
    if wanted.has("pipeline") || wanted.has("pipeline-run") {
        let reads = u64::from(wanted.any("pipeline", "includeRepo", false))
            + u64::from(wanted.has("pipeline-run"));
        rows.push(row(
            PIPELINES_ROW,
            listed_per_project(projects, PIPELINES_PER_PROJECT, reads),
        ));
    }
    if wanted.has("build") || wanted.has("pipeline-stage") {
        let first_commit = wanted.any("build", "enrichWithFirstCommit", false);
        let reads = u64::from(first_commit) + u64::from(wanted.has("pipeline-stage"));
        // A build without changes: its `__firstCommit` is its source commit, one read.
        let source_commits = match first_commit {
            true => (org.projects.iter())
                .map(|project| {
                    (1..=PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE)
                        .filter(|&build| org.build_without_changes(project, build))
                        .count() as u64
                })
                .sum(),
            false => 0,
        };
        rows.push(row(
            BUILDS_ROW,
            listed_per_project(projects, PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE, reads)
                + source_commits,
        ));
    }
    if wanted.has("environment") || wanted.has("pipeline-deployment") {
        let records = if wanted.has("pipeline-deployment") {
            DEPLOYMENTS_PER_ENVIRONMENT.div_ceil(TOKEN_PAGE_MAX)
        } else {
            0
        };
        rows.push(row(
            ENVIRONMENTS_ROW,
            listed_per_project(projects, ENVIRONMENTS_PER_PROJECT, records),
        ));
    }
    if wanted.has("release-definition") {
        rows.push(row(
            "release-definition",
            projects * wanted.sets("release-definition"),
        ));
    }
    if wanted.has("release-deployment") {
        rows.push(row("release-deployment", projects));
    }
    if wanted.has("test-run") {
        let runs = projects * TEST_RUNS_PER_PROJECT;
        let results = if wanted.any("test-run", "includeResults", true) {
            runs * RESULTS_PER_TEST_RUN.div_ceil(TEST_RESULTS_PAGE_MAX)
        } else {
            0
        };
        // Code coverage is of a build: the runs with one (all but the manual last).
        let coverage = if (wanted.options("test-run").iter())
            .any(|o| o.get("codeCoverage").is_some_and(|c| !c.is_null()))
        {
            projects * (TEST_RUNS_PER_PROJECT - 1)
        } else {
            0
        };
        let pages = projects * TEST_RUNS_PER_PROJECT.div_ceil(TEST_RUNS_PAGE_MAX);
        rows.push(row("test-run", pages + results + coverage));
    }
    if !wanted.spec_paths.is_empty() && !wanted.reads_content() {
        rows.push(row(GITOPS_ROW, gitops));
    }
    rows.push(row(OTHER_ROW, 0));
    rows
}

/// A list of `per_project` items in each of `projects` (paged by continuation token), and
/// `reads_per_item` requests for every item listed: the shape of the pipeline, build and
/// environment rows (a definition and a runs list per pipeline; changes and a timeline per
/// build; the deployment-record pages per environment).
fn listed_per_project(projects: u64, per_project: u64, reads_per_item: u64) -> u64 {
    projects * (per_project.div_ceil(TOKEN_PAGE_MAX) + per_project * reads_per_item)
}

/// `user`, `group`, `group-member`: the pages of the lists they read (entitlements, graph
/// users, graph groups), one memberships read per user (`includeGroupMemberships`: the groups
/// list names those groups) and per group (`group-member`: its members, named by the users and
/// groups lists).
/// `pull-request`: per project with a healthy repository and per status (active; abandoned
/// and completed closed within the widest `minTimeInDays`), the fewer pages of the project's
/// list (every repository's) and of each healthy repository's own list cut at the largest
/// `maxResults` (active ones uncut), 1000 a page and at least one page a list.
fn pull_request_lists(org: &Organization, wanted: &Wanted) -> u64 {
    let option = |name: &str, default: u64| {
        let set = wanted
            .options("pull-request")
            .iter()
            .map(|o| o.get(name).and_then(Value::as_u64))
            .collect::<Vec<_>>();
        // A selector without the option reads with the default.
        set.into_iter()
            .map(|v| v.unwrap_or(default))
            .max()
            .unwrap_or(default)
    };
    let (days, max_results) = (option("minTimeInDays", 7), option("maxResults", 100));
    // Beyond a million days (before year 0) every pull request is within the window.
    let since = chrono::Utc::now() - chrono::Duration::days(days.min(1_000_000) as i64);
    let pages = |count: u64| count.div_ceil(PULL_REQUEST_PAGE_MAX).max(1);
    let mut lists = 0;
    for project in &org.projects {
        let repositories: Vec<_> = (org.repositories.iter())
            .filter(|r| r.project_id == project.id && !r.is_disabled)
            .collect();
        if repositories.is_empty() {
            continue;
        }
        for status in ["active", "abandoned", "completed"] {
            let listed = |repository: &super::seed::Repository| {
                (org.pull_requests.iter())
                    .filter(|pr| pr.repository_id == repository.id && pr.status == status)
                    .filter(|pr| status == "active" || pr.closed_date.is_some_and(|t| t >= since))
                    .count() as u64
            };
            let of_project = (org.repositories.iter())
                .filter(|r| r.project_id == project.id)
                .map(listed)
                .sum::<u64>();
            let by_repository = (repositories.iter())
                .map(|r| match status {
                    "active" => pages(listed(r)),
                    _ => pages(listed(r).min(max_results)),
                })
                .sum::<u64>();
            lists += pages(of_project).min(by_repository);
        }
    }
    lists
}

fn identity_minimum(org: &Organization, page: u64, wanted: &Wanted) -> u64 {
    let users = org.users.len() as u64;
    let groups = org
        .groups(&super::seed::Urls::new("minimum", "minimum"))
        .len() as u64;
    let page = page.max(1);
    let sources: BTreeSet<String> = (wanted.options("user").iter())
        .map(|o| {
            (o.get("source").and_then(Value::as_str))
                .unwrap_or("entitlements")
                .to_ascii_lowercase()
        })
        .collect();
    let memberships = wanted.any("user", "includeGroupMemberships", false);
    let graph_users = sources.contains("graph") || wanted.has("group-member");
    let group_list = wanted.has("group") || wanted.has("group-member") || memberships;
    let mut minimum = 0;
    if sources.contains("entitlements") {
        minimum += users.div_ceil(page).max(1);
    }
    if graph_users {
        minimum += users.div_ceil(page).max(1);
    }
    if group_list {
        minimum += groups.div_ceil(page).max(1);
    }
    if memberships {
        minimum += users;
    }
    if wanted.has("group-member") {
        minimum += groups;
    }
    minimum
}

/// `file`: per enabled repository with a default branch that a `files` rule covers, one
/// recursive listing (it says which paths exist and which match a pattern), then one read per
/// matching file and per existing `includedFiles` path (from the repository's root) of a rule
/// with a match there (distinct paths).
fn file_reads(org: &Organization, wanted: &Wanted) -> u64 {
    let mut total = 0;
    for repository in org.repositories.iter().filter(|r| !r.is_disabled) {
        let (Some(branch), Some(content)) = (
            &repository.default_branch,
            org.git.repositories.get(&repository.id),
        ) else {
            continue;
        };
        let Some(commit) = content.resolve(None, None, branch) else {
            continue;
        };
        let paths: Vec<String> = commit.tree.keys().map(|p| item_key(p)).collect();
        let mut reads = BTreeSet::new();
        let mut covered = false;
        for options in wanted.options("file") {
            let files = options.get("files");
            let repos = strings(files.and_then(|f| f.get("repos")));
            if !repos.is_empty()
                && !repos
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(&repository.name))
            {
                continue;
            }
            covered = true;
            let patterns = strings(files.and_then(|f| f.get("path")));
            let included = strings(options.get("includedFiles"));
            for path in &paths {
                if !patterns.iter().any(|p| glob_matches(&item_key(p), path)) {
                    continue;
                }
                reads.insert(path.clone());
                // From the repository's root, whatever the file's folder (as the Python
                // integration resolves them).
                for name in &included {
                    let next = item_key(name);
                    if paths.contains(&next) {
                        reads.insert(next);
                    }
                }
            }
        }
        total += u64::from(covered) + reads.len() as u64;
    }
    total
}

/// `folder`: one listing per repository each `folders` entry names (all enabled repositories
/// when it names none).
fn folder_listings(org: &Organization, wanted: &Wanted) -> u64 {
    let enabled = org.repositories.iter().filter(|r| !r.is_disabled).count() as u64;
    (wanted.options("folder").iter())
        .flat_map(|o| {
            o.get("folders")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|entry| match entry.get("repos").and_then(Value::as_array) {
            Some(repos) if !repos.is_empty() => repos.len() as u64,
            _ => enabled,
        })
        .sum()
}

/// Whether `path` (`/docs/a.md`, lowercase) matches `pattern` (`/docs/*.md`, `/**/x.json`):
/// `*` within a segment, `**` any number of segments.
fn glob_matches(pattern: &str, path: &str) -> bool {
    fn segments(p: &str) -> Vec<&str> {
        p.split('/').filter(|s| !s.is_empty()).collect()
    }
    fn segment(pattern: &str, name: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == name,
            Some((head, tail)) => {
                name.starts_with(head)
                    && (0..=name.len() - head.len()).any(|i| {
                        name.is_char_boundary(head.len() + i)
                            && segment(tail, &name[head.len() + i..])
                    })
            }
        }
    }
    fn walk(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, None) => true,
            (Some(&"**"), _) => {
                walk(&pattern[1..], path) || (!path.is_empty() && walk(pattern, &path[1..]))
            }
            (Some(p), Some(name)) => segment(p, name) && walk(&pattern[1..], &path[1..]),
            _ => false,
        }
    }
    walk(&segments(pattern), &segments(path))
}

/// Whether `path` is a file on the repository's default branch.
fn file_exists(org: &Organization, repository: &super::seed::Repository, path: &str) -> bool {
    let (Some(branch), Some(content)) = (
        &repository.default_branch,
        org.git.repositories.get(&repository.id),
    ) else {
        return false;
    };
    let wanted = item_key(path);
    content
        .resolve(None, None, branch)
        .is_some_and(|commit| commit.tree.keys().any(|p| item_key(p) == wanted))
}

/// The row a route's requests count for (`None`: item reads, split by path).
fn route_row(route: &str) -> Option<&'static str> {
    let path = route.split_once(' ').map_or(route, |(_, p)| p);
    let path = path.replace("[/{project}]", "");
    let repository = "/{org}/{project}/_apis/git/repositories/{repository}";
    let in_repository = |tail: &str| {
        path.strip_prefix(repository)
            .or_else(|| path.strip_prefix("/{org}/_apis/git/repositories/{repository}"))
            .is_some_and(|rest| rest.starts_with(tail))
    };
    if in_repository("/pull") || path.starts_with("/{org}/{project}/_apis/git/pull") {
        return Some("pull-request");
    }
    if in_repository("/refs") {
        return Some("branch");
    }
    if in_repository("/itemsbatch") {
        return None;
    }
    if in_repository("/commits") {
        return Some(BUILDS_ROW);
    }
    Some(match path.as_str() {
        "/{org}/_apis/projects" => PROJECTS_ROW,
        "/{org}/_apis/projects/{project}" => "project",
        "/{org}/{project}/_apis/git/repositories" => REPOSITORIES_ROW,
        "/{org}/{project}/_apis/git/policy/configurations"
        | "/{org}/{project}/_apis/policy/configurations" => "repository-policy",
        "/{org}/_apis/teams"
        | "/{org}/_apis/projects/{project}/teams"
        | "/{org}/{project}/{team}/_apis/work/boards"
        | "/{org}/{project}/{team}/_apis/work/boards/{board}" => BOARDS_ROW,
        "/{org}/_apis/projects/{project}/teams/{team}/members"
        | "/{org}/{project}/{team}/_apis/work/teamsettings/teamfieldvalues"
        | "/{org}/{project}/{team}/_apis/work/teamsettings/iterations"
        | "/{org}/{project}/_apis/wit/classificationnodes/{group}"
        | "/{org}/{project}/_apis/wit/classificationNodes/{group}" => TEAMS_ROW,
        "/{org}/_apis/graph/users"
        | "/{org}/_apis/graph/groups"
        | "/{org}/_apis/graph/memberships/{descriptor}"
        | "/{org}/_apis/graph/Memberships/{descriptor}"
        | "/{org}/_apis/graph/subjectlookup"
        | "/{org}/_apis/userentitlements" => IDENTITY_ROW,
        "/{org}/{project}/_apis/wit/wiql"
        | "/{org}/{project}/_apis/wit/workitemsbatch"
        | "/{org}/_apis/wit/workitemsbatch"
        | "/{org}/{project}/_apis/wit/workitems"
        | "/{org}/_apis/wit/workitems" => "work-item",
        "/{org}/{project}/_apis/release/releases" => "release",
        "/{org}/{project}/_apis/release/definitions" => "release-definition",
        "/{org}/{project}/_apis/release/deployments" => "release-deployment",
        "/{org}/{project}/_apis/pipelines"
        | "/{org}/{project}/_apis/pipelines/{pipelineId}"
        | "/{org}/{project}/_apis/pipelines/{pipelineId}/runs"
        | "/{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}"
        | "/{org}/{project}/_apis/build/definitions/{definitionId}" => PIPELINES_ROW,
        "/{org}/{project}/_apis/build/builds"
        | "/{org}/{project}/_apis/build/builds/{buildId}"
        | "/{org}/{project}/_apis/build/builds/{buildId}/timeline"
        | "/{org}/{project}/_apis/build/builds/{buildId}/changes" => BUILDS_ROW,
        "/{org}/{project}/_apis/distributedtask/environments"
        | "/{org}/{project}/_apis/distributedtask/environments/{environmentId}/environmentdeploymentrecords" => {
            ENVIRONMENTS_ROW
        }
        "/{org}/{project}/_apis/test/runs"
        | "/{org}/{project}/_apis/test/runs/{runId}/results"
        | "/{org}/{project}/_apis/test/codecoverage" => "test-run",
        "/{org}/{project}/_apis/alert/repositories/{repository}/alerts"
        | "/{org}/{project}/_apis/alert/repositories/{repository}/alerts/{alertId}" => {
            "advanced-security-alert"
        }
        "/{org}/_apis/wiki/wikis"
        | "/{org}/{project}/_apis/wiki/wikis"
        | "/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}"
        | "/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pagesbatch"
        | "/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages"
        | "/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages/{pageId}" => "wiki",
        // With or without the project in the path (the Python integration leaves it out).
        "/{org}/{project}/_apis/git/repositories/{repository}/items"
        | "/{org}/_apis/git/repositories/{repository}/items" => return None,
        _ => OTHER_ROW,
    })
}

impl AdoSim {
    /// The requests received so far and the fewest a resync of `mapping` (a port-app-config
    /// as JSON) needs, per kind (see the module docs). The minimum is of the organization as
    /// it is now.
    pub fn request_report(&self, mapping: &Value) -> RequestReport {
        let wanted = Wanted::of(mapping);
        let mut rows = {
            let org = lock(&self.state.organization);
            minimum_rows(&org, &self.state.config, &wanted)
        };
        let mut made: BTreeMap<&str, u64> = BTreeMap::new();
        let mut items = 0;
        let teams_list = |route: &str| {
            route.ends_with(" /{org}/_apis/teams") || route.ends_with("/{project}/teams")
        };
        for (route, count) in self.requests() {
            match route_row(&route) {
                // The team kinds list the organization's teams too: theirs, then.
                Some(BOARDS_ROW) if teams_list(&route) && wanted.reads_teams() => {
                    *made.entry(TEAMS_ROW).or_default() += count
                }
                Some(row) => *made.entry(row).or_default() += count,
                None if wanted.reads_content() => *made.entry(CONTENT_ROW).or_default() += count,
                None => items += count,
            }
        }
        if !wanted.reads_content() {
            let included: BTreeSet<String> =
                wanted.included_files.iter().map(|p| item_key(p)).collect();
            let specs: BTreeSet<String> = wanted.spec_paths.iter().map(|p| item_key(p)).collect();
            for (path, count) in lock(&self.state.item_reads).iter() {
                let row = if included.contains(path) {
                    "repository"
                } else if specs.contains(path) {
                    GITOPS_ROW
                } else {
                    continue;
                };
                *made.entry(row).or_default() += count;
                items = items.saturating_sub(*count);
            }
        }
        *made.entry(OTHER_ROW).or_default() += items;
        for (row, count) in made {
            match rows.iter_mut().find(|r| r.kind == row) {
                Some(existing) => existing.made += count,
                None => rows.push(KindRequests {
                    kind: row.to_string(),
                    made: count,
                    minimum: 0,
                }),
            }
        }
        let unmodeled = (wanted.kinds.iter())
            .filter(|k| !MODELED.contains(&k.as_str()))
            .cloned()
            .collect();
        RequestReport { rows, unmodeled }
    }
}

/// Counts one read of a single item at `path` (for [`AdoSim::request_report`]).
pub(crate) fn note_item_read(state: &super::AdoState, path: &str) {
    *lock(&state.item_reads).entry(item_key(path)).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::AdoSimConfig;

    /// Every route counts for one row at most: item reads (by path, with or without the
    /// project in the URL, as the Python integration sends them) are split by path, never
    /// also counted as `other`; work items read by GET count for `work-item`.
    #[test]
    fn item_reads_and_work_item_reads_count_for_their_kind_whatever_the_path() {
        for route in [
            "GET /{org}/{project}/_apis/git/repositories/{repository}/items",
            "GET /{org}/_apis/git/repositories/{repository}/items",
        ] {
            assert_eq!(route_row(route), None, "{route}");
        }
        for route in [
            "GET /{org}/{project}/_apis/wit/workitems",
            "GET /{org}/_apis/wit/workitems",
            "POST /{org}/{project}/_apis/wit/workitemsbatch",
        ] {
            assert_eq!(route_row(route), Some("work-item"), "{route}");
        }
        assert_eq!(route_row("GET /{org}/_apis/unknown"), Some(OTHER_ROW));
    }

    /// Two projects of three repositories: #3 is disabled, #5 empty (no default branch); all
    /// but #5 have a README.md, #0, #2 and #4 a CODEOWNERS (see `seed`).
    fn small() -> Organization {
        Organization::seed(&AdoSimConfig {
            projects: 2,
            repositories_per_project: 3,
            ..AdoSimConfig::default()
        })
    }

    fn default_mapping(included: Value) -> Value {
        json!({"resources": [
            {"kind": "project", "selector": {"query": "true", "defaultTeam": "true"}},
            {"kind": "repository", "selector": {"query": "true", "includedFiles": included}},
            {"kind": "repository-policy", "selector": {"query": "true"}},
            {"kind": "repository-policy", "selector": {"query": "false"}},
            {"kind": "board", "selector": {"query": "true"}},
            {"kind": "work-item", "selector": {"query": "true"}},
            {"kind": "column", "selector": {"query": "true"}},
            {"kind": "release", "selector": {"query": "true"}},
        ]})
    }

    fn minimums(mapping: &Value) -> BTreeMap<String, u64> {
        minimum_rows(&small(), &AdoSimConfig::default(), &Wanted::of(mapping))
            .into_iter()
            .map(|r| (r.kind, r.minimum))
            .collect()
    }

    #[test]
    fn the_default_mapping_needs_33_requests_of_a_small_organization() {
        let rows = minimums(&default_mapping(json!(["README.md", "CODEOWNERS"])));
        let expected: BTreeMap<String, u64> = [
            (PROJECTS_ROW, 1),
            (REPOSITORIES_ROW, 2),
            ("project", 2),
            // Five repositories with a default branch; each has README.md, so an itemsbatch
            // first would cost 2 or 3: two reads each.
            ("repository", 10),
            // One listing per project (each has a healthy repository).
            ("repository-policy", 2),
            // The organization's teams page, then per project the default team's boards and
            // its one board.
            (BOARDS_ROW, 5),
            // Per project: the WIQL query and one batch of its 6 items.
            ("work-item", 4),
            ("release", 2),
            // port.yml of the five enabled repositories (the empty one included).
            (GITOPS_ROW, 5),
            (OTHER_ROW, 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(rows, expected);
        assert_eq!(rows.values().sum::<u64>(), 33);
    }

    #[test]
    fn included_files_cost_one_read_each_or_a_batch_and_the_existing_ones() {
        let one = minimums(&default_mapping(json!(["README.md"])));
        assert_eq!(one["repository"], 5);
        // README.md, CODEOWNERS and a file no repository has: #0, #2, #4 have two of the three
        // (a batch and two reads: 3), #1 and #3 one (2).
        let three = minimums(&default_mapping(json!([
            "README.md",
            "CODEOWNERS",
            "none.txt"
        ])));
        assert_eq!(three["repository"], 3 + 2 + 3 + 2 + 3);
        let none = minimums(&default_mapping(json!([])));
        assert_eq!(none["repository"], 0);
    }

    #[test]
    fn a_mapping_reads_only_the_lists_its_kinds_need() {
        let projects = json!({"specPath": [], "resources": [
            {"kind": "project", "selector": {"query": "true"}},
            {"kind": "pipeline", "selector": {"query": "true"}},
        ]});
        assert_eq!(
            minimums(&projects),
            BTreeMap::from([
                (PROJECTS_ROW.to_string(), 1),
                ("project".to_string(), 0),
                // One pipelines list per project.
                (PIPELINES_ROW.to_string(), 2),
                (OTHER_ROW.to_string(), 0),
            ])
        );
        assert_eq!(Wanted::of(&projects).kinds.len(), 2);
        let specs = json!({"specPath": ["a.yml", "b.yml"], "resources": []});
        assert_eq!(minimums(&specs)[GITOPS_ROW], 10);
    }

    #[test]
    fn globs_match_within_a_segment_and_across_folders() {
        assert!(glob_matches("/**/package.json", "/package.json"));
        assert!(glob_matches("/**/package.json", "/a/b/package.json"));
        assert!(glob_matches("/docs/*.md", "/docs/guide.md"));
        assert!(!glob_matches("/docs/*.md", "/docs/a/guide.md"));
        assert!(!glob_matches("/docs/*.md", "/readme.md"));
        assert!(glob_matches("/port.yml", "/port.yml"));
    }

    /// Two projects of three repositories (#3 disabled, #5 empty): five enabled, in both
    /// projects; one team and one wiki of six pages per project.
    #[test]
    fn every_kind_has_a_minimum_from_its_lists_and_reads() {
        let mapping = json!({"specPath": [], "resources": [
            {"kind": "pull-request", "selector": {"query": "true"}},
            {"kind": "pull-request", "selector": {"query": "true", "maxResults": 2}},
            {"kind": "branch", "selector": {"query": "true"}},
            {"kind": "advanced-security-alert", "selector": {"query": "true"}},
            {"kind": "wiki", "selector": {"query": "true", "includeContent": true}},
            {"kind": "team", "selector": {"query": "true", "includeMembers": true}},
            {"kind": "iteration", "selector": {"query": "true"}},
            {"kind": "pipeline", "selector": {"query": "true", "includeRepo": true}},
            {"kind": "pipeline-run", "selector": {"query": "true"}},
            {"kind": "build", "selector": {"query": "true"}},
            {"kind": "pipeline-stage", "selector": {"query": "true"}},
            {"kind": "environment", "selector": {"query": "true"}},
            {"kind": "pipeline-deployment", "selector": {"query": "true"}},
            {"kind": "release-definition", "selector": {"query": "true"}},
            {"kind": "release-definition", "selector": {"query": "true", "tagFilter": ["a"]}},
            {"kind": "release-deployment", "selector": {"query": "true"}},
            {"kind": "test-run", "selector": {"query": "true", "codeCoverage": {"flags": 7}}},
            {"kind": "user", "selector": {"query": "true", "source": "graph"}},
            {"kind": "group", "selector": {"query": "true"}},
        ]});
        let rows = minimums(&mapping);
        // Per project: active, abandoned and completed (the widest window; maxResults is cut
        // per repository afterwards).
        assert_eq!(rows["pull-request"], 2 * 3);
        assert_eq!(rows["branch"], 5);
        assert_eq!(rows["advanced-security-alert"], 5);
        // Per project the wikis list, a pagesbatch and a read per page.
        assert_eq!(rows["wiki"], 2 + 2 + 2 * 6);
        // The teams page, then per team its members and its iterations.
        assert_eq!(rows[TEAMS_ROW], 1 + 2 + 2);
        // Per project the pipelines page, per pipeline its definition and its runs.
        assert_eq!(rows[PIPELINES_ROW], 2 + 2 * 2 * 2);
        // Per project the builds page, per build its timeline (no first commit asked).
        assert_eq!(rows[BUILDS_ROW], 2 + 2 * 6);
        let first_commit = json!({"resources": [
            {"kind": "build", "selector": {"query": "true", "enrichWithFirstCommit": true}},
        ]});
        // Per build its changes; build 4 of each project lists none: its source commit too.
        assert_eq!(minimums(&first_commit)[BUILDS_ROW], 2 + 2 * 6 + 2);
        assert_eq!(rows[ENVIRONMENTS_ROW], 2 + 2 * 2);
        // Two distinct selectors: two lists per project.
        assert_eq!(rows["release-definition"], 2 * 2);
        assert_eq!(rows["release-deployment"], 2);
        // Per project the runs page, per run its results, per run of a build its coverage.
        assert_eq!(rows["test-run"], 2 + 2 * 3 + 2 * 2);
        // The graph users page and the groups page.
        assert_eq!(rows[IDENTITY_ROW], 2);
        assert_eq!(rows[REPOSITORIES_ROW], 2);
    }

    #[test]
    fn files_and_folders_share_one_row_with_included_files() {
        let mapping = json!({"specPath": [], "resources": [
            {"kind": "file", "selector": {"query": "true", "files": {"path": "README.md"}}},
            {"kind": "folder", "selector": {"query": "true",
                "folders": [{"path": "*", "repos": [{"name": "repo-0-0"}]}]}},
        ]});
        let rows = minimums(&mapping);
        // Four enabled repositories with a default branch, each with a README.md: a listing
        // and a read each; the folder entry names one repository: one listing.
        assert_eq!(rows[CONTENT_ROW], 4 * 2 + 1);
        assert!(!rows.contains_key("repository") && !rows.contains_key(GITOPS_ROW));
    }

    #[test]
    fn a_report_prints_each_row_and_the_total() {
        let report = RequestReport {
            rows: vec![
                KindRequests {
                    kind: "project".into(),
                    made: 3,
                    minimum: 2,
                },
                KindRequests {
                    kind: OTHER_ROW.into(),
                    made: 1,
                    minimum: 0,
                },
            ],
            unmodeled: vec!["pipeline".into()],
        };
        let text = report.to_string();
        assert!(text.contains("project:"), "{text}");
        assert!(
            text.ends_with("Azure DevOps requests: made 4, minimum 2 (2.00)"),
            "{text}"
        );
        let earlier = RequestReport {
            rows: vec![KindRequests {
                kind: "project".into(),
                made: 1,
                minimum: 2,
            }],
            unmodeled: Vec::new(),
        };
        assert_eq!(report.since(&earlier).made(), 3);
    }
}
