//! Azure DevOps Git content and wiki calls: item listings and downloads, `itemsbatch`, which
//! of several files of a folder exist (one listing), commit diffs, single refs, wikis and wiki
//! pages (`pagesbatch`).

use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::{
    API_VERSION, AdoClient, AdoError, CONTENT_MISSING, CommitId, Page, ProjectId, RepositoryId,
    WikiId, paginate, reads, values,
};

/// A `versionDescriptor`: a branch (short name or `refs/heads/…`) or a commit id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitVersion {
    Branch(String),
    Commit(CommitId),
}

impl GitVersion {
    /// `(version, versionType)` as the items APIs take them.
    fn parts(&self) -> (&str, &'static str) {
        match self {
            GitVersion::Branch(name) => {
                (name.strip_prefix("refs/heads/").unwrap_or(name), "branch")
            }
            GitVersion::Commit(id) => (id.as_str(), "commit"),
        }
    }
}

/// How deep an item listing goes below its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recursion {
    None,
    OneLevel,
    Full,
}

impl Recursion {
    fn as_str(self) -> &'static str {
        match self {
            Recursion::None => "none",
            Recursion::OneLevel => "oneLevel",
            Recursion::Full => "full",
        }
    }
}

/// Most changes one commit-diff call returns.
const DIFF_PAGE: usize = 100;

impl AdoClient {
    fn items_url(&self, project_id: &ProjectId, repository_id: &RepositoryId) -> String {
        self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/items"
        ))
    }

    /// `GET …/items?scopePath=&recursionLevel=&versionDescriptor.*`: the items under `scope`
    /// (the scope itself first), with their content metadata.
    pub async fn list_items(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        scope: &str,
        recursion: Recursion,
        version: &GitVersion,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.items_url(project_id, repository_id);
        let url = url.as_str();
        let (version, version_type) = version.parts();
        paginate(|token: Option<String>| async move {
            let query = vec![
                ("scopePath", scope),
                ("recursionLevel", recursion.as_str()),
                ("includeContentMetadata", "true"),
                ("versionDescriptor.version", version),
                ("versionDescriptor.versionType", version_type),
            ];
            self.get_page(url, query, token.as_deref()).await
        })
        .try_concat()
        .await
    }

    /// `POST …/itemsbatch`: one item list per `(path, recursion)`, all at `version`.
    pub async fn items_batch(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        requests: &[(String, Recursion)],
        version: &GitVersion,
    ) -> Result<Vec<Vec<Value>>, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/itemsbatch"
        ));
        let (version, version_type) = version.parts();
        let descriptors: Vec<Value> = requests
            .iter()
            .map(|(path, recursion)| {
                json!({"path": path, "recursionLevel": recursion.as_str(), "version": version, "versionType": version_type})
            })
            .collect();
        let body = json!({"itemDescriptors": descriptors, "includeContentMetadata": true});
        let response = self.post_json(&url, &[], &body).await?;
        Ok(values(&url, response.body)?
            .into_iter()
            .map(|list| match list {
                Value::Array(items) => items,
                _ => Vec::new(),
            })
            .collect())
    }

    /// `GET …/items?path=` as JSON with its content metadata (and its text with
    /// `include_content`). No such item at `version` is the 404 Azure DevOps answered: the crawl
    /// reads it as `None` ([`none_if_missing`]), a live event as [`super::Current`], which tells
    /// a missing item from a missing repository.
    pub async fn read_item(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        path: &str,
        version: &GitVersion,
        include_content: bool,
    ) -> Result<Value, AdoError> {
        let url = self.items_url(project_id, repository_id);
        let (version, version_type) = version.parts();
        let query = [
            ("path", path),
            ("$format", "json"),
            (
                "includeContent",
                if include_content { "true" } else { "false" },
            ),
            ("includeContentMetadata", "true"),
            ("versionDescriptor.version", version),
            ("versionDescriptor.versionType", version_type),
        ];
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET …/diffs/commits`: every file and folder change from `base` to `target` (commit ids),
    /// whatever the number of commits between them.
    pub async fn commit_diff(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        base: &CommitId,
        target: &CommitId,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/diffs/commits"
        ));
        let top = DIFF_PAGE.to_string();
        let mut all = Vec::new();
        loop {
            let skip = all.len().to_string();
            let query = [
                ("baseVersion", base.as_str()),
                ("baseVersionType", "commit"),
                ("targetVersion", target.as_str()),
                ("targetVersionType", "commit"),
                ("diffCommonCommit", "false"),
                ("$top", top.as_str()),
                ("$skip", skip.as_str()),
            ];
            let body = self.get_json(&url, &query).await?.body;
            let changes = match body.get("changes") {
                Some(Value::Array(changes)) => changes.clone(),
                _ => {
                    return Err(AdoError::Decode {
                        url,
                        detail: "expected a commit diff with a \"changes\" array".into(),
                    });
                }
            };
            let got = changes.len();
            all.extend(changes);
            let complete = body
                .get("allChangesIncluded")
                .and_then(Value::as_bool)
                .unwrap_or(got < DIFF_PAGE);
            if complete || got == 0 {
                return Ok(all);
            }
        }
    }

    /// The ref `refs/heads/{branch}` as the refs list returns it; `None` when it does not exist.
    pub async fn branch_ref(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        ref_name: &str,
    ) -> Result<Option<Value>, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/refs"
        ));
        let filter = ref_name.strip_prefix("refs/").unwrap_or(ref_name);
        let response = self.get_json(&url, &[("filter", filter)]).await?;
        Ok(values(&url, response.body)?
            .into_iter()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(ref_name)))
    }

    /// `GET {org}/{project}/_apis/wiki/wikis?api-version={api_version}`: every wiki of the
    /// project, project and code wikis.
    pub async fn wikis(
        &self,
        project_id: &ProjectId,
        api_version: &str,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/wiki/wikis"));
        let query = [("api-version", api_version)];
        values(&url, self.get_json(&url, &query).await?.body)
    }

    reads! {
        /// `GET {org}/{project}/_apis/wiki/wikis/{id}`.
        wiki(project_id: &ProjectId, wiki_id: &WikiId) -> Value
            = "{project_id}/_apis/wiki/wikis/{wiki_id}";
    }

    /// One page of `POST …/wikis/{id}/pagesbatch?api-version={api_version}` (`top` ≤ 100; the
    /// continuation token comes in the `x-ms-continuationtoken` header, or in the body).
    pub async fn wiki_pages_page(
        &self,
        project_id: &ProjectId,
        wiki_id: &WikiId,
        api_version: &str,
        top: usize,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/wiki/wikis/{wiki_id}/pagesbatch"
        ));
        let mut body = json!({"top": top.clamp(1, 100)});
        if let (Some(token), Value::Object(map)) = (continuation_token, &mut body) {
            map.insert("continuationToken".into(), json!(token));
        }
        let response = self
            .post_json(&url, &[("api-version", api_version)], &body)
            .await?;
        let body_token = response
            .body
            .get("continuationToken")
            .and_then(Value::as_str)
            .map(String::from);
        Ok(Page {
            items: values(&url, response.body)?,
            continuation_token: response.continuation_token.or(body_token),
        })
    }

    /// `GET …/wikis/{id}/pages/{pageId}` or, with `path`, `GET …/wikis/{id}/pages?path=`; a
    /// missing page is the 404 Azure DevOps answered (see [`none_if_missing`]).
    pub async fn read_wiki_page(
        &self,
        project_id: &ProjectId,
        wiki_id: &WikiId,
        page: WikiPageRef<'_>,
        include_content: bool,
    ) -> Result<Value, AdoError> {
        self.read_wiki_page_at(project_id, wiki_id, page, include_content, API_VERSION)
            .await
    }

    /// [`AdoClient::read_wiki_page`] with `api-version={api_version}`.
    pub async fn read_wiki_page_at(
        &self,
        project_id: &ProjectId,
        wiki_id: &WikiId,
        page: WikiPageRef<'_>,
        include_content: bool,
        api_version: &str,
    ) -> Result<Value, AdoError> {
        let content = if include_content { "true" } else { "false" };
        let (url, query) = match page {
            WikiPageRef::Id(id) => (
                self.url(&format!(
                    "{project_id}/_apis/wiki/wikis/{wiki_id}/pages/{id}"
                )),
                vec![("includeContent", content), ("api-version", api_version)],
            ),
            WikiPageRef::Path(path) => (
                self.url(&format!("{project_id}/_apis/wiki/wikis/{wiki_id}/pages")),
                vec![
                    ("path", path),
                    ("includeContent", content),
                    ("api-version", api_version),
                ],
            ),
        };
        Ok(self.get_json(&url, &query).await?.body)
    }
}

/// Fewest files a repository's `includedFiles` must name for [`AdoClient::files_present`] to be
/// asked first: with two, one listing and the reads of the existing ones cost as much as two
/// reads unless neither exists.
pub const LIST_FIRST_FROM: usize = 3;

/// Whether a file is in a folder listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Listed as is: read it.
    Listed,
    /// Not listed, not even in another case: it does not exist (no read needed).
    Missing,
    /// Listed in another case only: read it, and let Azure DevOps decide.
    Unsure,
}

/// `/docs/README.md` for `docs/README.md`; `None` for a path with `.` or `..` segments.
fn absolute(path: &str) -> Option<String> {
    let trimmed = path.trim().trim_start_matches('/');
    let plain = trimmed
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != "..");
    plain.then(|| format!("/{trimmed}"))
}

/// The folder of an absolute path (`/docs` of `/docs/README.md`, `/` of `/README.md`).
fn folder_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl AdoClient {
    /// Which of `paths` (files of one folder) exist at `version`, from one one-level listing of
    /// their folder; `None` when they are not all in one folder (the caller reads each). A
    /// folder (or version) Azure DevOps says does not exist holds none of them; any other
    /// failure is the error it is.
    pub async fn files_present(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        paths: &[String],
        version: &GitVersion,
    ) -> Result<Option<Vec<Presence>>, AdoError> {
        let Some(absolute) = paths
            .iter()
            .map(|p| absolute(p))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let Some(folder) = absolute.first().map(|p| folder_of(p)) else {
            return Ok(None);
        };
        if absolute.iter().any(|p| folder_of(p) != folder) {
            return Ok(None);
        }
        let listed: Vec<String> = match self
            .list_items(
                project_id,
                repository_id,
                folder,
                Recursion::OneLevel,
                version,
            )
            .await
        {
            Ok(items) => items
                .iter()
                .filter_map(|i| i.get("path").and_then(Value::as_str).map(String::from))
                .collect(),
            Err(e) if e.says_missing(CONTENT_MISSING) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Some(
            absolute
                .iter()
                .map(|path| {
                    if listed.iter().any(|l| l == path) {
                        Presence::Listed
                    } else if listed.iter().any(|l| l.eq_ignore_ascii_case(path)) {
                        Presence::Unsure
                    } else {
                        Presence::Missing
                    }
                })
                .collect(),
        ))
    }
}

/// `None` for a 404 in which Azure DevOps says the item, page, version or repository asked
/// does not exist ([`CONTENT_MISSING`]: its contract for "there is none"); any other 404 is
/// the error it is, and fails the crawl that meets it.
pub fn none_if_missing(result: Result<Value, AdoError>) -> Result<Option<Value>, AdoError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.says_missing(CONTENT_MISSING) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A wiki page by id or by path.
#[derive(Debug, Clone, Copy)]
pub enum WikiPageRef<'a> {
    Id(u64),
    Path(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_paths_are_listed_from_their_folder() {
        assert_eq!(absolute("README.md").as_deref(), Some("/README.md"));
        assert_eq!(absolute("/docs/a.md").as_deref(), Some("/docs/a.md"));
        assert_eq!(absolute("docs/../a.md"), None);
        assert_eq!(absolute("./a.md"), None);
        assert_eq!(folder_of("/README.md"), "/");
        assert_eq!(folder_of("/docs/a/b.md"), "/docs/a");
    }
}
