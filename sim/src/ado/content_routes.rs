//! Simulated Git content and wiki endpoints, served from [`super::content`].
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}[/{project}]/_apis/git/repositories/{repository}/items` | one item (`path`, `recursionLevel` none): raw text, or JSON with `$format=json`/`includeContent=true`/`Accept: application/json`; a list (`scopePath`, or `recursionLevel` `oneLevel`/`full`) of `GitItem`s, the scope folder first. `versionDescriptor.version`/`versionDescriptor.versionType` (`branch`, `commit`; also the short `version`/`versionType`), default branch otherwise; `includeContentMetadata` |
//! | `POST /{org}[/{project}]/_apis/git/repositories/{repository}/itemsbatch` | `{itemDescriptors:[{path, recursionLevel, version, versionType}], includeContentMetadata}` → `value` = one item list per descriptor; a missing path → 404 `TF401174` |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/commits/{commitId}` | one commit |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/commits/{commitId}/changes` | `{changeCounts, changes}` against the first parent, `top`/`skip` |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/diffs/commits` | `GitCommitDiffs` between `baseVersion` and `targetVersion` (`…VersionType` `commit` or `branch`), `$top` (default 100)/`$skip` |
//! | `GET /{org}[/{project}]/_apis/wiki/wikis` | the project wikis (`WikiV2`) |
//! | `GET /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}` | one wiki, by id or name |
//! | `POST /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pagesbatch` | `{top ≤ 100, continuationToken}` → `WikiPageDetail`s in path order, `x-ms-continuationtoken` while more remain |
//! | `GET /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages/{id}` | one `WikiPage`, `includeContent` |
//! | `GET /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages` | one `WikiPage` by `path`, `includeContent` |
//!
//! Repositories are found by id (or name within a project); project wikis' repositories too,
//! as Azure DevOps serves them through the Git API although the repository list hides them.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::content::{
    Commit, RepositoryContent, Target, Tree, WIKI_BRANCH, Wiki, commit_person, folder_object_id,
    folders, is_within, page_file, page_path,
};
use super::error::{AdoError, json_headers};
use super::request::{AdoRequest, JsonBody};
use super::routes::{continued_list, list, ok_json, parse_count, required_array};
use super::seed::{Organization, Urls, encode_segment};
use super::work::scoped_project;

/// Default `$top` of commit diffs.
const DIFF_PAGE: usize = 100;
/// Most pages one `pagesbatch` call returns.
const PAGES_BATCH_MAX: usize = 100;

/// A refusal of the Git and wiki services (exception `type_key` of their assembly).
fn error(status: StatusCode, message: &str, type_key: &str) -> AdoError {
    AdoError::service(
        status,
        message,
        format!(
            "Microsoft.TeamFoundation.Git.Server.{type_key}, Microsoft.TeamFoundation.Git.Server"
        ),
    )
}

fn version_not_found(version: &str) -> AdoError {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "TF401175: The version descriptor <Branch: {version} > could not be resolved to a version commit."
        ),
        "GitUnresolvableToCommitException",
    )
}

fn item_not_found(path: &str, repository: &str) -> AdoError {
    AdoError::ItemNotFound {
        path: path.to_string(),
        repository: repository.to_string(),
    }
}

fn find_target(org: &Organization, params: &HashMap<String, String>) -> Result<Target, AdoError> {
    let project = scoped_project(org, params)?;
    let id = params.get("repository").cloned().unwrap_or_default();
    if let Some(repository) = org.repository(project, &id) {
        return Ok(Target::of_repository(repository));
    }
    match org.git.wiki(&id) {
        Some(wiki) if project.is_none_or(|p| p.id == wiki.project_id) => Ok(Target::of_wiki(wiki)),
        _ => Err(AdoError::RepositoryNotFound { repository: id }),
    }
}

/// A query parameter by name, case-insensitively.
fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `/docs/` → `/docs`, `docs` → `/docs`, `` → `/`.
fn normalize(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    format!("/{trimmed}")
}

fn resolve<'a>(
    content: Option<&'a RepositoryContent>,
    target: &Target,
    version_type: Option<&str>,
    version: Option<&str>,
) -> Result<&'a Commit, AdoError> {
    content
        .and_then(|c| c.resolve(version_type, version, &target.default_branch))
        .ok_or_else(|| match version {
            Some(version) => version_not_found(version),
            None => item_not_found("/", &target.name),
        })
}

fn content_metadata(path: &str) -> Value {
    let file_name = path.rsplit('/').next().unwrap_or_default();
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_string())
        .unwrap_or_default();
    let content_type = match extension.as_str() {
        "json" => "application/json",
        "md" | "txt" => "text/plain",
        _ => "application/octet-stream",
    };
    json!({
        "encoding": 65001,
        "contentType": content_type,
        "fileName": file_name,
        "extension": extension,
    })
}

fn item_url(urls: &Urls, target: &Target, path: &str, commit: &str) -> String {
    format!(
        "{}/{}/_apis/git/repositories/{}/items?path={}&versionType=Commit&version={commit}",
        urls.organization_url,
        target.project_id,
        target.id,
        encode_segment(path)
    )
}

/// A `GitItem` of `path` in `commit` (a file or a folder); `None` if there is none.
fn git_item(
    urls: &Urls,
    target: &Target,
    commit: &Commit,
    path: &str,
    metadata: bool,
) -> Option<Value> {
    if let Some(blob) = commit.tree.get(path) {
        let mut item = json!({
            "objectId": blob.object_id,
            "gitObjectType": "blob",
            "commitId": commit.id,
            "path": path,
            "url": item_url(urls, target, path, &commit.id),
        });
        if metadata && let Value::Object(map) = &mut item {
            map.insert("contentMetadata".into(), content_metadata(path));
        }
        return Some(item);
    }
    folders(&commit.tree).contains(path).then(|| {
        json!({
            "objectId": folder_object_id(&commit.tree, path),
            "gitObjectType": "tree",
            "commitId": commit.id,
            "path": path,
            "isFolder": true,
            "url": item_url(urls, target, path, &commit.id),
        })
    })
}

/// Items of a listing: `scope` itself, then what `recursion` takes below it, in path order.
fn list_items(
    urls: &Urls,
    target: &Target,
    commit: &Commit,
    scope: &str,
    recursion: &str,
    metadata: bool,
) -> Option<Vec<Value>> {
    let first = git_item(urls, target, commit, scope, metadata)?;
    let mut out = vec![first];
    if commit.tree.contains_key(scope) || recursion == "none" {
        return Some(out);
    }
    let depth = |p: &str| p.matches('/').count();
    let scope_depth = if scope == "/" { 0 } else { depth(scope) };
    let mut paths: Vec<String> = folders(&commit.tree)
        .into_iter()
        .chain(commit.tree.keys().cloned())
        .filter(|p| p != scope && p != "/" && is_within(p, scope))
        .filter(|p| recursion == "full" || depth(p) == scope_depth + 1)
        .collect();
    paths.sort();
    out.extend(
        paths
            .iter()
            .filter_map(|p| git_item(urls, target, commit, p, metadata)),
    );
    Some(out)
}

fn recursion_level(text: Option<&str>) -> &'static str {
    match text.map(str::to_ascii_lowercase).as_deref() {
        Some("onelevel") | Some("onelevelplusnestedemptyfolders") => "oneLevel",
        Some("full") => "full",
        _ => "none",
    }
}

pub(super) async fn get_items(request: AdoRequest) -> Result<Response, AdoError> {
    if let (Some(path), None) = (
        param(&request.query, "path"),
        param(&request.query, "scopePath"),
    ) && recursion_level(param(&request.query, "recursionLevel")) == "none"
    {
        super::minimum::note_item_read(&request.state, path);
    }
    let org = request.organization();
    let target = find_target(&org, &request.params)?;
    let content = org.git.repositories.get(&target.id);
    let version = param(&request.query, "versionDescriptor.version")
        .or_else(|| param(&request.query, "version"));
    let version_type = param(&request.query, "versionDescriptor.versionType")
        .or_else(|| param(&request.query, "versionType"));
    let commit = resolve(content, &target, version_type, version)?;
    let scope_path = param(&request.query, "scopePath");
    let Some(raw_path) = param(&request.query, "path").or(scope_path) else {
        return Err(AdoError::bad_argument("The path parameter is required."));
    };
    let path = normalize(raw_path);
    let recursion = recursion_level(param(&request.query, "recursionLevel"));
    let metadata = request.flag("includeContentMetadata");
    if scope_path.is_some() || recursion != "none" {
        return match list_items(&request.urls, &target, commit, &path, recursion, metadata) {
            Some(items) => Ok(list(items)),
            None => Err(item_not_found(&path, &target.name)),
        };
    }
    let Some(mut item) = git_item(&request.urls, &target, commit, &path, metadata) else {
        return Err(item_not_found(&path, &target.name));
    };
    let format = param(&request.query, "$format")
        .or_else(|| param(&request.query, "format"))
        .map(str::to_ascii_lowercase);
    let include_content = request.flag("includeContent");
    let wants_json = match format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => {
            include_content
                || request
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("application/json"))
        }
    };
    let blob = commit.tree.get(&path);
    if !wants_json && let Some(blob) = blob {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            blob.content.clone(),
        )
            .into_response());
    }
    if include_content && let (Some(blob), Value::Object(map)) = (blob, &mut item) {
        map.insert("content".into(), json!(blob.content));
    }
    Ok(ok_json(item))
}

pub(super) async fn items_batch(
    request: AdoRequest,
    JsonBody(batch): JsonBody,
) -> Result<Response, AdoError> {
    let descriptors = required_array(
        &batch,
        "itemDescriptors",
        "Value cannot be null.\r\nParameter name: requestData.ItemDescriptors",
    )?;
    let metadata = batch
        .get("includeContentMetadata")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let org = request.organization();
    let target = find_target(&org, &request.params)?;
    let content = org.git.repositories.get(&target.id);
    let mut lists = Vec::new();
    for descriptor in descriptors {
        let text = |key: &str| descriptor.get(key).and_then(Value::as_str);
        let commit = resolve(content, &target, text("versionType"), text("version"))?;
        let path = normalize(text("path").unwrap_or("/"));
        let recursion = recursion_level(text("recursionLevel"));
        match list_items(&request.urls, &target, commit, &path, recursion, metadata) {
            Some(items) => lists.push(Value::Array(items)),
            None => return Err(item_not_found(&path, &target.name)),
        }
    }
    Ok(ok_json(json!({"count": lists.len(), "value": lists})))
}

fn commit_json(org: &Organization, urls: &Urls, target: &Target, commit: &Commit) -> Value {
    let person = commit_person(org, commit);
    json!({
        "commitId": commit.id,
        "treeId": folder_object_id(&commit.tree, "/"),
        "parents": commit.parents,
        "author": person,
        "committer": person,
        "comment": commit.comment,
        "url": format!("{}/{}/_apis/git/repositories/{}/commits/{}", urls.organization_url, target.project_id, target.id, commit.id),
    })
}

/// The changes from `base` to `target_commit`: files and folders, in path order.
fn changes(urls: &Urls, target: &Target, base: &Tree, commit: &Commit) -> Vec<Value> {
    let after = &commit.tree;
    let mut out: Vec<(String, Value)> = Vec::new();
    let item = |path: &str, object_id: &str, original: Option<&str>, folder: bool| {
        let mut map = Map::new();
        map.insert("objectId".into(), json!(object_id));
        if let Some(original) = original {
            map.insert("originalObjectId".into(), json!(original));
        }
        map.insert(
            "gitObjectType".into(),
            json!(if folder { "tree" } else { "blob" }),
        );
        map.insert("commitId".into(), json!(commit.id));
        map.insert("path".into(), json!(path));
        if folder {
            map.insert("isFolder".into(), json!(true));
        }
        map.insert(
            "url".into(),
            json!(item_url(urls, target, path, &commit.id)),
        );
        Value::Object(map)
    };
    for (path, blob) in after {
        match base.get(path) {
            None => out.push((
                path.clone(),
                json!({"item": item(path, &blob.object_id, None, false), "changeType": "add"}),
            )),
            Some(old) if old.object_id != blob.object_id => out.push((
                path.clone(),
                json!({"item": item(path, &blob.object_id, Some(&old.object_id), false), "changeType": "edit"}),
            )),
            Some(_) => {}
        }
    }
    for (path, old) in base {
        if !after.contains_key(path) {
            out.push((
                path.clone(),
                json!({"item": item(path, &old.object_id, Some(&old.object_id), false), "changeType": "delete"}),
            ));
        }
    }
    let (before_folders, after_folders) = (folders(base), folders(after));
    for folder in after_folders.union(&before_folders) {
        let (old, new) = (
            before_folders
                .contains(folder)
                .then(|| folder_object_id(base, folder)),
            after_folders
                .contains(folder)
                .then(|| folder_object_id(after, folder)),
        );
        let change = match (&old, &new) {
            (None, Some(new)) => Some((item(folder, new, None, true), "add")),
            (Some(old), None) => Some((item(folder, old, Some(old), true), "delete")),
            (Some(old), Some(new)) if old != new => {
                Some((item(folder, new, Some(old), true), "edit"))
            }
            _ => None,
        };
        if let Some((item, change_type)) = change {
            out.push((
                folder.clone(),
                json!({"item": item, "changeType": change_type}),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, change)| change).collect()
}

fn change_counts(changes: &[Value]) -> Value {
    let mut counts = Map::new();
    for change in changes {
        let key = match change["changeType"].as_str() {
            Some("add") => "Add",
            Some("edit") => "Edit",
            Some("delete") => "Delete",
            _ => continue,
        };
        let next = counts.get(key).and_then(Value::as_u64).unwrap_or(0) + 1;
        counts.insert(key.into(), json!(next));
    }
    Value::Object(counts)
}

pub(super) async fn get_commit(request: AdoRequest) -> Result<Response, AdoError> {
    let held = {
        let org = request.organization();
        let target = find_target(&org, &request.params)?;
        let id = request.param("commitId");
        org.git
            .repositories
            .get(&target.id)
            .and_then(|c| c.commits.get(&id))
            .map(|commit| commit_json(&org, &request.urls, &target, commit))
    };
    match held {
        Some(commit) => Ok(ok_json(commit)),
        // Builds' source commits live in the pipelines model (see `runs`).
        None => super::runs::get_commit(request).await,
    }
}

fn commit_not_found(id: &str, repository: &str) -> AdoError {
    error(
        StatusCode::NOT_FOUND,
        &format!("TF401175: The commit {id} could not be found in repository {repository}."),
        "GitCommitDoesNotExistException",
    )
}

pub(super) async fn commit_changes(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "top")?.unwrap_or(usize::MAX);
    let skip = parse_count(&request.query, "skip")?.unwrap_or(0);
    let org = request.organization();
    let target = find_target(&org, &request.params)?;
    let id = request.param("commitId");
    let Some(content) = org.git.repositories.get(&target.id) else {
        return Err(commit_not_found(&id, &target.name));
    };
    let Some(commit) = content.commits.get(&id) else {
        return Err(commit_not_found(&id, &target.name));
    };
    let empty = Tree::new();
    let base = commit
        .parents
        .first()
        .and_then(|p| content.commits.get(p))
        .map_or(&empty, |c| &c.tree);
    let all = changes(&request.urls, &target, base, commit);
    let counts = change_counts(&all);
    let page: Vec<Value> = all.into_iter().skip(skip).take(top).collect();
    Ok(ok_json(json!({"changeCounts": counts, "changes": page})))
}

pub(super) async fn diff_commits(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "$top")?.unwrap_or(DIFF_PAGE);
    let skip = parse_count(&request.query, "$skip")?.unwrap_or(0);
    let org = request.organization();
    let target = find_target(&org, &request.params)?;
    let content = org.git.repositories.get(&target.id);
    let (Some(base_version), Some(target_version)) = (
        param(&request.query, "baseVersion"),
        param(&request.query, "targetVersion"),
    ) else {
        return Err(AdoError::bad_argument(
            "baseVersion and targetVersion are required.",
        ));
    };
    let side = |version_type: &str, version| {
        resolve(
            content,
            &target,
            param(&request.query, version_type),
            Some(version),
        )
    };
    let base = side("baseVersionType", base_version)?;
    let head = side("targetVersionType", target_version)?;
    let all = changes(&request.urls, &target, &base.tree, head);
    let counts = change_counts(&all);
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(skip).take(top).collect();
    Ok(ok_json(json!({
        "allChangesIncluded": skip + page.len() >= total,
        "changeCounts": counts,
        "changes": page,
        "commonCommit": base.id,
        "baseCommit": base.id,
        "targetCommit": head.id,
        "aheadCount": 0,
        "behindCount": 0,
    })))
}

fn wiki_json(org: &Organization, urls: &Urls, wiki: &Wiki) -> Value {
    let project_name = org
        .project_by_id(&wiki.project_id)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    json!({
        "id": wiki.id,
        "versions": [{"version": WIKI_BRANCH.trim_start_matches("refs/heads/")}],
        "url": format!("{}/{}/_apis/wiki/wikis/{}", urls.organization_url, wiki.project_id, wiki.id),
        "remoteUrl": format!("{}/{}/_wiki/wikis/{}", urls.organization_url, encode_segment(&project_name), encode_segment(&wiki.name)),
        "type": if wiki.code { "codeWiki" } else { "projectWiki" },
        "name": wiki.name,
        "projectId": wiki.project_id,
        "repositoryId": wiki.id,
        "mappedPath": "/",
    })
}

pub(super) async fn list_wikis(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = match request.params.get("project") {
        Some(name) => Some(org.project(name).ok_or_else(|| AdoError::ProjectNotFound {
            project: name.clone(),
        })?),
        None => None,
    };
    let values = org
        .git
        .wikis
        .iter()
        .filter(|w| project.is_none_or(|p| p.id == w.project_id))
        .map(|w| wiki_json(&org, &request.urls, w))
        .collect();
    Ok(list(values))
}

fn wiki_not_found(id: &str) -> AdoError {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "The wiki {id} does not exist. Either specify a valid wiki name or ID, or create a wiki first."
        ),
        "WikiNotFoundException",
    )
}

fn find_wiki<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
) -> Result<&'a Wiki, AdoError> {
    let id = params.get("wikiIdentifier").cloned().unwrap_or_default();
    let project = params.get("project").and_then(|p| org.project(p));
    org.git
        .wiki(&id)
        .filter(|w| project.is_none_or(|p| p.id == w.project_id))
        .ok_or_else(|| wiki_not_found(&id))
}

pub(super) async fn get_wiki(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let wiki = find_wiki(&org, &request.params)?;
    Ok(ok_json(wiki_json(&org, &request.urls, wiki)))
}

/// The pages of a wiki's head: `(page path, page id)` in path order.
fn wiki_pages(org: &Organization, wiki: &Wiki) -> Vec<(String, u64)> {
    let Some(content) = org.git.repositories.get(&wiki.id) else {
        return Vec::new();
    };
    let Some(commit) = content.resolve(None, None, WIKI_BRANCH) else {
        return Vec::new();
    };
    let mut pages: Vec<(String, u64)> = commit
        .tree
        .keys()
        .filter_map(|file| page_path(file))
        .filter_map(|page| content.page_ids.get(&page).map(|id| (page, *id)))
        .collect();
    pages.sort();
    pages
}

pub(super) async fn pages_batch(request: AdoRequest, body: Bytes) -> Result<Response, AdoError> {
    let batch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let top = batch.get("top").and_then(Value::as_u64).unwrap_or(0) as usize;
    if top == 0 || top > PAGES_BATCH_MAX {
        return Err(AdoError::bad_argument(format!(
            "The value of top must be between 1 and {PAGES_BATCH_MAX}. Parameter name: pagesBatchRequest.Top"
        )));
    }
    let start = match batch.get("continuationToken").and_then(Value::as_str) {
        Some(token) => token.parse::<usize>().map_err(|_| {
            AdoError::bad_argument(format!("The continuation token '{token}' is not valid."))
        })?,
        None => 0,
    };
    let org = request.organization();
    let wiki = find_wiki(&org, &request.params)?;
    let values = wiki_pages(&org, wiki)
        .into_iter()
        .map(|(path, id)| json!({"id": id, "path": path}))
        .collect();
    Ok(continued_list(values, start, top))
}

pub(super) async fn get_page(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let wiki = find_wiki(&org, &request.params)?;
    let pages = wiki_pages(&org, wiki);
    let wanted_id = request.id("pageId");
    let wanted_path = param(&request.query, "path").map(normalize);
    let found = pages.iter().find(|(path, id)| {
        wanted_id.map_or_else(
            || wanted_path.as_deref() == Some(path.as_str()),
            |w| w == *id,
        )
    });
    let Some((path, id)) = found else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!(
                "The page '{}' specified is not found in the wiki.",
                wanted_path
                    .or(wanted_id.map(|i| i.to_string()))
                    .unwrap_or_default()
            ),
            "WikiPageNotFoundException",
        ));
    };
    let file = page_file(path);
    let is_parent = pages
        .iter()
        .any(|(other, _)| other != path && is_within(other, path));
    let mut page = json!({
        "id": id,
        "path": path,
        "order": 0,
        "gitItemPath": file,
        "isParentPage": is_parent,
        "subPages": [],
        "url": format!("{}/{}/_apis/wiki/wikis/{}/pages/{}", request.urls.organization_url, wiki.project_id, wiki.id, encode_segment(path)),
        "remoteUrl": format!("{}/{}/_wiki/wikis/{}?pagePath={}", request.urls.organization_url, wiki.project_id, wiki.id, encode_segment(path)),
    });
    let content = org
        .git
        .repositories
        .get(&wiki.id)
        .and_then(|c| c.resolve(None, None, WIKI_BRANCH))
        .and_then(|commit| {
            commit
                .tree
                .get(&file)
                .map(|b| (commit.id.clone(), b.clone()))
        });
    let mut response_headers = json_headers();
    if let Some((commit_id, blob)) = content {
        if request.flag("includeContent")
            && let Value::Object(map) = &mut page
        {
            map.insert("content".into(), json!(blob.content));
        }
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{commit_id}\"")) {
            response_headers.insert(header::ETAG, etag);
        }
    }
    Ok((StatusCode::OK, response_headers, page.to_string()).into_response())
}
