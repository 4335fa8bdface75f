//! The subscription manager: makes sure Azure DevOps has a service-hook subscription for every
//! event type the mapping needs, pointing at this deployment's webhook URL, on the host that
//! publishes it, with the current credentials — at start-up and then periodically.
//!
//! It owns:
//! - which event types are needed, from the event table ([`crate::events::EVENTS`]: the Python
//!   integration's 23 plus `git.repo.renamed`, `git.repo.deleted` and `git.pullrequest.merged`):
//!   those whose kinds the mapping uses, plus `git.push` (files, folders, branches, GitOps
//!   `port.yml`, repository refresh) and `ms.vss-pipelines.run-state-changed-event` (completion
//!   of the `trigger_pipeline` action) whatever the mapping;
//! - the host per publisher: `rm` on the release management host (`vsrm`), `advsec` on the
//!   Advanced Security host with `api-version=7.2-preview.1`, the others on the organization
//!   URL. Existing subscriptions are listed on the host they are created on (listing `rm` on the
//!   organization host finds nothing, which made the Python integration create duplicates);
//! - the matching rule: same publisher, event type, webhook URL (query ignored) and project;
//!   other `publisherInputs` that Azure DevOps adds, such as `tfsSubscriptionId` on org-level
//!   subscriptions, are ignored;
//! - credential changes: Azure DevOps answers `basicAuthPassword` masked (`********`), so the
//!   password cannot be compared. The URL we subscribe carries a fingerprint of the basic-auth
//!   username and password instead (`?auth=` + 16 hex digits of SHA-256; the receiver ignores
//!   the query). A matching subscription whose URL carries another fingerprint (or none: e.g.
//!   one created by the Python integration) is replaced with the current credentials, and so is
//!   a disabled one (re-enabled).
//!
//! It never deletes a subscription, and a failure is logged rather than fatal: live events are an
//! addition to resyncs. If listing the existing subscriptions fails it creates nothing (creating
//! blind is how duplicate storms start).

use std::sync::Mutex;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::ado::{AdoClient, AdoError, HookHost, SubscriptionId};
use crate::plan::KindPlan;
use crate::webhook::WEBHOOK_PATH;
use adoport_shared::config::{OceanSettings, Secret};
use adoport_shared::mapping_versions::MappingVersions;

/// One event type the manager subscribes: a row of the event table.
pub use crate::events::EventType as HookEvent;

/// Every event type the manager may subscribe, in subscription order (the event table's rows
/// that are not [`Subscribe::Never`](crate::events::Subscribe::Never)).
pub fn hook_events() -> Vec<HookEvent> {
    crate::events::subscribable().copied().collect()
}

/// Subscription requests in flight at once.
const CONCURRENT_REQUESTS: usize = 5;

/// What the manager sets up: where events go, how they authenticate, the scope and the events.
#[derive(Debug, Clone)]
pub struct SubscriptionPlan {
    /// `{base}{OCEAN__PATH_PREFIX}/integration/webhook`.
    pub target_url: String,
    /// `(webhookAuthUsername, webhookSecret)` when a secret is set.
    pub basic_auth: Option<(String, Secret)>,
    /// One subscription per project and event type (`isProjectsLimited`, the default), else
    /// one org-wide subscription per event type.
    pub per_project: bool,
    /// The event types to subscribe.
    pub events: Vec<HookEvent>,
}

impl SubscriptionPlan {
    /// The plan the settings ask for, every event type: `None` in ONCE mode or when neither
    /// `OCEAN__BASE_URL` nor `appHost` is set (then there is no URL Azure DevOps could reach).
    pub fn from_settings(ocean: &OceanSettings) -> Option<Self> {
        if !ocean.event_listener.kind.subscribes() {
            return None;
        }
        let config = &ocean.integration.config;
        let base = ocean
            .base_url
            .as_deref()
            .or(config.app_host.as_deref())
            .map(str::trim)
            .filter(|b| !b.is_empty())?;
        let basic_auth = config
            .webhook_secret
            .clone()
            .filter(|s| !s.expose().is_empty())
            .map(|secret| (config.webhook_auth_username.clone(), secret));
        Some(Self {
            target_url: format!(
                "{}{}{WEBHOOK_PATH}",
                base.trim_end_matches('/'),
                ocean.route_prefix()
            ),
            basic_auth,
            per_project: config.is_projects_limited,
            events: hook_events(),
        })
    }

    /// Keeps the event types the mapping's kinds need, and those needed whatever the mapping.
    pub fn for_kinds(mut self, kinds: &[KindPlan]) -> Self {
        self.events
            .retain(|e| e.subscribed_for(|kind| kinds.iter().any(|p| p.kind == kind)));
        self
    }

    /// The URL subscriptions post to: the target URL, with the credentials' fingerprint.
    pub fn subscribed_url(&self) -> String {
        match &self.basic_auth {
            Some((username, secret)) => {
                let digest = Sha256::new()
                    .chain_update(b"adoport service hook\n")
                    .chain_update(username.as_bytes())
                    .chain_update(b"\n")
                    .chain_update(secret.expose().as_bytes())
                    .finalize();
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("{}?auth={hex}", self.target_url)
            }
            None => self.target_url.clone(),
        }
    }

    /// The body of a subscription for `event` (in `project_id`, when per project).
    pub fn body(&self, event: &HookEvent, project_id: Option<&str>) -> Value {
        let mut consumer = Map::new();
        consumer.insert("url".into(), json!(self.subscribed_url()));
        if let Some((username, secret)) = &self.basic_auth {
            consumer.insert("basicAuthUsername".into(), json!(username));
            consumer.insert("basicAuthPassword".into(), json!(secret.expose()));
        }
        let publisher_inputs = match project_id {
            Some(id) => json!({ "projectId": id }),
            None => json!({}),
        };
        json!({
            "publisherId": event.publisher,
            "eventType": event.event_type,
            "resourceVersion": "1.0",
            "consumerId": "webHooks",
            "consumerActionId": "httpRequest",
            "publisherInputs": publisher_inputs,
            "consumerInputs": Value::Object(consumer),
        })
    }
}

/// What one run of the manager did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionReport {
    /// Subscriptions created.
    pub created: usize,
    /// Disabled subscriptions replaced with an enabled copy.
    pub reenabled: usize,
    /// Enabled subscriptions replaced because the credentials changed.
    pub replaced: usize,
    /// Matching, enabled, current subscriptions left as they were.
    pub kept: usize,
    /// What could not be created or replaced (event type, project, error).
    pub failures: Vec<String>,
}

impl SubscriptionReport {
    fn changed(&self) -> bool {
        self.created + self.reenabled + self.replaced > 0 || !self.failures.is_empty()
    }
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// Whether `existing` is the subscription for `event` to `url` (its query ignored) in
/// `project_id`.
pub fn matches(existing: &Value, event: &HookEvent, url: &str, project_id: Option<&str>) -> bool {
    let without_query = |u: &str| u.split_once('?').map_or(u, |(base, _)| base).to_string();
    text(existing, &["publisherId"]) == Some(event.publisher)
        && text(existing, &["eventType"]) == Some(event.event_type)
        && text(existing, &["consumerInputs", "url"]).map(without_query) == Some(without_query(url))
        && text(existing, &["publisherInputs", "projectId"]).filter(|p| !p.is_empty()) == project_id
}

/// One desired subscription and what exists of it.
enum Action {
    Keep,
    Create(Value),
    Reenable(SubscriptionId, Value),
    Replace(SubscriptionId, Value),
}

async fn project_ids(client: &AdoClient) -> Result<Vec<Option<String>>, AdoError> {
    Ok(client
        .projects()
        .await?
        .iter()
        .filter_map(|p| p.get("id").and_then(Value::as_str))
        .map(|id| Some(id.to_string()))
        .collect())
}

/// Lists the existing subscriptions and creates, re-enables or replaces what is missing or
/// stale. Errors only when the existing subscriptions or the projects cannot be listed
/// (nothing is created then).
pub async fn ensure(
    client: &AdoClient,
    plan: &SubscriptionPlan,
) -> Result<SubscriptionReport, AdoError> {
    let organization = client.organization_url().to_string();
    let projects: Vec<Option<String>> = if plan.per_project {
        project_ids(client).await?
    } else {
        vec![None]
    };

    let organization = &organization;
    let lookups: Vec<_> = plan
        .events
        .iter()
        .map(|event| async move {
            let host = HookHost::of(organization, event.publisher);
            let found = client
                .hook_subscriptions(&host, event.publisher, event.event_type)
                .await?;
            Ok::<_, AdoError>((event, found))
        })
        .collect();
    let existing: Vec<(&HookEvent, Vec<Value>)> = stream::iter(lookups)
        .buffered(CONCURRENT_REQUESTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let url = plan.subscribed_url();
    let mut actions = Vec::new();
    for (event, found) in &existing {
        for project in &projects {
            let project = project.as_deref();
            let matching: Vec<&Value> = found
                .iter()
                .filter(|s| matches(s, event, &plan.target_url, project))
                .collect();
            let enabled = |s: &&Value| text(s, &["status"]) == Some("enabled");
            let current = |s: &&Value| text(s, &["consumerInputs", "url"]) == Some(url.as_str());
            let label = format!(
                "{} ({})",
                event.event_type,
                project.unwrap_or("organization")
            );
            let with_id = |id: &str| {
                let mut body = plan.body(event, project);
                if let Value::Object(map) = &mut body {
                    map.insert("id".into(), json!(id));
                    map.insert("status".into(), json!("enabled"));
                }
                body
            };
            let action = if matching.iter().any(|s| enabled(s) && current(s)) {
                Action::Keep
            } else if let Some(stale) = matching.iter().find(|s| enabled(s))
                && let Some(id) = text(stale, &["id"])
            {
                Action::Replace(SubscriptionId::new(id), with_id(id))
            } else if let Some(id) = matching.first().and_then(|s| text(s, &["id"])) {
                Action::Reenable(SubscriptionId::new(id), with_id(id))
            } else {
                Action::Create(plan.body(event, project))
            };
            actions.push((label, event.publisher, action));
        }
    }

    let outcome = Mutex::new(SubscriptionReport::default());
    let outcome_ref = &outcome;
    let requests: Vec<_> = actions
        .into_iter()
        .map(|(label, publisher, action)| async move {
            let host = HookHost::of(organization, publisher);
            let result = match &action {
                Action::Keep => Ok(()),
                Action::Create(body) => client
                    .create_hook_subscription(&host, body)
                    .await
                    .map(|_| ()),
                Action::Reenable(id, body) | Action::Replace(id, body) => client
                    .replace_hook_subscription(&host, id, body)
                    .await
                    .map(|_| ()),
            };
            let mut report = outcome_ref.lock().unwrap_or_else(|p| p.into_inner());
            match (result, action) {
                (Ok(()), Action::Keep) => report.kept += 1,
                (Ok(()), Action::Create(_)) => report.created += 1,
                (Ok(()), Action::Reenable(..)) => report.reenabled += 1,
                (Ok(()), Action::Replace(..)) => report.replaced += 1,
                (Err(e), _) => {
                    tracing::warn!(subscription = %label, host = %host.url(), error = %e, "could not create or replace a service-hook subscription; live events of this type will be missing until the next check");
                    report.failures.push(format!("{label}: {e}"));
                }
            }
        })
        .collect();
    stream::iter(requests)
        .buffer_unordered(CONCURRENT_REQUESTS)
        .collect::<Vec<()>>()
        .await;
    Ok(outcome.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Runs [`ensure`] once, then every `every` (if set) and whenever a new mapping version comes
/// into force, until `shutdown`: each check subscribes the event types of the mapping's kinds
/// (a kind added to the mapping gets its subscriptions without a restart), re-enables
/// disabled subscriptions, recreates deleted ones and subscribes projects created since.
/// Never fails: live events are an addition to the resyncs, and a missing subscription must
/// not stop ingest. Runs on the ingest leader only (`crate::leader`), for as long as its term.
pub async fn run(
    client: AdoClient,
    all_events: SubscriptionPlan,
    mapping: MappingVersions,
    every: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut versions = mapping.subscribe();
    let mut first = true;
    loop {
        let version = versions.borrow_and_update().clone();
        let plan = all_events
            .clone()
            .for_kinds(&KindPlan::for_mapping(&version.config));
        // Cancellable mid-way (a leader that steps down stops at once): requests not sent
        // are not sent, and the next leader lists before it creates.
        let checked = tokio::select! {
            _ = shutdown.cancelled() => return,
            checked = ensure(&client, &plan) => checked,
        };
        match checked {
            Ok(report) if first || report.changed() => tracing::info!(
                url = %plan.target_url,
                per_project = plan.per_project,
                event_types = plan.events.len(),
                created = report.created,
                reenabled = report.reenabled,
                replaced = report.replaced,
                kept = report.kept,
                failed = report.failures.len(),
                "service-hook subscriptions checked"
            ),
            Ok(report) => {
                tracing::debug!(kept = report.kept, "service-hook subscriptions unchanged")
            }
            Err(e) => tracing::warn!(
                url = %plan.target_url,
                error = %e,
                "could not list service-hook subscriptions; none were created (check that the PAT may manage service hooks: \"Service hooks (read, write)\" scope, project or collection administrator)"
            ),
        }
        first = false;
        let next_check = async {
            match every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = next_check => {}
            changed = versions.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::info!(mapping_version = versions.borrow().number, "the mapping changed; checking the service-hook subscriptions its kinds need");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::config::EventListenerType;

    #[test]
    fn the_plan_needs_a_base_url_and_a_live_mode() {
        let mut ocean = OceanSettings::default();
        assert!(SubscriptionPlan::from_settings(&ocean).is_none());
        ocean.integration.config.app_host = Some("https://hooks.example/".into());
        let plan = SubscriptionPlan::from_settings(&ocean).expect("appHost is enough");
        assert_eq!(plan.target_url, "https://hooks.example/integration/webhook");
        assert!(plan.per_project && plan.basic_auth.is_none());
        ocean.base_url = Some("https://base.example".into());
        ocean.integration.config.webhook_secret = Some(Secret::new("s3"));
        let plan = SubscriptionPlan::from_settings(&ocean).expect("base URL");
        assert_eq!(plan.target_url, "https://base.example/integration/webhook");
        let body = plan.body(&hook_events()[0], Some("p1"));
        assert_eq!(body["consumerInputs"]["basicAuthUsername"], "port");
        assert_eq!(body["consumerInputs"]["basicAuthPassword"], "s3");
        assert_eq!(body["publisherInputs"]["projectId"], "p1");
        // Ocean's OCEAN__PATH_PREFIX mounts the webhook under it.
        ocean.path_prefix = Some("ado/".into());
        let plan = SubscriptionPlan::from_settings(&ocean).expect("base URL");
        assert_eq!(
            plan.target_url,
            "https://base.example/ado/integration/webhook"
        );
        for kind in [EventListenerType::Once, EventListenerType::ActionsOnly] {
            ocean.event_listener.kind = kind;
            assert!(
                SubscriptionPlan::from_settings(&ocean).is_none(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn matching_ignores_extra_publisher_inputs_and_the_query_but_not_the_project() {
        let url = "https://h/integration/webhook";
        let push = hook_events()[0];
        let created = hook_events()[1];
        let org_wide = json!({"publisherId": "tfs", "eventType": "git.push", "consumerInputs": {"url": url}, "publisherInputs": {"tfsSubscriptionId": "x"}});
        assert!(matches(&org_wide, &push, url, None));
        assert!(!matches(&org_wide, &push, url, Some("p")));
        assert!(!matches(&org_wide, &created, url, None));
        let scoped = json!({"publisherId": "tfs", "eventType": "git.push", "consumerInputs": {"url": url}, "publisherInputs": {"projectId": "p"}});
        assert!(matches(&scoped, &push, url, Some("p")));
        assert!(matches(
            &scoped,
            &push,
            &format!("{url}?auth=0123"),
            Some("p")
        ));
        assert!(!matches(
            &scoped,
            &push,
            "https://other/integration/webhook",
            Some("p")
        ));
    }

    #[test]
    fn the_mapping_decides_which_event_types_are_subscribed() {
        assert_eq!(hook_events().len(), 26);
        let ocean = OceanSettings {
            base_url: Some("https://base.example".into()),
            ..Default::default()
        };
        let plan = |kinds: &[&str]| {
            let plans: Vec<KindPlan> = kinds
                .iter()
                .map(|k| KindPlan {
                    kind: k.to_string(),
                    selectors: vec![],
                    since: None,
                    resources: vec![],
                    whole_kind: true,
                    positions: vec![],
                })
                .collect();
            SubscriptionPlan::from_settings(&ocean)
                .expect("plan")
                .for_kinds(&plans)
                .events
                .iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            plan(&[]),
            ["git.push", "ms.vss-pipelines.run-state-changed-event"]
        );
        let with_builds = plan(&["test-run", "release-definition"]);
        assert!(with_builds.contains(&"build.complete"));
        assert!(with_builds.contains(&"ms.vss-release.release-created-event"));
        assert!(!with_builds.contains(&"ms.vss-release.deployment-started-event"));
        assert!(!with_builds.contains(&"workitem.updated"));
    }

    #[test]
    fn the_url_fingerprints_the_credentials() {
        let mut ocean = OceanSettings {
            base_url: Some("https://base.example".into()),
            ..Default::default()
        };
        let bare = SubscriptionPlan::from_settings(&ocean).expect("plan");
        assert_eq!(
            bare.subscribed_url(),
            "https://base.example/integration/webhook"
        );
        ocean.integration.config.webhook_secret = Some(Secret::new("one"));
        let one = SubscriptionPlan::from_settings(&ocean)
            .expect("plan")
            .subscribed_url();
        ocean.integration.config.webhook_secret = Some(Secret::new("two"));
        let two = SubscriptionPlan::from_settings(&ocean)
            .expect("plan")
            .subscribed_url();
        assert!(one.starts_with("https://base.example/integration/webhook?auth="));
        assert_eq!(one.len(), two.len());
        assert_ne!(one, two);
        assert!(!one.contains("one"));
    }
}
