//! The Azure DevOps simulator: one organization, REST API 7.1, on `http://127.0.0.1:PORT/{org}`
//! (the equivalent of `https://dev.azure.com/{org}`), or several organizations on one server
//! ([`AdoSim::start_organizations`], one handle each, with its own data and counters).
//!
//! Every request goes through the same gate, in this order: count it under its route template,
//! apply a scripted answer if one is queued ([`AdoSim::fail_next`]), check the PAT (203 HTML
//! sign-in page, or 401 JSON with `X-TFS-FedAuthRedirect: Suppress`) or a bearer token of the
//! identity simulator ([`AdoSimConfig::bearer_tokens`]; 401 when expired, revoked or unknown),
//! check the organization,
//! check `api-version` (query or `Accept` header; missing on a write → 400 `VssVersionNotSpecifiedException`).
//!
//! Route template keys, as [`AdoSim::requests`] reports them and [`AdoSim::fail_next`] takes
//! them (`pullRequests` spellings count under the lower-case key):
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/_apis/projects` | project references; `$top` (≤ `max_page_size`, default 100), `continuationToken`/`$skip`, `includeCapabilities`; `x-ms-continuationtoken` header while more remain |
//! | `GET /{org}/_apis/projects/{project}` | the full project (id or name): `_links`, `defaultTeam`, `capabilities` with `includeCapabilities=true` |
//! | `GET /{org}/_apis/git/repositories` | every repository of the organization (no paging) |
//! | `GET /{org}/{project}/_apis/git/repositories` | the project's repositories (no paging) |
//! | `GET /{org}/_apis/git/repositories/{repository}` | one repository by id |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}` | one repository by id or name |
//! | `GET /{org}/_apis/git/repositories/{repository}/items` | a file or a listing (see [`content_routes`] for items, commits, diffs and wikis) |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/items` | same, project-scoped |
//! | `GET /{org}/_apis/git/repositories/{repository}/pullrequests` | pull requests of a repository, `searchCriteria.status` (default `active`), `$top` (default 100)/`$skip` |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/pullrequests` | same, project-scoped |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/pullrequests/{pullRequestId}` | one pull request |
//! | `GET /{org}/{project}/_apis/git/pullrequests` | pull requests of a project (`searchCriteria.repositoryId` optional) |
//! | `GET /{org}/_apis/git/pullrequests/{pullRequestId}` | one pull request by id |
//! | `GET /{org}/{project}/_apis/git/pullrequests/{pullRequestId}` | same, project-scoped |
//! | `POST …/pullrequests`, `PATCH …/pullrequests/{pullRequestId}`, `…/reviewers`, `…/threads` | create, update, complete, abandon, reviewers, comment threads (see `pull_request_writes`) |
//! | identity, team settings, area and project-property endpoints | see `identities.rs` |
//! | `POST/GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs…` | pipeline runs (see `pipeline_runs`) |
//! | `GET /{org}/{project}/_odata/v4.0-preview/PipelineRuns` | Analytics OData: completed pipeline runs (see [`analytics`]) |
//! | `GET <unmatched>` (any method) | 404 |
//!
//! 404s carry the Azure DevOps error body (`TF200016` project, `TF401019` repository,
//! `TF401180` pull request, `TF401232` work item, `TF401174` file). Repositories, work items
//! and projects can be deleted to a recycle bin and restored (see `recycle.rs`).

pub mod analytics;
mod auth;
pub mod content;
mod content_routes;
mod core_routes;
mod create;
mod directory;
mod error;
mod identities;
mod limit;
mod live;
mod minimum;
mod organizations;
mod pipeline_runs;
pub mod pipelines;
mod pull_request_writes;
mod recycle;
mod releases;
mod request;
mod routes;
pub mod runs;
pub mod security;
mod seed;
mod since;
mod work;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::scripted::ScriptedAnswer;
use crate::server::Server;
use crate::traffic::{Traffic, lock};
use seed::{Organization, Urls};

pub use content::{FileChange, PushResult, SimCommit, ZERO_OBJECT_ID};
pub use minimum::{KindRequests, RequestReport};

/// What the simulated organization holds and how it answers.
#[derive(Clone, Debug)]
pub struct AdoSimConfig {
    /// The organization name, the first path segment (default `"acme"`).
    pub organization: String,
    /// The only PAT accepted (default `"sim-pat"`).
    pub personal_access_token: String,
    /// Projects seeded (default 3).
    pub projects: usize,
    /// Repositories seeded per project (default 4).
    pub repositories_per_project: usize,
    /// Pull requests seeded per healthy, non-empty repository (default 2).
    pub pull_requests_per_repository: usize,
    /// Server cap on `$top` for the projects list (default 100).
    pub max_page_size: usize,
    /// Work items seeded per project (default 6; types and states cycle).
    pub work_items_per_project: usize,
    /// Releases seeded per project (default 3).
    pub releases_per_project: usize,
    /// Most ids a WIQL query may return without `$top` before it fails with `VS402337`
    /// (Azure DevOps: 20,000; lower it to test id-range paging).
    pub wiql_max_results: usize,
    /// How long every answer takes (a real organization's network and server time; default 0).
    pub latency: Duration,
    /// Bearer tokens accepted besides the PAT: those the identity simulator issued for Azure
    /// DevOps' scope (a service principal, `Multiple Accounts`). `None`: PAT only.
    pub bearer_tokens: Option<crate::identity::IssuedTokens>,
    /// This organization's request budget: a sliding window, every answer with
    /// `X-RateLimit-*` headers, 429 `TF400733` with `Retry-After` past it (see `limit.rs`).
    /// `None`: unlimited.
    pub rate_limit: Option<crate::port::RateLimit>,
    /// Requests past [`AdoSimConfig::rate_limit`] in one window that Azure DevOps still
    /// answers, delayed (a 200 with `Retry-After`), before it blocks with 429 (default 0).
    pub rate_limit_delayed: u32,
    /// Server page size of the graph user/group lists and of user entitlements (default 100;
    /// lower it to cross continuation-token pages).
    pub identity_page_size: usize,
    /// Rows of an Analytics OData page before `@odata.nextLink` (Analytics: 10,000; lower it
    /// to cross server-driven pages).
    pub analytics_page_size: usize,
}

impl Default for AdoSimConfig {
    fn default() -> Self {
        Self {
            organization: "acme".to_string(),
            personal_access_token: "sim-pat".to_string(),
            projects: 3,
            repositories_per_project: 4,
            pull_requests_per_repository: 2,
            max_page_size: 100,
            work_items_per_project: 6,
            releases_per_project: 3,
            wiql_max_results: 20_000,
            latency: Duration::ZERO,
            bearer_tokens: None,
            rate_limit: None,
            rate_limit_delayed: 0,
            identity_page_size: 100,
            analytics_page_size: 10_000,
        }
    }
}

/// State shared by the handlers and the handle.
#[derive(Debug)]
pub(crate) struct AdoState {
    pub(crate) config: AdoSimConfig,
    pub(crate) organization: Mutex<Organization>,
    pub(crate) traffic: Traffic,
    /// `127.0.0.1:PORT`: the host URLs are rendered with when a request has no `Host`.
    pub(crate) default_host: String,
    /// Project ids every request naming them (in any path segment) gets a 403 for.
    pub(crate) forbidden_projects: Mutex<std::collections::HashSet<String>>,
    /// Project ids whose default team is in no iteration: its iterations list is empty and its
    /// boards answer 500, as Azure DevOps answers for such a team.
    pub(crate) teams_without_iterations: Mutex<std::collections::HashSet<String>>,
    /// Service-hook subscriptions, in creation order.
    pub(crate) subscriptions: Mutex<Vec<Value>>,
    /// Runs started through the Pipelines API.
    pub(crate) pipeline_runs: Mutex<pipeline_runs::PipelineRuns>,
    /// What live-event tests change (alert states).
    pub(crate) live: live::LiveState,
    /// The request budget's window, when the config sets one.
    pub(crate) budget: Mutex<Option<limit::Budget>>,
    /// Reads of one item by the path they asked for (lowercase, from the root), whatever the
    /// answer: how [`AdoSim::request_report`] tells `includedFiles` from GitOps reads.
    pub(crate) item_reads: Mutex<BTreeMap<String, u64>>,
}

fn default_host(listener: &tokio::net::TcpListener) -> std::io::Result<String> {
    let addr = listener.local_addr()?;
    Ok(if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    })
}

impl AdoState {
    fn seeded(config: AdoSimConfig, default_host: String) -> Arc<Self> {
        Arc::new(AdoState {
            budget: Mutex::new(
                config
                    .rate_limit
                    .map(|limit| limit::Budget::new(limit, config.rate_limit_delayed)),
            ),
            organization: Mutex::new(Organization::seed(&config)),
            config,
            traffic: Traffic::default(),
            default_host,
            forbidden_projects: Mutex::new(std::collections::HashSet::new()),
            teams_without_iterations: Mutex::new(std::collections::HashSet::new()),
            subscriptions: Mutex::new(Vec::new()),
            pipeline_runs: Mutex::default(),
            live: live::LiveState::default(),
            item_reads: Mutex::default(),
        })
    }
}

/// A running Azure DevOps simulator. Dropping it (or [`AdoSim::shutdown`]) stops the server.
#[derive(Debug)]
pub struct AdoSim {
    state: Arc<AdoState>,
    /// Shared by the organizations of [`AdoSim::start_organizations`]; stops with the last.
    server: Arc<Server>,
}

impl AdoSim {
    /// Seeds the organization and serves it on `127.0.0.1:0`.
    pub async fn start(config: AdoSimConfig) -> std::io::Result<AdoSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(config, listener).await
    }

    /// Seeds the organization and serves it on `listener` (e.g. a fixed port for `adoport sim`).
    pub async fn start_on(
        config: AdoSimConfig,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<AdoSim> {
        let default_host = default_host(&listener)?;
        let state = AdoState::seeded(config, default_host);
        let server = Server::spawn(listener, routes::router(Arc::clone(&state)))?;
        Ok(AdoSim {
            state,
            server: Arc::new(server),
        })
    }

    /// Several organizations on one server (`http://127.0.0.1:PORT/{org}` each, as
    /// `dev.azure.com` serves them), each seeded from its own config with its own data,
    /// counters, scripts and subscriptions. One handle per config, in order; the organization
    /// names must differ. The server stops when the last handle is shut down or dropped.
    pub async fn start_organizations(configs: Vec<AdoSimConfig>) -> std::io::Result<Vec<AdoSim>> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let default_host = default_host(&listener)?;
        let states: Vec<Arc<AdoState>> = configs
            .into_iter()
            .map(|config| AdoState::seeded(config, default_host.clone()))
            .collect();
        let server = Arc::new(Server::spawn(listener, organizations::router(&states))?);
        Ok(states
            .into_iter()
            .map(|state| AdoSim {
                state,
                server: Arc::clone(&server),
            })
            .collect())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.state.default_host)
    }

    /// `http://127.0.0.1:PORT/{org}`, what `OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL` takes.
    pub fn organization_url(&self) -> String {
        format!("{}/{}", self.base_url(), self.state.config.organization)
    }

    fn urls(&self) -> Urls {
        Urls::new(&self.state.default_host, &self.state.config.organization)
    }

    /// Every one of the organization's `items`, as `json` renders it with URLs for
    /// [`AdoSim::base_url`].
    fn render_all<T>(
        &self,
        items: impl Fn(&Organization) -> &[T],
        json: impl Fn(&Organization, &Urls, &T) -> Value,
    ) -> Vec<Value> {
        let urls = self.urls();
        let org = lock(&self.state.organization);
        items(&org)
            .iter()
            .map(|item| json(&org, &urls, item))
            .collect()
    }

    /// The current projects, as `GET /_apis/projects/{id}?includeCapabilities=true` returns them
    /// (URLs rendered for [`AdoSim::base_url`]).
    pub fn projects(&self) -> Vec<Value> {
        self.render_all(
            |org| &org.projects,
            |org, urls, p| org.project_full(urls, p, true),
        )
    }

    /// The current repositories of every project, as the repositories list returns them.
    pub fn repositories(&self) -> Vec<Value> {
        self.render_all(|org| &org.repositories, Organization::repository_json)
    }

    /// A file's text on a repository's default branch, as the items API serves it (`README.md`,
    /// `CODEOWNERS`); `None` where the repository has no such file.
    pub fn file(&self, repository_id: &str, path: &str) -> Option<String> {
        let org = lock(&self.state.organization);
        let repository = org.repositories.iter().find(|r| r.id == repository_id)?;
        let wanted = path.trim_start_matches('/');
        if wanted.eq_ignore_ascii_case("README.md") {
            repository.readme.clone()
        } else if wanted.eq_ignore_ascii_case("CODEOWNERS") {
            repository.codeowners.clone()
        } else {
            None
        }
    }

    /// The current pull requests of every repository (any status), as the API returns them.
    pub fn pull_requests(&self) -> Vec<Value> {
        self.render_all(|org| &org.pull_requests, Organization::pull_request_json)
    }

    /// The comment threads of a pull request, as `GET …/pullrequests/{id}/threads` returns
    /// them; empty for an unknown pull request.
    pub fn pull_request_threads(&self, pull_request_id: u64) -> Vec<Value> {
        let urls = self.urls();
        let org = lock(&self.state.organization);
        org.pull_request(pull_request_id)
            .map(|pr| {
                pr.threads
                    .iter()
                    .map(|t| pull_request_writes::thread_json(&org, &urls, pr, t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Renames a repository (no-op for an unknown id), for live-event tests.
    pub fn rename_repository(&self, repository_id: &str, new_name: &str) {
        {
            let mut org = lock(&self.state.organization);
            if let Some(repository) = org.repositories.iter_mut().find(|r| r.id == repository_id) {
                repository.name = new_name.to_string();
            }
        }
        self.state.traffic.touch();
    }

    /// Sets a pull request's status (`active`, `completed`, `abandoned`); false if unknown.
    pub fn set_pull_request_status(&self, pull_request_id: u64, status: &str) -> bool {
        let status: &'static str = match status {
            "completed" => "completed",
            "abandoned" => "abandoned",
            _ => "active",
        };
        self.change_pull_request(pull_request_id, |pr| {
            pr.status = status;
            pr.closed_date = (status != "active").then(chrono::Utc::now);
        })
    }

    /// The current work items of every project, as `workitemsbatch` returns them with
    /// `$expand=All`.
    pub fn work_items(&self) -> Vec<Value> {
        self.render_all(
            |org| &org.work_items,
            |org, urls, w| org.work_item_json(urls, w, "all"),
        )
    }

    /// Retitles a work item (a new revision, changed now); false if there is none with that id.
    pub fn set_work_item_title(&self, id: u64, title: &str) -> bool {
        let found = {
            let mut org = lock(&self.state.organization);
            match org.work_items.iter_mut().find(|w| w.id == id) {
                Some(item) => {
                    item.title = title.to_string();
                    item.rev += 1;
                    item.changed_date = chrono::Utc::now();
                    true
                }
                None => false,
            }
        };
        self.state.traffic.touch();
        found
    }

    /// Moves a work item to another state (`New`, `Active`, `Resolved` or `Closed`: a new
    /// revision, changed now), as a user dragging it across the board; false if there is no
    /// work item with that id or no such state.
    pub fn set_work_item_state(&self, id: u64, state: &str) -> bool {
        let Some(state) = seed::WORK_ITEM_STATES.iter().find(|s| **s == state) else {
            return false;
        };
        let found = {
            let mut org = lock(&self.state.organization);
            match org.work_items.iter_mut().find(|w| w.id == id) {
                Some(item) => {
                    item.state = state;
                    item.rev += 1;
                    item.changed_date = chrono::Utc::now();
                    true
                }
                None => false,
            }
        };
        self.state.traffic.touch();
        found
    }

    /// Every request naming this project id (in any path segment) gets 403 from now on.
    pub fn forbid_project(&self, project_id: &str) {
        lock(&self.state.forbidden_projects).insert(project_id.to_string());
    }

    /// Adds a policy configuration to project `project_id` with `settings.scope` = `scope` (as
    /// Azure DevOps stores it: entries of `repositoryId` (`null`: every repository of the
    /// project), `refName` and `matchKind`) and returns its id. Both policy listings serve it
    /// from now on, the per-repository one only where its scope applies.
    pub fn add_policy(&self, project_id: &str, display_name: &str, scope: Value) -> u64 {
        let organization_url = self.organization_url();
        let mut org = lock(&self.state.organization);
        let id = 100_000 + org.added_policies.len() as u64;
        let url = format!("{organization_url}/{project_id}/_apis/policy/configurations/{id}");
        org.added_policies.push((
            project_id.to_string(),
            serde_json::json!({
                "isEnabled": true,
                "isBlocking": false,
                "isDeleted": false,
                "isEnterpriseManaged": false,
                "revision": 1,
                "id": id,
                "url": url,
                "settings": {"scope": scope},
                "type": {"id": "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd", "displayName": display_name},
            }),
        ));
        drop(org);
        self.state.traffic.touch();
        id
    }

    /// Takes this project's default team out of every iteration: from now on its iterations
    /// list is empty and listing its boards answers 500, as Azure DevOps does.
    pub fn remove_team_iterations(&self, project_id: &str) {
        lock(&self.state.teams_without_iterations).insert(project_id.to_string());
        self.state.traffic.touch();
    }

    /// The service-hook subscriptions that exist, as `GET _apis/hooks/subscriptions` lists them.
    pub fn subscriptions(&self) -> Vec<Value> {
        lock(&self.state.subscriptions).clone()
    }

    /// Deletes a subscription, as a user would in Azure DevOps' settings; false if unknown.
    pub fn delete_subscription(&self, id: &str) -> bool {
        let mut subscriptions = lock(&self.state.subscriptions);
        let before = subscriptions.len();
        subscriptions.retain(|s| s.get("id").and_then(Value::as_str) != Some(id));
        subscriptions.len() < before
    }

    /// Sets a subscription's `status` (e.g. `disabledBySystem`); false if unknown.
    pub fn set_subscription_status(&self, id: &str, status: &str) -> bool {
        let mut subscriptions = lock(&self.state.subscriptions);
        match subscriptions
            .iter_mut()
            .find(|s| s.get("id").and_then(Value::as_str) == Some(id))
        {
            Some(Value::Object(map)) => {
                map.insert("status".into(), Value::String(status.to_string()));
                true
            }
            _ => false,
        }
    }

    /// Requests received, per route template key (see the module docs for the keys).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.state.traffic.counts()
    }

    /// The query parameters of the latest requests on `route` (a template key such as
    /// `"GET /{org}/{project}/_apis/build/builds"`), oldest first; WIQL requests also keep
    /// their query text under the key `"WIQL"` (parameter `query`).
    pub fn queries(&self, route: &str) -> Vec<crate::QueryParams> {
        self.state.traffic.queries(route)
    }

    /// Requests received in total (including refused and unmatched ones).
    pub fn total_requests(&self) -> u64 {
        self.state.traffic.total()
    }

    /// The most requests this organization answered at once (from their arrival to their
    /// answer, simulated latency included) since the start or the last
    /// [`AdoSim::reset_peak_in_flight`].
    pub fn peak_in_flight(&self) -> u64 {
        self.state.traffic.peak_in_flight()
    }

    /// Requests being answered right now (arrived, simulated latency not yet over), per route
    /// template key; routes with none are left out. [`AdoSim::wait_for`] re-checks when a
    /// request arrives and when it is answered, so a test can await reads of several kinds
    /// under way at once.
    pub fn in_flight(&self) -> BTreeMap<String, u64> {
        self.state.traffic.in_flight_routes()
    }

    /// Starts [`AdoSim::peak_in_flight`] again from the requests being answered now.
    pub fn reset_peak_in_flight(&self) {
        self.state.traffic.reset_peak_in_flight()
    }

    /// The next `answers.len()` requests on `route` (a template key such as
    /// `"GET /{org}/_apis/projects"`) get these answers instead of the normal ones.
    pub fn fail_next(&self, route: &str, answers: Vec<ScriptedAnswer>) {
        self.state.traffic.script(route, answers);
    }

    /// A read that fails mid-crawl: the next `normal` requests on `route` are answered as
    /// usual, then one answers 404 with Azure DevOps' error body (`message`, `typeKey` from
    /// the last dotted part of `type_name`; `NotFoundException` when `type_name` is empty).
    pub fn not_found_after(&self, route: &str, normal: usize, message: &str, type_name: &str) {
        let type_name = if type_name.is_empty() {
            "Microsoft.VisualStudio.Services.WebApi.NotFoundException, Microsoft.VisualStudio.Services.WebApi"
        } else {
            type_name
        };
        let type_key = type_name
            .split(',')
            .next()
            .and_then(|full| full.rsplit('.').next())
            .unwrap_or_default();
        let body = serde_json::json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": type_name,
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        });
        let mut answers = vec![ScriptedAnswer::normal(); normal];
        answers.push(ScriptedAnswer::json(404, body));
        self.state.traffic.script(route, answers);
    }

    /// Waits until `predicate` holds, re-checking after every request and every change made
    /// through this handle; false when `timeout` passes first.
    pub async fn wait_for(&self, predicate: impl Fn(&AdoSim) -> bool, timeout: Duration) -> bool {
        self.state
            .traffic
            .wait_for(|| predicate(self), timeout)
            .await
    }

    /// Stops the server, letting in-flight requests finish (for organizations sharing a
    /// server: once this is the last handle).
    pub async fn shutdown(self) {
        if let Ok(server) = Arc::try_unwrap(self.server) {
            server.shutdown().await;
        }
    }
}
