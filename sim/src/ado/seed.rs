//! The simulated organization: deterministic seeding from [`AdoSimConfig`] and rendering of
//! each object in the JSON shape Azure DevOps returns.
//!
//! Ids are stable UUIDs derived from indexes (`aaaaaaaa-kkkk-4000-8000-0000bbbbbbbb`, `kkkk` =
//! object kind), so two runs with the same configuration serve identical data. Variety on
//! purpose: every fourth project (index 1, 5, …) has a space in its name (`"project 1"`), even
//! projects have a description, repository #3 (global index) is disabled, repository #5 is empty
//! (no default branch, size 0), even repositories have a `CODEOWNERS` file, and every third pull
//! request of a repository is completed (the others are active, one in four a draft).
//!
//! URLs are rendered for the organization URL the caller used (see [`Urls`]).

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AdoSimConfig;

const KIND_PROJECT: u16 = 0x0001;
const KIND_TEAM: u16 = 0x0002;
const KIND_REPOSITORY: u16 = 0x0003;
const KIND_USER: u16 = 0x0004;
const KIND_COLLECTION: u16 = 0x0005;
const KIND_COMMIT: u16 = 0x0006;
pub(crate) const KIND_BOARD: u16 = 0x0007;
pub(crate) const KIND_COLUMN: u16 = 0x0009;

/// A stable id for object `a`/`b` of a kind.
pub(crate) fn stable_id(kind: u16, a: u32, b: u32) -> String {
    let value = (u128::from(a) << 96)
        | (u128::from(kind) << 80)
        | (0x4000_u128 << 64)
        | (0x8000_u128 << 48)
        | u128::from(b);
    Uuid::from_u128(value).to_string()
}

/// A stable 40-hex-digit commit id.
fn commit_id(a: u32, b: u32) -> String {
    let id = stable_id(KIND_COMMIT, a, b).replace('-', "");
    format!("{id}{:08x}", a ^ b.rotate_left(16))
}

/// The simulated "now" the seed data is dated from (fixed, for stable output).
/// Work items seeded 3 hours apart from [`epoch`]; past the 2,000th, a second apart, so that
/// a large organization's work items were all changed in the past (none changes "since" an
/// incremental run's cursor unless a test changes it).
fn work_item_created(id: u64) -> DateTime<Utc> {
    const SPACED: i64 = 2_000;
    let id = id as i64;
    if id <= SPACED {
        epoch() + Duration::hours(id * 3)
    } else {
        epoch() + Duration::hours(SPACED * 3) + Duration::seconds(id - SPACED)
    }
}

pub(crate) fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Azure DevOps' timestamp format (`2026-03-31T09:36:39.42Z`, fractional digits trimmed).
pub(crate) fn ado_time(time: DateTime<Utc>) -> String {
    let text = time.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}Z")
}

/// Percent-encodes a path segment (names may contain spaces).
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The URLs an answer is rendered with.
#[derive(Clone, Debug)]
pub(crate) struct Urls {
    /// `http://host:port/{org}`.
    pub organization_url: String,
    /// `host:port`.
    pub host: String,
    pub organization: String,
}

impl Urls {
    pub(crate) fn new(host: &str, organization: &str) -> Self {
        Self {
            organization_url: format!("http://{host}/{organization}"),
            host: host.to_string(),
            organization: organization.to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub display_name: String,
    pub unique_name: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub revision: u64,
    pub last_update_time: DateTime<Utc>,
    pub default_team_id: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Repository {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub default_branch: Option<String>,
    pub size: u64,
    pub is_disabled: bool,
    pub readme: Option<String>,
    pub codeowners: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct PullRequest {
    pub id: u64,
    pub repository_id: String,
    pub title: String,
    pub description: String,
    pub status: &'static str,
    pub created_by: usize,
    pub reviewers: Vec<usize>,
    pub creation_date: DateTime<Utc>,
    pub closed_date: Option<DateTime<Utc>>,
    pub source_ref_name: String,
    pub target_ref_name: String,
    pub is_draft: bool,
    pub merge_commit: String,
    /// The source branch's commit the pull request was opened on (created through the API);
    /// seeded pull requests render a fixed one.
    pub source_commit: Option<String>,
    /// Who closed it (completed or abandoned through the API); the creator otherwise.
    pub closed_by: Option<usize>,
    /// The `completionOptions` it was completed with.
    pub completion_options: Option<Value>,
    /// Comment threads, in creation order (ids from 1).
    pub threads: Vec<PullRequestThread>,
}

/// One comment thread of a pull request.
#[derive(Clone, Debug)]
pub(crate) struct PullRequestThread {
    pub id: u64,
    /// `active`, `fixed`, `wontFix`, `closed`, `byDesign` or `pending`.
    pub status: &'static str,
    /// `(author, content)` of each comment (ids from 1), the first opening the thread.
    pub comments: Vec<(usize, String)>,
    pub published: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct WorkItem {
    pub id: u64,
    pub project_id: String,
    pub work_item_type: &'static str,
    pub state: &'static str,
    pub title: String,
    pub rev: u64,
    pub created_by: usize,
    pub created_date: DateTime<Utc>,
    pub changed_date: DateTime<Utc>,
}

/// The work item types the simulated "Agile" process has on its board, and the states
/// (= board columns) they go through.
pub(crate) const WORK_ITEM_TYPES: [&str; 3] = ["User Story", "Bug", "Task"];
pub(crate) const WORK_ITEM_STATES: [&str; 4] = ["New", "Active", "Resolved", "Closed"];

/// Everything the simulated organization holds.
#[derive(Clone, Debug)]
pub(crate) struct Organization {
    pub collection_id: String,
    pub users: Vec<User>,
    pub projects: Vec<Project>,
    pub repositories: Vec<Repository>,
    pub pull_requests: Vec<PullRequest>,
    pub work_items: Vec<WorkItem>,
    /// Releases per project (ids 1..=n within each project).
    pub releases_per_project: u64,
    /// Commits, trees and branches of every repository and project wiki.
    pub git: super::content::GitStore,
    /// What was deleted and can be restored.
    pub recycle_bin: super::recycle::RecycleBin,
    /// Objects created after seeding (projects, repositories): numbers their stable ids, so
    /// an id is never given twice, whatever was deleted meanwhile.
    pub created: u32,
    /// Policy configurations added after seeding (`AdoSim::add_policy`): project id and the
    /// configuration, whatever its scope (project-wide, repository, branch, prefix).
    pub added_policies: Vec<(String, Value)>,
}

const USERS: [(&str, &str); 4] = [
    ("Ada Lovelace", "ada@acme.example"),
    ("Grace Hopper", "grace@acme.example"),
    ("Linus Torvalds", "linus@acme.example"),
    ("Margaret Hamilton", "margaret@acme.example"),
];

impl Organization {
    pub(crate) fn seed(config: &AdoSimConfig) -> Self {
        let users = USERS
            .iter()
            .zip(0u32..)
            .map(|((name, mail), i)| User {
                id: stable_id(KIND_USER, i, 0),
                display_name: (*name).to_string(),
                unique_name: (*mail).to_string(),
            })
            .collect::<Vec<_>>();
        let mut projects = Vec::new();
        let mut repositories = Vec::new();
        let mut pull_requests = Vec::new();
        let mut next_pr = 1u64;
        let mut work_items = Vec::new();
        let mut next_work_item = 1u64;
        let mut global_repo = 0usize;
        for p in 0..config.projects {
            let pi = u32::try_from(p).unwrap_or(u32::MAX);
            let name = if p % 4 == 1 {
                format!("project {p}")
            } else {
                format!("project-{p}")
            };
            let project = Project {
                id: stable_id(KIND_PROJECT, pi, 0),
                description: p
                    .is_multiple_of(2)
                    .then(|| format!("Simulated project number {p}.")),
                revision: 10 + p as u64,
                last_update_time: epoch() + Duration::minutes(p as i64 * 37),
                default_team_id: stable_id(KIND_TEAM, pi, 0),
                name,
            };
            for r in 0..config.repositories_per_project {
                let ri = u32::try_from(r).unwrap_or(u32::MAX);
                let name = format!("repo-{p}-{r}");
                let empty = global_repo == 5;
                let repository = Repository {
                    id: stable_id(KIND_REPOSITORY, pi, ri),
                    project_id: project.id.clone(),
                    default_branch: (!empty).then(|| "refs/heads/main".to_string()),
                    size: if empty {
                        0
                    } else {
                        1024 * (1 + global_repo as u64 % 50)
                    },
                    is_disabled: global_repo == 3,
                    readme: (!empty).then(|| {
                        format!(
                            "# {name}\n\nSimulated repository {name} of {}.\n",
                            project.name
                        )
                    }),
                    codeowners: (!empty && global_repo.is_multiple_of(2))
                        .then(|| format!("* @{}-owners\n", project.name.replace(' ', "-"))),
                    name,
                };
                if !repository.is_disabled && !empty {
                    for j in 0..config.pull_requests_per_repository {
                        let id = next_pr;
                        next_pr += 1;
                        let created = epoch() + Duration::hours(id as i64 * 5);
                        let completed = j % 3 == 2;
                        pull_requests.push(PullRequest {
                            id,
                            repository_id: repository.id.clone(),
                            title: format!("Change {j} of {}", repository.name),
                            description: format!("Simulated pull request {id}."),
                            status: if completed { "completed" } else { "active" },
                            created_by: (id as usize) % users.len(),
                            reviewers: vec![(id as usize + 1) % users.len()],
                            creation_date: created,
                            closed_date: completed.then(|| created + Duration::hours(20)),
                            source_ref_name: format!("refs/heads/feature/change-{j}"),
                            target_ref_name: "refs/heads/main".to_string(),
                            is_draft: id.is_multiple_of(4) && !completed,
                            merge_commit: commit_id(pi, u32::try_from(id).unwrap_or(u32::MAX)),
                            source_commit: None,
                            closed_by: None,
                            completion_options: None,
                            threads: Vec::new(),
                        });
                    }
                }
                repositories.push(repository);
                global_repo += 1;
            }
            for w in 0..config.work_items_per_project {
                let id = next_work_item;
                next_work_item += 1;
                let created = work_item_created(id);
                work_items.push(WorkItem {
                    id,
                    project_id: project.id.clone(),
                    work_item_type: WORK_ITEM_TYPES[w % WORK_ITEM_TYPES.len()],
                    state: WORK_ITEM_STATES[w % WORK_ITEM_STATES.len()],
                    title: format!("Work item {id} of {}", project.name),
                    rev: 1 + (w as u64 % 3),
                    created_by: (id as usize) % users.len(),
                    created_date: created,
                    changed_date: created + Duration::hours(6),
                });
            }
            projects.push(project);
        }
        let mut org = Self {
            collection_id: stable_id(KIND_COLLECTION, 0, 0),
            users,
            projects,
            repositories,
            pull_requests,
            work_items,
            releases_per_project: config.releases_per_project as u64,
            git: super::content::GitStore::default(),
            recycle_bin: Default::default(),
            created: 0,
            added_policies: Vec::new(),
        };
        org.git = super::content::GitStore::seed(&org);
        org
    }

    /// A project by id or (case-insensitive) name.
    pub(crate) fn project(&self, id_or_name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| {
            p.id.eq_ignore_ascii_case(id_or_name) || p.name.eq_ignore_ascii_case(id_or_name)
        })
    }

    /// The number of the next object created after seeding. Numbered by creation, not by how
    /// many exist: after a deletion, a count would hand out an id again.
    pub(crate) fn next_created(&mut self) -> u32 {
        let n = self.created;
        self.created += 1;
        n
    }

    pub(crate) fn project_by_id(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    /// A repository by id or (case-insensitive) name, optionally within one project.
    pub(crate) fn repository(
        &self,
        project: Option<&Project>,
        id_or_name: &str,
    ) -> Option<&Repository> {
        self.repositories.iter().find(|r| {
            project.is_none_or(|p| p.id == r.project_id)
                && (r.id.eq_ignore_ascii_case(id_or_name)
                    || (project.is_some() && r.name.eq_ignore_ascii_case(id_or_name)))
        })
    }

    pub(crate) fn pull_request(&self, id: u64) -> Option<&PullRequest> {
        self.pull_requests.iter().find(|pr| pr.id == id)
    }

    pub(crate) fn identity(&self, urls: &Urls, index: usize) -> Value {
        let Some(user) = self.users.get(index) else {
            return Value::Null;
        };
        json!({
            "displayName": user.display_name,
            "url": format!("{}/_apis/Identities/{}", urls.organization_url, user.id),
            "_links": {"avatar": {"href": format!("{}/_apis/GraphProfile/MemberAvatars/aad.{}", urls.organization_url, user.id)}},
            "id": user.id,
            "uniqueName": user.unique_name,
            "imageUrl": format!("{}/_api/_common/identityImage?id={}", urls.organization_url, user.id),
            "descriptor": format!("aad.{}", user.id.replace('-', "")),
        })
    }

    /// The project reference the projects list returns (and repositories embed).
    pub(crate) fn project_reference(&self, urls: &Urls, project: &Project) -> Value {
        let mut value = json!({
            "id": project.id,
            "name": project.name,
            "url": format!("{}/_apis/projects/{}", urls.organization_url, project.id),
            "state": "wellFormed",
            "revision": project.revision,
            "visibility": "private",
            "lastUpdateTime": ado_time(project.last_update_time),
        });
        if let (Some(description), Value::Object(map)) = (&project.description, &mut value) {
            map.insert("description".into(), json!(description));
        }
        value
    }

    fn capabilities() -> Value {
        json!({
            "versioncontrol": {"sourceControlType": "Git", "gitEnabled": "True", "tfvcEnabled": "False"},
            "processTemplate": {"templateName": "Agile", "templateTypeId": "adcc42ab-9882-485e-a3ed-7678f01f66bc"},
        })
    }

    /// A project as the list returns it (`includeCapabilities` adds `capabilities`).
    pub(crate) fn project_list_item(
        &self,
        urls: &Urls,
        project: &Project,
        capabilities: bool,
    ) -> Value {
        let mut value = self.project_reference(urls, project);
        if capabilities && let Value::Object(map) = &mut value {
            map.insert("capabilities".into(), Self::capabilities());
        }
        value
    }

    /// The full project `GET _apis/projects/{id}` returns.
    pub(crate) fn project_full(&self, urls: &Urls, project: &Project, capabilities: bool) -> Value {
        let org = &urls.organization_url;
        let mut value = json!({
            "id": project.id,
            "name": project.name,
            "url": format!("{org}/_apis/projects/{}", project.id),
            "state": "wellFormed",
            "revision": project.revision,
            "_links": {
                "self": {"href": format!("{org}/_apis/projects/{}", project.id)},
                "collection": {"href": format!("{org}/_apis/projectCollections/{}", self.collection_id)},
                "web": {"href": format!("{org}/{}", encode_segment(&project.name))},
            },
            "visibility": "private",
            "defaultTeam": {
                "id": project.default_team_id,
                "name": format!("{} Team", project.name),
                "url": format!("{org}/_apis/projects/{}/teams/{}", project.id, project.default_team_id),
            },
            "lastUpdateTime": ado_time(project.last_update_time),
        });
        if let Value::Object(map) = &mut value {
            if let Some(description) = &project.description {
                map.insert("description".into(), json!(description));
            }
            if capabilities {
                map.insert("capabilities".into(), Self::capabilities());
            }
        }
        value
    }

    /// A repository as the repositories list and `GET repositories/{id}` return it.
    pub(crate) fn repository_json(&self, urls: &Urls, repository: &Repository) -> Value {
        let Some(project) = self.project_by_id(&repository.project_id) else {
            return Value::Null;
        };
        let org = &urls.organization_url;
        let project_segment = encode_segment(&project.name);
        let repo_segment = encode_segment(&repository.name);
        let mut value = json!({
            "id": repository.id,
            "name": repository.name,
            "url": format!("{org}/{}/_apis/git/repositories/{}", project.id, repository.id),
            "project": self.project_reference(urls, project),
            "size": repository.size,
            "remoteUrl": format!("http://{}@{}/{}/{project_segment}/_git/{repo_segment}", urls.organization, urls.host, urls.organization),
            "sshUrl": format!("git@ssh.dev.azure.com:v3/{}/{project_segment}/{repo_segment}", urls.organization),
            "webUrl": format!("{org}/{project_segment}/_git/{repo_segment}"),
            "isDisabled": repository.is_disabled,
            "isInMaintenance": false,
        });
        if let (Some(branch), Value::Object(map)) = (&repository.default_branch, &mut value) {
            map.insert("defaultBranch".into(), json!(branch));
        }
        value
    }

    /// A pull request in the documented `GitPullRequest` shape.
    pub(crate) fn pull_request_json(&self, urls: &Urls, pr: &PullRequest) -> Value {
        let Some(repository) = self.repositories.iter().find(|r| r.id == pr.repository_id) else {
            return Value::Null;
        };
        let Some(project) = self.project_by_id(&repository.project_id) else {
            return Value::Null;
        };
        let org = &urls.organization_url;
        let repo_url = format!(
            "{org}/{}/_apis/git/repositories/{}",
            project.id, repository.id
        );
        let commit = |id: &str| json!({"commitId": id, "url": format!("{repo_url}/commits/{id}")});
        let reviewers = pr
            .reviewers
            .iter()
            .map(|&index| {
                let mut reviewer = self.identity(urls, index);
                if let Value::Object(map) = &mut reviewer {
                    let id = map.get("id").cloned().unwrap_or(Value::Null);
                    map.insert(
                        "reviewerUrl".into(),
                        json!(format!(
                            "{repo_url}/pullRequests/{}/reviewers/{}",
                            pr.id,
                            id.as_str().unwrap_or_default()
                        )),
                    );
                    let vote = if pr.status == "completed" { 10 } else { 0 };
                    map.insert("vote".into(), json!(vote));
                    map.insert("hasDeclined".into(), json!(false));
                    map.insert("isFlagged".into(), json!(false));
                    map.insert("isRequired".into(), json!(false));
                }
                reviewer
            })
            .collect::<Vec<_>>();
        let mut value = json!({
            "repository": {
                "id": repository.id,
                "name": repository.name,
                "url": repo_url,
                "project": {
                    "id": project.id,
                    "name": project.name,
                    "state": "wellFormed",
                    "visibility": "private",
                    "lastUpdateTime": ado_time(project.last_update_time),
                },
            },
            "pullRequestId": pr.id,
            "codeReviewId": pr.id,
            "status": pr.status,
            "createdBy": self.identity(urls, pr.created_by),
            "creationDate": ado_time(pr.creation_date),
            "title": pr.title,
            "description": pr.description,
            "sourceRefName": pr.source_ref_name,
            "targetRefName": pr.target_ref_name,
            "mergeStatus": "succeeded",
            "isDraft": pr.is_draft,
            "mergeId": stable_id(KIND_COMMIT, 0xffff, u32::try_from(pr.id).unwrap_or(u32::MAX)),
            "lastMergeSourceCommit": commit(&pr.source_commit.clone().unwrap_or_else(|| commit_id(1, u32::try_from(pr.id).unwrap_or(0)))),
            "lastMergeTargetCommit": commit(&commit_id(2, u32::try_from(pr.id).unwrap_or(0))),
            "lastMergeCommit": commit(&pr.merge_commit),
            "reviewers": reviewers,
            "url": format!("{repo_url}/pullRequests/{}", pr.id),
            "supportsIterations": true,
        });
        if let (Some(closed), Value::Object(map)) = (pr.closed_date, &mut value) {
            map.insert("closedDate".into(), json!(ado_time(closed)));
            map.insert(
                "closedBy".into(),
                self.identity(urls, pr.closed_by.unwrap_or(pr.created_by)),
            );
        }
        if let (Some(options), Value::Object(map)) = (&pr.completion_options, &mut value) {
            map.insert("completionOptions".into(), options.clone());
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_deterministic_and_varied() {
        let config = AdoSimConfig::default();
        let a = Organization::seed(&config);
        let b = Organization::seed(&config);
        assert_eq!(a.projects.len(), 3);
        assert_eq!(a.repositories.len(), 12);
        assert_eq!(a.projects[1].name, "project 1");
        assert_eq!(a.projects[0].id, b.projects[0].id);
        assert!(Uuid::parse_str(&a.repositories[7].id).is_ok());
        assert!(a.repositories[3].is_disabled);
        assert!(a.repositories[5].default_branch.is_none());
        // 10 healthy, non-empty repositories × 2.
        assert_eq!(a.pull_requests.len(), 20);
    }

    #[test]
    fn ado_time_trims_fraction() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 31, 9, 36, 39)
            .single()
            .unwrap_or_default()
            + Duration::milliseconds(420);
        assert_eq!(ado_time(t), "2026-03-31T09:36:39.42Z");
        assert_eq!(ado_time(epoch()), "2026-03-01T09:00:00Z");
    }
}
