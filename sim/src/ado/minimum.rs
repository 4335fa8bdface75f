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
//!   by repository;
//! - `repository` `includedFiles`: per repository with a default branch, one read for a single
//!   file; for several, the fewer of one read each and one `itemsbatch` (or folder listing)
//!   telling which exist plus one read per existing file (the items API serves one file's
//!   content per request);
//! - `repository-policy`: one page of the project's policy configurations per project with a
//!   healthy repository (1000 a page);
//! - `board` / `column` (one row: a resync reads the boards once for both): one page of the
//!   organization's teams per 100 teams, per team one board list, per board one read (its
//!   columns);
//! - `work-item`: per project one WIQL query and one `workitemsbatch` per 200 ids (the
//!   simulator's WIQL matches every item of the default mapping's query);
//! - `release`: one page of 100 releases per project;
//! - GitOps (`specPath`, default `port.yml`): one read per spec path of each healthy repository.
//!
//! Requests are attributed by route; item reads by the path they ask for (an `includedFiles`
//! path is `repository`'s, a spec path GitOps'). What no row claims is `other` (minimum 0), and
//! kinds of the mapping not listed above are named in [`RequestReport::unmodeled`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::AdoSim;
use super::seed::Organization;
use super::work::POLICIES_PAGE_MAX;
use crate::traffic::lock;

/// Most ids one `workitemsbatch` takes.
const WORK_ITEMS_BATCH: u64 = 200;
/// Largest page of the releases list.
const RELEASES_PAGE_MAX: u64 = 100;
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

/// Kinds whose minimum [`minimum_requests`] models.
const MODELED: &[&str] = &[
    "project",
    "repository",
    "repository-policy",
    "board",
    "column",
    "work-item",
    "release",
];

const PROJECTS_ROW: &str = "projects (list; every kind)";
const REPOSITORIES_ROW: &str = "repositories (lists; repository-derived kinds)";
const BOARDS_ROW: &str = "board, column (teams, boards, board reads)";
const GITOPS_ROW: &str = "gitops (specPath reads)";
const OTHER_ROW: &str = "other";

/// The fewest requests per row for `mapping` (see the module docs), `made` left at 0.
fn minimum_rows(org: &Organization, page_size: usize, wanted: &Wanted) -> Vec<KindRequests> {
    let row = |kind: &str, minimum: u64| KindRequests {
        kind: kind.to_string(),
        made: 0,
        minimum,
    };
    let projects = org.projects.len() as u64;
    let healthy = |r: &&super::seed::Repository| !r.is_disabled;
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
    if wanted.kinds.contains("repository") {
        let n = wanted.included_files.len() as u64;
        let reads: u64 = org
            .repositories
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
            .sum();
        rows.push(row("repository", reads));
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
    if wanted.kinds.contains("board") || wanted.kinds.contains("column") {
        // The simulator's projects have one team (the default), which has one board.
        let teams = projects * TEAMS_PER_PROJECT;
        rows.push(row(BOARDS_ROW, teams.div_ceil(TEAMS_PAGE_MAX) + 2 * teams));
    }
    if wanted.kinds.contains("work-item") {
        let reads = (org.projects.iter())
            .map(|p| {
                let items = (org.work_items.iter())
                    .filter(|w| w.project_id == p.id)
                    .count() as u64;
                1 + items.div_ceil(WORK_ITEMS_BATCH)
            })
            .sum();
        rows.push(row("work-item", reads));
    }
    if wanted.kinds.contains("release") {
        let pages = org.releases_per_project.div_ceil(RELEASES_PAGE_MAX).max(1);
        rows.push(row("release", projects * pages));
    }
    if !wanted.spec_paths.is_empty() {
        let repositories = org.repositories.iter().filter(healthy).count() as u64;
        rows.push(row(
            GITOPS_ROW,
            repositories * wanted.spec_paths.len() as u64,
        ));
    }
    rows.push(row(OTHER_ROW, 0));
    rows
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
    Some(match path {
        "/{org}/_apis/projects" => PROJECTS_ROW,
        "/{org}/_apis/projects/{project}" => "project",
        "/{org}/{project}/_apis/git/repositories" => REPOSITORIES_ROW,
        "/{org}/{project}/_apis/git/policy/configurations"
        | "/{org}/{project}/_apis/policy/configurations" => "repository-policy",
        "/{org}/_apis/teams"
        | "/{org}/_apis/projects/{project}/teams"
        | "/{org}/{project}/{team}/_apis/work/boards"
        | "/{org}/{project}/{team}/_apis/work/boards/{board}" => BOARDS_ROW,
        "/{org}/{project}/_apis/wit/wiql"
        | "/{org}/{project}/_apis/wit/workitemsbatch"
        | "/{org}/{project}/_apis/wit/workitems"
        | "/{org}/_apis/wit/workitems" => "work-item",
        "/{org}/{project}/_apis/release/releases" => "release",
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
            minimum_rows(&org, self.state.config.max_page_size, &wanted)
        };
        let mut made: BTreeMap<&str, u64> = BTreeMap::new();
        let mut items = 0;
        for (route, count) in self.requests() {
            match route_row(&route) {
                // The `team` kind lists the organization's teams too: theirs, then.
                Some(BOARDS_ROW)
                    if route.ends_with(" /{org}/_apis/teams") && wanted.kinds.contains("team") =>
                {
                    *made.entry(OTHER_ROW).or_default() += count
                }
                Some(row) => *made.entry(row).or_default() += count,
                None => items += count,
            }
        }
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
        minimum_rows(&small(), 100, &Wanted::of(mapping))
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
                (OTHER_ROW.to_string(), 0),
            ])
        );
        assert_eq!(Wanted::of(&projects).kinds.len(), 2);
        let specs = json!({"specPath": ["a.yml", "b.yml"], "resources": []});
        assert_eq!(minimums(&specs)[GITOPS_ROW], 10);
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
