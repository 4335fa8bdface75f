//! Raw data examples (`OCEAN__SEND_RAW_DATA_EXAMPLES`, on by default as in Ocean): the first
//! few raw items of each kind in each resync, with secrets masked, so that Port's mapping
//! editor can show users what their jq runs on.
//!
//! This module owns the choice (which items, how many, once per kind and resync) and the
//! masking. The items travel to publish as [`ResyncControl::Examples`] on the resync progress
//! queue (publish owns every write to Port); nothing unmasked ever reaches the queue.
//!
//! Masking, applied to a copy of each item:
//! - the value of every field whose name says it holds a secret (`password`, `token`,
//!   `secret`, `apiKey`, `privateKey`, `credential`, `authorization`, `connectionString`, …);
//! - the `value` of a variable object marked `isSecret: true` (release and pipeline variables);
//! - every occurrence of a configured secret (the PAT, the webhook secret, the service
//!   principal's secret) in any string.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use adoport_shared::messages::{ResyncControl, ResyncId, SCHEMA_VERSION};

/// Items sent per kind and resync (Port's limit for examples).
pub const EXAMPLES_PER_KIND: usize = 5;
/// What a masked value becomes.
pub const MASK: &str = "********";

/// Field names (lower case, without `_`/`-`) whose values are secrets.
const SECRET_FIELD_MARKERS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "connectionstring",
    "accesskey",
];

/// Picks the examples of a resync: the first page of each kind, at most
/// [`EXAMPLES_PER_KIND`] items, masked. Cheap to clone; every organization's crawler of one
/// process shares it, so a kind is sampled once per resync.
#[derive(Debug, Clone, Default)]
pub struct ExampleSampler {
    inner: Arc<SamplerInner>,
}

#[derive(Debug, Default)]
struct SamplerInner {
    secrets: Vec<String>,
    taken: Mutex<(Option<ResyncId>, HashSet<String>)>,
}

impl ExampleSampler {
    /// A sampler that masks, besides secret-named fields, every occurrence of `secrets`.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Self {
            inner: Arc::new(SamplerInner {
                secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
                taken: Mutex::new((None, HashSet::new())),
            }),
        }
    }

    /// The examples message for this page, when it is the first page of `kind` in the
    /// resync; `None` otherwise.
    pub fn sample(&self, resync_id: ResyncId, kind: &str, page: &[Value]) -> Option<ResyncControl> {
        if page.is_empty() {
            return None;
        }
        {
            let mut taken = self.inner.taken.lock().unwrap_or_else(|p| p.into_inner());
            if taken.0 != Some(resync_id) {
                *taken = (Some(resync_id), HashSet::new());
            }
            if !taken.1.insert(kind.to_string()) {
                return None;
            }
        }
        let items = page
            .iter()
            .take(EXAMPLES_PER_KIND)
            .map(|item| {
                let mut item = item.clone();
                mask(&mut item, &self.inner.secrets);
                item
            })
            .collect();
        Some(ResyncControl::Examples {
            v: SCHEMA_VERSION,
            resync_id,
            kind: kind.to_string(),
            items,
        })
    }
}

/// Whether a field of this name holds a secret.
fn is_secret_field(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_FIELD_MARKERS
        .iter()
        .any(|marker| normalized.contains(marker))
}

/// Masks secrets in `value` in place (see the module docs for what counts as one).
pub fn mask(value: &mut Value, secrets: &[String]) {
    match value {
        Value::Object(map) => {
            let secret_variable = map.get("isSecret").and_then(Value::as_bool) == Some(true);
            for (name, field) in map.iter_mut() {
                let masked_here =
                    is_secret_field(name) || (secret_variable && name.as_str() == "value");
                match field {
                    Value::Null | Value::Object(_) => mask(field, secrets),
                    Value::Array(values) if masked_here => {
                        for value in values.iter_mut() {
                            if value.is_object() || value.is_array() {
                                mask(value, secrets);
                            } else if !value.is_null() {
                                *value = Value::String(MASK.to_string());
                            }
                        }
                    }
                    _ if masked_here => *field = Value::String(MASK.to_string()),
                    _ => mask(field, secrets),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, secrets)),
        Value::String(text) => {
            for secret in secrets {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), MASK);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(page: &ResyncControl) -> &[Value] {
        match page {
            ResyncControl::Examples { items, .. } => items,
            other => panic!("not examples: {other:?}"),
        }
    }

    #[test]
    fn the_first_page_of_each_kind_is_sampled_once_per_resync() {
        let sampler = ExampleSampler::new(Vec::new());
        let page: Vec<Value> = (0..8).map(|i| json!({"id": i})).collect();
        let first = ResyncId::new();
        let examples = sampler
            .sample(first, "repository", &page)
            .expect("first page");
        assert_eq!(items(&examples).len(), EXAMPLES_PER_KIND);
        assert!(sampler.sample(first, "repository", &page).is_none());
        assert!(sampler.sample(first, "project", &page).is_some());
        assert!(sampler.sample(first, "team", &[]).is_none());
        assert!(sampler.sample(first, "team", &page).is_some());
        // A new resync samples again.
        assert!(
            sampler
                .sample(ResyncId::new(), "repository", &page)
                .is_some()
        );
    }

    #[test]
    fn secret_fields_variables_and_configured_secrets_are_masked() {
        let sampler = ExampleSampler::new(vec!["pat-12345".to_string(), "x".to_string()]);
        let page = vec![json!({
            "id": 1,
            "name": "x marks the spot",
            "consumerInputs": {"basicAuthPassword": "hunter22", "url": "https://h/?t=pat-12345"},
            "variables": {
                "deployKey": {"value": "s3cr3t", "isSecret": true},
                "region": {"value": "eu", "isSecret": false}
            },
            "access_token": "abc",
            "tokenCount": 3,
            "secrets": ["a", "b"],
            "_links": {"web": {"href": "https://dev.azure.com/acme"}}
        })];
        let examples = sampler
            .sample(ResyncId::new(), "release-definition", &page)
            .expect("sampled");
        let item = &items(&examples)[0];
        assert_eq!(item["consumerInputs"]["basicAuthPassword"], MASK);
        assert_eq!(item["consumerInputs"]["url"], "https://h/?t=********");
        assert_eq!(item["variables"]["deployKey"]["value"], MASK);
        assert_eq!(item["variables"]["region"]["value"], "eu");
        assert_eq!(item["access_token"], MASK);
        // Numbers under a secret-looking name are masked too; short configured secrets are
        // not (they would mask ordinary words).
        assert_eq!(item["tokenCount"], MASK);
        assert_eq!(item["name"], "x marks the spot");
        assert_eq!(item["secrets"], json!([MASK, MASK]));
        assert_eq!(item["_links"]["web"]["href"], "https://dev.azure.com/acme");
        // The original is untouched.
        assert_eq!(page[0]["access_token"], "abc");
    }
}
