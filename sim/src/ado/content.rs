//! The Git content of the simulated organization: commits, trees and branches of every
//! repository and project wiki, their seed, and [`AdoSim::push`] / [`AdoSim::delete_branch`],
//! which change it the way a `git push` does and return the `git.push` service-hook body Azure
//! DevOps would send.
//!
//! Seed (per non-empty repository, on `main`): `README.md`, `CODEOWNERS` (as the repository
//! says), `port.yml`, `service.json`, `.config/settings.yaml`, `deploy/values.yaml` (two YAML
//! documents), `docs/README.md`, `docs/guide.md`, `src/a/docs/x.md`, `src/a/main.rs`,
//! `src/b/docs/y.md`, `src/b/lib/docs/deep.md`, `empty.txt` (empty); the first repository also
//! has `big.json` (over 1 MiB). Each pull request's source branch is one commit ahead of `main`
//! and adds `src/feature/docs/notes.md`. Each project has a project wiki (`{project}.wiki`,
//! branch `wikiMaster`) with [`WIKI_PAGES`] pages.
//!
//! Object ids are 40 hex digits derived from the content, so equal content has equal ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::AdoSim;
use super::seed::{Organization, Repository, Urls, ado_time, encode_segment, epoch, stable_id};
use crate::traffic::lock;

/// The object id Azure DevOps uses for "no commit" (a created or deleted ref).
pub const ZERO_OBJECT_ID: &str = "0000000000000000000000000000000000000000";
/// Object kind of wiki ids (see `seed::stable_id`).
const KIND_WIKI: u16 = 0x000a;
/// The branch of project wikis.
pub(crate) const WIKI_BRANCH: &str = "refs/heads/wikiMaster";
/// Size of the oversized seed file (`big.json` of the first repository).
pub const BIG_FILE_BYTES: usize = 1024 * 1024 + 512;

/// The pages of each seeded project wiki (the file is the path plus `.md`).
pub const WIKI_PAGES: [&str; 6] = [
    "/Home",
    "/Home/Getting started",
    "/Architecture",
    "/Architecture/Decisions",
    "/Runbooks",
    "/Runbooks/Deploy",
];

/// 40 hex digits derived from `kind` and `bytes`.
pub(crate) fn object_id(kind: &str, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(48);
    for salt in 0u8..3 {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        kind.hash(&mut hasher);
        bytes.hash(&mut hasher);
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(40);
    out
}

/// A file's content.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub object_id: String,
    pub content: String,
}

impl Blob {
    fn new(content: String) -> Arc<Blob> {
        Arc::new(Blob {
            object_id: object_id("blob", content.as_bytes()),
            content,
        })
    }
}

/// Files by absolute path (`/docs/README.md`).
pub(crate) type Tree = BTreeMap<String, Arc<Blob>>;

#[derive(Clone, Debug)]
pub(crate) struct Commit {
    pub id: String,
    pub parents: Vec<String>,
    pub tree: Tree,
    pub comment: String,
    pub author: usize,
    pub time: DateTime<Utc>,
}

/// The folders of a tree (every ancestor of a file, `/` included).
pub(crate) fn folders(tree: &Tree) -> BTreeSet<String> {
    let mut out = BTreeSet::from(["/".to_string()]);
    for path in tree.keys() {
        let mut current = path.as_str();
        while let Some(cut) = current.rfind('/') {
            current = &current[..cut];
            if current.is_empty() {
                break;
            }
            out.insert(current.to_string());
        }
    }
    out
}

/// Whether `path` is `folder` or below it.
pub(crate) fn is_within(path: &str, folder: &str) -> bool {
    folder == "/"
        || path == folder
        || (path.starts_with(folder) && path.as_bytes().get(folder.len()) == Some(&b'/'))
}

/// A folder's object id: derived from the ids and paths of everything below it.
pub(crate) fn folder_object_id(tree: &Tree, folder: &str) -> String {
    let mut listing = String::new();
    for (path, blob) in tree.iter().filter(|(p, _)| is_within(p, folder)) {
        listing.push_str(path);
        listing.push(' ');
        listing.push_str(&blob.object_id);
        listing.push('\n');
    }
    object_id("tree", listing.as_bytes())
}

/// One repository's (or wiki's) history.
#[derive(Clone, Debug, Default)]
pub(crate) struct RepositoryContent {
    pub commits: HashMap<String, Commit>,
    /// `refs/heads/{name}` → commit id.
    pub branches: BTreeMap<String, String>,
    /// Wiki page path → page id (kept when a page is deleted, as Azure DevOps does).
    pub page_ids: BTreeMap<String, u64>,
    pub next_page_id: u64,
    pub next_push_id: u64,
}

impl RepositoryContent {
    /// The commit a `versionDescriptor` names: a branch (short or full name), a commit id, or
    /// `default_branch` when none is given.
    pub(crate) fn resolve(
        &self,
        version_type: Option<&str>,
        version: Option<&str>,
        default_branch: &str,
    ) -> Option<&Commit> {
        let id = match (
            version_type.map(str::to_ascii_lowercase).as_deref(),
            version,
        ) {
            (Some("commit"), Some(id)) => id.to_string(),
            (_, Some(name)) => {
                let full = if name.starts_with("refs/") {
                    name.to_string()
                } else {
                    format!("refs/heads/{name}")
                };
                self.branches.get(&full)?.clone()
            }
            (_, None) => self.branches.get(default_branch)?.clone(),
        };
        self.commits.get(&id)
    }

    /// Gives every `.md` file of `tree` a page id (new pages get the next free one).
    fn number_pages(&mut self, tree: &Tree) {
        for path in tree.keys() {
            if let Some(page) = page_path(path)
                && !self.page_ids.contains_key(&page)
            {
                self.next_page_id += 1;
                self.page_ids.insert(page, self.next_page_id);
            }
        }
    }
}

/// The wiki page a file of a wiki repository is (`/Home/Getting-started.md` →
/// `/Home/Getting started`); `None` for other files (`.order`, attachments).
/// `branch` as a full ref name: `main` → `refs/heads/main`; a `refs/…` name as it is.
fn full_ref_name(branch: &str) -> String {
    if branch.starts_with("refs/") {
        branch.to_string()
    } else {
        format!("refs/heads/{branch}")
    }
}

/// A commit's author (and committer) as Azure DevOps renders them: name, email and date.
pub(crate) fn commit_person(org: &Organization, commit: &Commit) -> Value {
    let author = org.users.get(commit.author);
    json!({
        "name": author.map(|u| u.display_name.clone()),
        "email": author.map(|u| u.unique_name.clone()),
        "date": ado_time(commit.time),
    })
}

pub(crate) fn page_path(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".md")?;
    Some(stem.replace('-', " "))
}

/// The file of a wiki page (`/Home/Getting started` → `/Home/Getting-started.md`).
pub(crate) fn page_file(page: &str) -> String {
    format!("{}.md", page.replace(' ', "-"))
}

/// A project wiki, or a code wiki ([`AdoSim::publish_code_wiki`]; its pages are kept like a
/// project wiki's).
#[derive(Clone, Debug)]
pub(crate) struct Wiki {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// `codeWiki` rather than `projectWiki`.
    pub code: bool,
}

/// Everything Git of the organization.
#[derive(Clone, Debug, Default)]
pub(crate) struct GitStore {
    /// By repository (or wiki) id.
    pub repositories: HashMap<String, RepositoryContent>,
    pub wikis: Vec<Wiki>,
    next_commit: u64,
}

fn seed_files(repository: &Repository, index: usize) -> Tree {
    let name = &repository.name;
    let mut files: Vec<(&str, String)> = vec![
        (
            "/port.yml",
            format!("service:\n  name: {name}\n  tier: {}\n", 1 + index % 3),
        ),
        (
            "/service.json",
            format!(
                "{{\"name\": \"{name}\", \"owners\": [\"team-{}\"]}}\n",
                index % 2
            ),
        ),
        (
            "/.config/settings.yaml",
            format!("lint: true\nrepository: {name}\n"),
        ),
        (
            "/deploy/values.yaml",
            format!("replicas: {}\n---\nimage: {name}:latest\n", 1 + index % 2),
        ),
        ("/docs/README.md", format!("# Docs of {name}\n")),
        ("/docs/guide.md", format!("# Guide to {name}\n")),
        ("/src/a/docs/x.md", "# Component a\n".to_string()),
        ("/src/a/main.rs", "fn main() {}\n".to_string()),
        ("/src/b/docs/y.md", "# Component b\n".to_string()),
        ("/src/b/lib/docs/deep.md", "# Deep docs\n".to_string()),
        ("/empty.txt", String::new()),
    ];
    if let Some(readme) = &repository.readme {
        files.push(("/README.md", readme.clone()));
    }
    if let Some(codeowners) = &repository.codeowners {
        files.push(("/CODEOWNERS", codeowners.clone()));
    }
    if index == 0 {
        let filler = "x".repeat(BIG_FILE_BYTES);
        files.push(("/big.json", format!("{{\"data\": \"{filler}\"}}")));
    }
    files
        .into_iter()
        .map(|(path, content)| (path.to_string(), Blob::new(content)))
        .collect()
}

fn wiki_files(project_name: &str) -> Tree {
    let mut tree: Tree = WIKI_PAGES
        .iter()
        .map(|page| {
            (
                page_file(page),
                Blob::new(format!("# {}\n\nPage of {project_name}.\n", &page[1..])),
            )
        })
        .collect();
    tree.insert(
        "/.order".to_string(),
        Blob::new("Home\nArchitecture\nRunbooks\n".to_string()),
    );
    tree
}

impl GitStore {
    /// Seeds every non-empty repository, the pull requests' source branches and the project
    /// wikis (see the module docs).
    pub(crate) fn seed(org: &Organization) -> GitStore {
        let mut store = GitStore::default();
        // Pull requests by repository, in their order: looking them up per repository would
        // take repositories × pull requests (minutes for an organization of 80,000).
        let mut pull_requests: HashMap<&str, Vec<_>> = HashMap::new();
        for pr in &org.pull_requests {
            pull_requests
                .entry(pr.repository_id.as_str())
                .or_default()
                .push(pr);
        }
        for (index, repository) in org.repositories.iter().enumerate() {
            let Some(branch) = &repository.default_branch else {
                continue;
            };
            let tree = seed_files(repository, index);
            let main = store.commit(&repository.id, Vec::new(), tree.clone(), "Initial commit");
            let content = store.repositories.entry(repository.id.clone()).or_default();
            content.branches.insert(branch.clone(), main.clone());
            let theirs = pull_requests.get(repository.id.as_str());
            for pr in theirs.into_iter().flatten() {
                if store
                    .repositories
                    .get(&repository.id)
                    .is_some_and(|c| c.branches.contains_key(&pr.source_ref_name))
                {
                    continue;
                }
                let mut feature = tree.clone();
                feature.insert(
                    "/src/feature/docs/notes.md".to_string(),
                    Blob::new(format!("# Notes of {}\n", pr.source_ref_name)),
                );
                let id = store.commit(&repository.id, vec![main.clone()], feature, &pr.title);
                store
                    .repositories
                    .entry(repository.id.clone())
                    .or_default()
                    .branches
                    .insert(pr.source_ref_name.clone(), id);
            }
        }
        for (index, project) in org.projects.iter().enumerate() {
            let wiki = Wiki {
                id: stable_id(KIND_WIKI, u32::try_from(index).unwrap_or(u32::MAX), 0),
                name: format!("{}.wiki", project.name),
                project_id: project.id.clone(),
                code: false,
            };
            let tree = wiki_files(&project.name);
            let id = store.commit(&wiki.id, Vec::new(), tree.clone(), "Wiki created");
            let content = store.repositories.entry(wiki.id.clone()).or_default();
            content.branches.insert(WIKI_BRANCH.to_string(), id);
            content.number_pages(&tree);
            store.wikis.push(wiki);
        }
        store
    }

    /// Records a commit and returns its id.
    fn commit(
        &mut self,
        repository_id: &str,
        parents: Vec<String>,
        tree: Tree,
        comment: &str,
    ) -> String {
        self.next_commit += 1;
        let n = self.next_commit;
        let id = object_id("commit", format!("{repository_id}/{n}").as_bytes());
        let commit = Commit {
            id: id.clone(),
            parents,
            tree,
            comment: comment.to_string(),
            author: (n as usize) % 4,
            time: epoch() + Duration::minutes(n as i64),
        };
        self.repositories
            .entry(repository_id.to_string())
            .or_default()
            .commits
            .insert(id.clone(), commit);
        id
    }

    /// The branches of a repository with their commit ids, in name order.
    pub(crate) fn refs(&self, repository_id: &str) -> Vec<(String, String)> {
        self.repositories
            .get(repository_id)
            .map(|c| {
                c.branches
                    .iter()
                    .map(|(name, id)| (name.clone(), id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn wiki(&self, id_or_name: &str) -> Option<&Wiki> {
        self.wikis.iter().find(|w| {
            w.id.eq_ignore_ascii_case(id_or_name) || w.name.eq_ignore_ascii_case(id_or_name)
        })
    }
}

/// One change of a simulated commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// Adds or replaces the file at `path` (absolute or relative to the root).
    Put { path: String, content: String },
    /// Removes the file at `path`.
    Delete { path: String },
}

impl FileChange {
    pub fn put(path: &str, content: &str) -> FileChange {
        FileChange::Put {
            path: path.to_string(),
            content: content.to_string(),
        }
    }

    pub fn delete(path: &str) -> FileChange {
        FileChange::Delete {
            path: path.to_string(),
        }
    }
}

/// One commit of a simulated push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimCommit {
    pub comment: String,
    pub changes: Vec<FileChange>,
}

impl SimCommit {
    pub fn new(comment: &str, changes: Vec<FileChange>) -> SimCommit {
        SimCommit {
            comment: comment.to_string(),
            changes,
        }
    }
}

/// What a push did: the ref's old and new commit, the commits pushed (oldest first) and the
/// `git.push` service-hook body Azure DevOps sends for it.
#[derive(Clone, Debug)]
pub struct PushResult {
    pub ref_name: String,
    pub old_object_id: String,
    pub new_object_id: String,
    pub commits: Vec<String>,
    pub webhook: Value,
}

fn absolute(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// The Git repository a request or a push names: a repository of the organization or a
/// project wiki's.
pub(crate) struct Target {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub default_branch: String,
}

impl Target {
    pub(crate) fn of_repository(repository: &Repository) -> Self {
        Target {
            id: repository.id.clone(),
            name: repository.name.clone(),
            project_id: repository.project_id.clone(),
            default_branch: repository
                .default_branch
                .clone()
                .unwrap_or_else(|| "refs/heads/main".to_string()),
        }
    }

    pub(crate) fn of_wiki(wiki: &Wiki) -> Self {
        Target {
            id: wiki.id.clone(),
            name: wiki.name.clone(),
            project_id: wiki.project_id.clone(),
            default_branch: WIKI_BRANCH.to_string(),
        }
    }
}

impl AdoSim {
    fn push_target(&self, org: &Organization, repository_id: &str) -> Option<Target> {
        if let Some(repository) = org.repositories.iter().find(|r| r.id == repository_id) {
            return Some(Target::of_repository(repository));
        }
        org.git.wiki(repository_id).map(Target::of_wiki)
    }

    /// Pushes `commits` (oldest first) onto `branch` (`main` or `refs/heads/main`) of a
    /// repository or project wiki (by id). A branch that does not exist yet starts from the
    /// default branch. `None` for an unknown repository or an empty `commits`.
    pub fn push(
        &self,
        repository_id: &str,
        branch: &str,
        commits: Vec<SimCommit>,
    ) -> Option<PushResult> {
        let ref_name = full_ref_name(branch);
        let result = {
            let mut org = lock(&self.state.organization);
            let target = self.push_target(&org, repository_id)?;
            let content = org.git.repositories.get(&target.id);
            let old = content.and_then(|c| c.branches.get(&ref_name)).cloned();
            let base = old
                .clone()
                .or_else(|| content.and_then(|c| c.branches.get(&target.default_branch).cloned()));
            if commits.is_empty() {
                return None;
            }
            let mut tree = base
                .as_ref()
                .and_then(|id| content.and_then(|c| c.commits.get(id)))
                .map(|c| c.tree.clone())
                .unwrap_or_default();
            let mut parent = base;
            let mut pushed = Vec::new();
            for commit in &commits {
                for change in &commit.changes {
                    match change {
                        FileChange::Put { path, content } => {
                            tree.insert(absolute(path), Blob::new(content.clone()));
                        }
                        FileChange::Delete { path } => {
                            tree.remove(&absolute(path));
                        }
                    }
                }
                let id = org.git.commit(
                    &target.id,
                    parent.iter().cloned().collect(),
                    tree.clone(),
                    &commit.comment,
                );
                parent = Some(id.clone());
                pushed.push(id);
            }
            let new = parent.unwrap_or_default();
            let content = org.git.repositories.entry(target.id.clone()).or_default();
            content.branches.insert(ref_name.clone(), new.clone());
            content.number_pages(&tree);
            content.next_push_id += 1;
            let push_id = content.next_push_id;
            let old = old.unwrap_or_else(|| ZERO_OBJECT_ID.to_string());
            let webhook = self.push_webhook(&org, &target, &ref_name, &old, &new, &pushed, push_id);
            PushResult {
                ref_name,
                old_object_id: old,
                new_object_id: new,
                commits: pushed,
                webhook,
            }
        };
        self.state.traffic.touch();
        Some(result)
    }

    /// Deletes `branch` of a repository; `None` if it has no such branch.
    pub fn delete_branch(&self, repository_id: &str, branch: &str) -> Option<PushResult> {
        let ref_name = full_ref_name(branch);
        let result = {
            let mut org = lock(&self.state.organization);
            let target = self.push_target(&org, repository_id)?;
            let content = org.git.repositories.get_mut(&target.id)?;
            let old = content.branches.remove(&ref_name)?;
            content.next_push_id += 1;
            let push_id = content.next_push_id;
            let webhook =
                self.push_webhook(&org, &target, &ref_name, &old, ZERO_OBJECT_ID, &[], push_id);
            PushResult {
                ref_name,
                old_object_id: old,
                new_object_id: ZERO_OBJECT_ID.to_string(),
                commits: Vec::new(),
                webhook,
            }
        };
        self.state.traffic.touch();
        Some(result)
    }

    /// Publishes a code wiki (`type: codeWiki`, named `{project} docs`) in the project named
    /// `project_name`, with the pages of a seeded project wiki; its id, `None` without such
    /// a project.
    pub fn publish_code_wiki(&self, project_name: &str) -> Option<String> {
        let mut org = lock(&self.state.organization);
        let index = org.projects.iter().position(|p| p.name == project_name)?;
        let project = org.projects[index].clone();
        let count = org.git.wikis.len();
        let wiki = Wiki {
            id: stable_id(
                KIND_WIKI,
                u32::try_from(index).unwrap_or(u32::MAX),
                u32::try_from(count).unwrap_or(u32::MAX),
            ),
            name: format!("{} docs", project.name),
            project_id: project.id.clone(),
            code: true,
        };
        let tree = wiki_files(&project.name);
        let commit = org
            .git
            .commit(&wiki.id, Vec::new(), tree.clone(), "Wiki published");
        let content = org.git.repositories.entry(wiki.id.clone()).or_default();
        content.branches.insert(WIKI_BRANCH.to_string(), commit);
        content.number_pages(&tree);
        let id = wiki.id.clone();
        org.git.wikis.push(wiki);
        drop(org);
        self.state.traffic.touch();
        Some(id)
    }

    /// The wikis: `(wiki id, wiki name, project id)`.
    pub fn wikis(&self) -> Vec<(String, String, String)> {
        let org = lock(&self.state.organization);
        org.git
            .wikis
            .iter()
            .map(|w| (w.id.clone(), w.name.clone(), w.project_id.clone()))
            .collect()
    }

    /// A file's text on a branch of a repository or wiki; `None` if either does not exist.
    pub fn file_at(&self, repository_id: &str, branch: &str, path: &str) -> Option<String> {
        let org = lock(&self.state.organization);
        let content = org.git.repositories.get(repository_id)?;
        let commit = content.resolve(Some("branch"), Some(branch), "refs/heads/main")?;
        commit.tree.get(&absolute(path)).map(|b| b.content.clone())
    }

    /// A branch's commit id (`main` or `refs/heads/main`).
    pub fn branch_head(&self, repository_id: &str, branch: &str) -> Option<String> {
        let org = lock(&self.state.organization);
        let content = org.git.repositories.get(repository_id)?;
        let commit = content.resolve(Some("branch"), Some(branch), "refs/heads/main")?;
        Some(commit.id.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn push_webhook(
        &self,
        org: &Organization,
        target: &Target,
        ref_name: &str,
        old: &str,
        new: &str,
        commits: &[String],
        push_id: u64,
    ) -> Value {
        let urls = Urls::new(&self.state.default_host, &self.state.config.organization);
        let org_url = &urls.organization_url;
        let project = org.project_by_id(&target.project_id);
        let project_name = project.map(|p| p.name.clone()).unwrap_or_default();
        let repo_url = format!(
            "{org_url}/{}/_apis/git/repositories/{}",
            target.project_id, target.id
        );
        let pusher = org.identity(&urls, 0);
        let content = org.git.repositories.get(&target.id);
        let commit_values: Vec<Value> = commits
            .iter()
            .rev()
            .filter_map(|id| content.and_then(|c| c.commits.get(id)))
            .map(|commit| {
                let person = commit_person(org, commit);
                json!({
                    "commitId": commit.id,
                    "author": person,
                    "committer": person,
                    "comment": commit.comment,
                    "url": format!("{repo_url}/commits/{}", commit.id),
                })
            })
            .collect();
        let short = ref_name.trim_start_matches("refs/heads/");
        let message = format!(
            "{} pushed updates to {}:{short}.",
            pusher["displayName"].as_str().unwrap_or_default(),
            target.name
        );
        let now = Utc::now();
        json!({
            "subscriptionId": stable_id(0x000b, 0, 0),
            "notificationId": push_id,
            "id": uuid::Uuid::new_v4().to_string(),
            "eventType": "git.push",
            "publisherId": "tfs",
            "message": {"text": message, "html": message, "markdown": message},
            "detailedMessage": {"text": message, "html": message, "markdown": message},
            "resource": {
                "commits": commit_values,
                "refUpdates": [{"name": ref_name, "oldObjectId": old, "newObjectId": new}],
                "repository": {
                    "id": target.id,
                    "name": target.name,
                    "url": repo_url,
                    "project": project.map(|p| org.project_reference(&urls, p)),
                    "defaultBranch": target.default_branch,
                    "remoteUrl": format!(
                        "{org_url}/{}/_git/{}",
                        encode_segment(&project_name),
                        encode_segment(&target.name)
                    ),
                },
                "pushedBy": pusher,
                "pushId": push_id,
                "date": ado_time(now),
                "url": format!("{repo_url}/pushes/{push_id}"),
            },
            "resourceVersion": "1.0",
            "resourceContainers": {
                "collection": {"id": org.collection_id},
                "account": {"id": org.collection_id},
                "project": {"id": target.project_id},
            },
            "createdDate": ado_time(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_their_ids_follow_the_files() {
        let mut tree = Tree::new();
        tree.insert("/src/a/docs/x.md".into(), Blob::new("x".into()));
        tree.insert("/README.md".into(), Blob::new("r".into()));
        let all = folders(&tree);
        assert!(all.contains("/src/a/docs") && all.contains("/src") && all.contains("/"));
        assert!(!all.contains("/README.md"));
        let before = folder_object_id(&tree, "/src/a");
        tree.insert("/src/a/docs/y.md".into(), Blob::new("y".into()));
        assert_ne!(before, folder_object_id(&tree, "/src/a"));
        assert!(is_within("/src/a/x", "/src/a") && !is_within("/src/ab", "/src/a"));
        assert_eq!(
            page_path("/Home/Getting-started.md").as_deref(),
            Some("/Home/Getting started")
        );
        assert_eq!(
            page_file("/Home/Getting started"),
            "/Home/Getting-started.md"
        );
    }
}
