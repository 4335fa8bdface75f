//! The organizations ingest reads, and which one a webhook event came from.
//!
//! An event names its organization in `resourceContainers.{account,collection,project}.baseUrl`
//! (`https://dev.azure.com/{org}/`) and in the URLs of its resource
//! (`https://dev.azure.com/{org}/_apis/…`, `https://vsrm.dev.azure.com/{org}/…`). With one
//! organization every event is its; with several, an event whose URLs name none of them is
//! refused, naming what it saw. This module owns that matching, and which lane of each
//! organization's request budget a holder uses: the webhook receiver and the actions executor
//! hold [`Organizations::live`], the crawler and background work [`Organizations::crawl`]
//! (see `ado::budget`), so no call site chooses a lane.

use serde_json::{Map, Value};

use crate::ado::AdoClient;
use crate::ado::organization::organization_name;
use crate::ado::service_base;

/// Service hosts whose URLs belong to an organization too (`https://{sub}.dev.azure.com/{org}`).
const SERVICE_HOSTS: &[&str] = &["vsrm", "vssps", "vsaex", "advsec", "almsearch"];
/// How deep into a resource URLs are looked for.
const URL_DEPTH: usize = 3;

/// An event whose URLs name no configured organization.
#[derive(Debug, thiserror::Error)]
#[error(
    "the event does not come from an organization this integration reads (it names {seen}; configured: {configured}); add its URL to OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS or remove the subscription"
)]
pub struct UnknownOrganization {
    pub seen: String,
    pub configured: String,
}

/// One client per configured organization, all in one lane.
#[derive(Clone)]
pub struct Organizations {
    clients: Vec<AdoClient>,
    /// Lower-case URL prefixes per client (same order).
    prefixes: Vec<Vec<String>>,
}

/// Every URL prefix an organization's URLs start with: its URL, the other spelling of an
/// Azure DevOps Services organization, and its service hosts.
fn prefixes(organization_url: &str) -> Vec<String> {
    let url = organization_url.trim_end_matches('/').to_ascii_lowercase();
    let name = organization_name(&url).as_str().to_ascii_lowercase();
    let mut out = vec![url.clone()];
    let scheme = url.split_once("://").map_or("https", |(s, _)| s);
    if url == format!("{scheme}://dev.azure.com/{name}") {
        out.push(format!("{scheme}://{name}.visualstudio.com"));
    } else if url == format!("{scheme}://{name}.visualstudio.com") {
        out.push(format!("{scheme}://dev.azure.com/{name}"));
    }
    for base in out.clone() {
        for sub in SERVICE_HOSTS {
            let service = service_base(&base, sub);
            if !out.contains(&service) {
                out.push(service);
            }
        }
    }
    out
}

fn starts_with_prefix(url: &str, prefix: &str) -> bool {
    url.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

impl Organizations {
    pub fn new(clients: Vec<AdoClient>) -> Self {
        let prefixes = clients
            .iter()
            .map(|c| prefixes(c.organization_url()))
            .collect();
        Self { clients, prefixes }
    }

    /// The same organizations in the live lane: for webhook and action handlers, whose
    /// reads may use the budget the crawl leaves in reserve.
    pub fn live(&self) -> Self {
        self.in_lane(AdoClient::live)
    }

    /// The same organizations in the crawl lane: for the resync crawler and background work.
    pub fn crawl(&self) -> Self {
        self.in_lane(AdoClient::crawl)
    }

    fn in_lane(&self, view: fn(&AdoClient) -> AdoClient) -> Self {
        Self {
            clients: self.clients.iter().map(view).collect(),
            prefixes: self.prefixes.clone(),
        }
    }

    /// Every organization's client, in configuration order.
    pub fn clients(&self) -> &[AdoClient] {
        &self.clients
    }

    /// The client of the organization `url` belongs to.
    pub fn for_url(&self, url: &str) -> Option<&AdoClient> {
        let url = url.trim().to_ascii_lowercase();
        self.prefixes
            .iter()
            .position(|prefixes| prefixes.iter().any(|p| starts_with_prefix(&url, p)))
            .map(|index| &self.clients[index])
    }

    /// The client of the organization an event came from, by its URLs (see
    /// [`event_urls`]); the only organization when there is one.
    pub fn for_event(&self, urls: &[String]) -> Result<&AdoClient, UnknownOrganization> {
        if let [only] = self.clients.as_slice() {
            return Ok(only);
        }
        if let Some(client) = urls.iter().find_map(|url| self.for_url(url)) {
            return Ok(client);
        }
        Err(UnknownOrganization {
            seen: match urls.first() {
                Some(url) => url.clone(),
                None => {
                    "no organization URL (no resourceContainers baseUrl, no resource url)".into()
                }
            },
            configured: self
                .clients
                .iter()
                .map(|c| c.organization_url().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// The URLs of a service-hook envelope that may name its organization, most telling first:
/// `resourceContainers.{account,collection,project}.baseUrl`, then the `url`/`…Url`/`href`
/// strings of its resource (a few levels deep).
pub fn event_urls(envelope: &Map<String, Value>) -> Vec<String> {
    let mut urls = Vec::new();
    if let Some(containers) = envelope.get("resourceContainers") {
        for container in ["account", "collection", "project"] {
            if let Some(url) = containers
                .get(container)
                .and_then(|c| c.get("baseUrl"))
                .and_then(Value::as_str)
            {
                urls.push(url.to_string());
            }
        }
    }
    if let Some(resource) = envelope.get("resource") {
        collect_urls(resource, URL_DEPTH, &mut urls);
    }
    urls
}

fn collect_urls(value: &Value, depth: usize, out: &mut Vec<String>) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, value) in map {
        match value {
            Value::String(text)
                if (key == "url" || key.ends_with("Url") || key == "href")
                    && (text.starts_with("http://") || text.starts_with("https://")) =>
            {
                out.push(text.clone());
            }
            Value::Object(_) if depth > 0 => collect_urls(value, depth - 1, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(url: &str) -> AdoClient {
        let access = adoport_shared::config::AzureDevopsAccess {
            organization_url: url.into(),
            personal_access_token: adoport_shared::config::Secret::new("pat"),
            timeout_secs: 5,
            network: Default::default(),
        };
        AdoClient::new(&access, 1, tokio_util::sync::CancellationToken::new()).expect("client")
    }

    #[test]
    fn urls_find_their_organization_in_every_spelling() {
        let organizations = Organizations::new(vec![
            client("https://dev.azure.com/org-a"),
            client("https://org-b.visualstudio.com"),
            client("http://127.0.0.1:4000/org-c"),
        ]);
        for (url, expected) in [
            (
                "https://dev.azure.com/org-a/",
                Some("https://dev.azure.com/org-a"),
            ),
            (
                "https://DEV.azure.com/Org-A/_apis/git/repositories/1",
                Some("https://dev.azure.com/org-a"),
            ),
            (
                "https://org-a.visualstudio.com/",
                Some("https://dev.azure.com/org-a"),
            ),
            (
                "https://vsrm.dev.azure.com/org-a/p/_apis/release/releases/1",
                Some("https://dev.azure.com/org-a"),
            ),
            (
                "https://dev.azure.com/org-b/",
                Some("https://org-b.visualstudio.com"),
            ),
            (
                "http://127.0.0.1:4000/org-c/_apis/projects",
                Some("http://127.0.0.1:4000/org-c"),
            ),
            // A longer name that starts like a configured one is another organization.
            ("https://dev.azure.com/org-ab/", None),
            ("http://127.0.0.1:4000/org-d", None),
        ] {
            let found = organizations.for_url(url).map(AdoClient::organization_url);
            assert_eq!(found, expected, "{url}");
        }
    }

    #[test]
    fn events_name_their_organization_by_containers_then_resource_urls() {
        let envelope = json!({
            "resourceContainers": {"project": {"id": "p", "baseUrl": "https://dev.azure.com/org-b/"}},
            "resource": {"url": "https://dev.azure.com/org-a/_apis/x", "repository": {"remoteUrl": "https://dev.azure.com/org-a/p/_git/r"}, "id": 1}
        });
        let urls = event_urls(envelope.as_object().expect("object"));
        assert_eq!(urls[0], "https://dev.azure.com/org-b/");
        assert!(urls.contains(&"https://dev.azure.com/org-a/p/_git/r".to_string()));
        let two = Organizations::new(vec![
            client("https://dev.azure.com/org-a"),
            client("https://dev.azure.com/org-b"),
        ]);
        assert_eq!(
            two.for_event(&urls).expect("known").organization_url(),
            "https://dev.azure.com/org-b"
        );
        let err = two
            .for_event(&["https://dev.azure.com/org-z/".to_string()])
            .err()
            .expect("unknown");
        assert!(
            err.to_string().contains("https://dev.azure.com/org-z/"),
            "{err}"
        );
        assert!(two.for_event(&[]).is_err());
        // One organization: every event is its own.
        let one = Organizations::new(vec![client("https://dev.azure.com/org-a")]);
        assert!(
            one.for_event(&["https://dev.azure.com/org-z/".to_string()])
                .is_ok()
        );
    }

    #[test]
    fn views_keep_the_organizations_and_change_only_the_lane() {
        use crate::ado::Lane;
        let organizations = Organizations::new(vec![
            client("https://dev.azure.com/org-a"),
            client("https://dev.azure.com/org-b"),
        ]);
        let live = organizations.live();
        assert!(live.clients().iter().all(|c| c.lane() == Lane::Live));
        assert!(
            live.crawl()
                .clients()
                .iter()
                .all(|c| c.lane() == Lane::Crawl)
        );
        let urls = ["https://dev.azure.com/org-b/".to_string()];
        let chosen = live.for_event(&urls).expect("known");
        assert_eq!(chosen.organization_url(), "https://dev.azure.com/org-b");
        assert_eq!(chosen.lane(), Lane::Live);
    }
}
