//! The subscription manager: makes sure Azure DevOps has a service-hook subscription for every
//! event type the webhook receiver handles, pointing at this deployment's webhook URL.
//!
//! It owns the desired set (event types × projects, or org-wide), the matching rule that keeps it
//! from creating duplicates (same publisher, event type, target URL and project; other
//! `publisherInputs` that Azure DevOps adds, such as `tfsSubscriptionId`, are ignored), and the
//! repair of subscriptions Azure DevOps disabled (they are replaced with an enabled copy).
//!
//! It never deletes a subscription it did not find disabled, and a failure is logged rather than
//! fatal: live events are an addition to resyncs. If listing the existing subscriptions fails it
//! creates nothing (creating blind is how duplicate storms start).

use std::sync::Mutex;

use futures_util::{StreamExt, stream};
use serde_json::{Map, Value, json};

use crate::ado::{AdoClient, AdoError};
use crate::webhook::WEBHOOK_PATH;
use adoport_shared::config::{EventListenerType, OceanSettings, Secret};

/// The publisher of every event type below (Azure DevOps' own `tfs` publisher).
pub const PUBLISHER: &str = "tfs";

/// The event types the webhook receiver maps to kinds, in subscription order.
pub const EVENT_TYPES: &[&str] = &[
    "git.push",
    "git.repo.created",
    "git.repo.renamed",
    "git.repo.deleted",
    "git.pullrequest.created",
    "git.pullrequest.updated",
    "git.pullrequest.merged",
    "workitem.created",
    "workitem.updated",
    "workitem.deleted",
    "workitem.restored",
    "workitem.commented",
];

/// Subscription requests in flight at once.
const CONCURRENT_REQUESTS: usize = 5;

/// What the manager sets up: where events go, how they authenticate, and the scope.
#[derive(Debug, Clone)]
pub struct SubscriptionPlan {
    /// `{base}/integration/webhook`.
    pub target_url: String,
    /// `(webhookAuthUsername, webhookSecret)` when a secret is set.
    pub basic_auth: Option<(String, Secret)>,
    /// One subscription per project and event type (`isProjectsLimited`, the default), else
    /// one org-wide subscription per event type.
    pub per_project: bool,
}

impl SubscriptionPlan {
    /// The plan the settings ask for: `None` in ONCE mode or when neither `OCEAN__BASE_URL` nor
    /// `appHost` is set (then there is no URL Azure DevOps could reach).
    pub fn from_settings(ocean: &OceanSettings) -> Option<Self> {
        if ocean.event_listener.kind == EventListenerType::Once {
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
            target_url: format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/')),
            basic_auth,
            per_project: config.is_projects_limited,
        })
    }

    /// The body of a subscription for `event_type` (in `project_id`, when per project).
    pub fn body(&self, event_type: &str, project_id: Option<&str>) -> Value {
        let mut consumer = Map::new();
        consumer.insert("url".into(), json!(self.target_url));
        if let Some((username, secret)) = &self.basic_auth {
            consumer.insert("basicAuthUsername".into(), json!(username));
            consumer.insert("basicAuthPassword".into(), json!(secret.expose()));
        }
        let publisher_inputs = match project_id {
            Some(id) => json!({ "projectId": id }),
            None => json!({}),
        };
        json!({
            "publisherId": PUBLISHER,
            "eventType": event_type,
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
    /// Matching, enabled subscriptions left as they were.
    pub kept: usize,
    /// What could not be created or re-enabled (event type, project, error).
    pub failures: Vec<String>,
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// Whether `existing` is the subscription for `event_type` to `url` in `project_id`.
pub fn matches(existing: &Value, event_type: &str, url: &str, project_id: Option<&str>) -> bool {
    text(existing, &["publisherId"]) == Some(PUBLISHER)
        && text(existing, &["eventType"]) == Some(event_type)
        && text(existing, &["consumerInputs", "url"]) == Some(url)
        && text(existing, &["publisherInputs", "projectId"]).filter(|p| !p.is_empty()) == project_id
}

/// One desired subscription and what exists of it.
enum Action {
    Keep,
    Create(Value),
    Reenable(String, Value),
}

/// Lists the existing subscriptions and creates or re-enables what is missing. Errors only when
/// the existing subscriptions or the projects cannot be listed (nothing is created then).
pub async fn ensure(
    client: &AdoClient,
    plan: &SubscriptionPlan,
) -> Result<SubscriptionReport, AdoError> {
    let host = client.organization_url().to_string();
    let projects: Vec<Option<String>> = if plan.per_project {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client.projects_page(token.as_deref()).await?;
            ids.extend(
                page.items
                    .iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str))
                    .map(|id| Some(id.to_string())),
            );
            match page.continuation_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => break,
            }
        }
        ids
    } else {
        vec![None]
    };

    let host = &host;
    let lookups: Vec<_> = EVENT_TYPES
        .iter()
        .map(|event_type| async move {
            let found = client.subscriptions(host, PUBLISHER, event_type).await?;
            Ok::<_, AdoError>((*event_type, found))
        })
        .collect();
    let existing: Vec<(&str, Vec<Value>)> = stream::iter(lookups)
        .buffered(CONCURRENT_REQUESTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let mut actions = Vec::new();
    for (event_type, found) in &existing {
        for project in &projects {
            let project = project.as_deref();
            let matching: Vec<&Value> = found
                .iter()
                .filter(|s| matches(s, event_type, &plan.target_url, project))
                .collect();
            let label = format!("{event_type} ({})", project.unwrap_or("organization"));
            let action = if matching
                .iter()
                .any(|s| text(s, &["status"]) == Some("enabled"))
            {
                Action::Keep
            } else if let Some(id) = matching.first().and_then(|s| text(s, &["id"])) {
                let mut body = plan.body(event_type, project);
                if let Value::Object(map) = &mut body {
                    map.insert("id".into(), json!(id));
                    map.insert("status".into(), json!("enabled"));
                }
                Action::Reenable(id.to_string(), body)
            } else {
                Action::Create(plan.body(event_type, project))
            };
            actions.push((label, action));
        }
    }

    let outcome = Mutex::new(SubscriptionReport::default());
    let outcome_ref = &outcome;
    let requests: Vec<_> = actions
        .into_iter()
        .map(|(label, action)| async move {
            let result = match &action {
                Action::Keep => Ok(()),
                Action::Create(body) => client.create_subscription(host, body).await.map(|_| ()),
                Action::Reenable(id, body) => client
                    .replace_subscription(host, id, body)
                    .await
                    .map(|_| ()),
            };
            let mut report = outcome_ref.lock().unwrap_or_else(|p| p.into_inner());
            match (result, action) {
                (Ok(()), Action::Keep) => report.kept += 1,
                (Ok(()), Action::Create(_)) => report.created += 1,
                (Ok(()), Action::Reenable(..)) => report.reenabled += 1,
                (Err(e), _) => {
                    tracing::warn!(subscription = %label, error = %e, "could not create or re-enable a service-hook subscription; live events of this type will be missing until the next start");
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

/// Runs [`ensure`] once and logs the outcome (never fails: live events are an addition to the
/// resyncs, and a missing subscription must not stop ingest).
pub async fn run(client: AdoClient, plan: SubscriptionPlan) {
    match ensure(&client, &plan).await {
        Ok(report) => tracing::info!(
            url = %plan.target_url,
            per_project = plan.per_project,
            created = report.created,
            reenabled = report.reenabled,
            kept = report.kept,
            failed = report.failures.len(),
            "service-hook subscriptions checked"
        ),
        Err(e) => tracing::warn!(
            url = %plan.target_url,
            error = %e,
            "could not list service-hook subscriptions; none were created (check that the PAT may manage service hooks: \"Service hooks (read, write)\" scope, project or collection administrator)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let body = plan.body("git.push", Some("p1"));
        assert_eq!(body["consumerInputs"]["basicAuthUsername"], "port");
        assert_eq!(body["consumerInputs"]["basicAuthPassword"], "s3");
        assert_eq!(body["publisherInputs"]["projectId"], "p1");
        ocean.event_listener.kind = EventListenerType::Once;
        assert!(SubscriptionPlan::from_settings(&ocean).is_none());
    }

    #[test]
    fn matching_ignores_extra_publisher_inputs_but_not_the_project() {
        let url = "https://h/integration/webhook";
        let org_wide = json!({"publisherId": "tfs", "eventType": "git.push", "consumerInputs": {"url": url}, "publisherInputs": {"tfsSubscriptionId": "x"}});
        assert!(matches(&org_wide, "git.push", url, None));
        assert!(!matches(&org_wide, "git.push", url, Some("p")));
        assert!(!matches(&org_wide, "git.repo.created", url, None));
        let scoped = json!({"publisherId": "tfs", "eventType": "git.push", "consumerInputs": {"url": url}, "publisherInputs": {"projectId": "p"}});
        assert!(matches(&scoped, "git.push", url, Some("p")));
        assert!(!matches(
            &scoped,
            "git.push",
            "https://other/integration/webhook",
            Some("p")
        ));
    }
}
