//! The plan: which kinds the mapping version in force asks for, with the selector options of
//! their resources ([`KindPlan`]); the plan of the version in force as the webhook receiver
//! reads it for each event ([`KindPlans`]); and where GitOps specs are read from
//! ([`GitopsPlan`]). The bottom layer of ingest: the kinds, the crawler, live events and push
//! handling read it, and it names none of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::kind::Kind;
use crate::selector::{self, GitopsSelector, Selector, SelectorError};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{GITOPS_KIND, MappingVersionId};
use adoport_shared::port_app_config::PortAppConfig;

/// One kind to crawl and the selector options its resources give (kind-specific fields such
/// as `defaultTeam`, `includedFiles`; `query` is transform's business).
#[derive(Debug, Clone, PartialEq)]
pub struct KindPlan {
    pub kind: String,
    pub selectors: Vec<Map<String, Value>>,
    /// In an incremental run: read only what changed since this time (the kind's cursor); a
    /// full resync reads everything (`None`).
    pub since: Option<DateTime<Utc>>,
}

impl KindPlan {
    /// The kind, when this version knows it.
    pub fn known(&self) -> Option<Kind> {
        Kind::parse(&self.kind)
    }

    /// The kinds a mapping asks for, in mapping order, with their resources' selector options.
    pub fn for_mapping(mapping: &PortAppConfig) -> Vec<KindPlan> {
        mapping
            .kinds()
            .into_iter()
            .map(|kind| KindPlan {
                kind: kind.to_string(),
                selectors: mapping
                    .resources_of_kind(kind)
                    .map(|(_, resource)| resource.selector.options.clone())
                    .collect(),
                since: None,
            })
            .chain(GitopsPlan::kind_plan(mapping))
            .collect()
    }

    /// Each resource's selector, read as the model `T`, in mapping order; the first resource
    /// whose selector the model refuses is the error.
    pub fn selectors<T: Selector>(&self) -> Result<Vec<T>, SelectorError> {
        (self.selectors.iter().enumerate())
            .map(|(index, options)| selector::read(&self.kind, index, options))
            .collect()
    }
}

#[cfg(test)]
impl KindPlan {
    /// A plan of `kind` whose resources' selectors are `selectors` (objects).
    pub(crate) fn of(kind: &str, selectors: &[Value]) -> KindPlan {
        KindPlan {
            kind: kind.into(),
            selectors: selectors
                .iter()
                .map(|s| s.as_object().cloned().unwrap_or_default())
                .collect(),
            since: None,
        }
    }
}

/// The kinds of the mapping version in force, as the webhook receiver reads them for each
/// event: following the process's mapping versions (re-planned once per new version), or fixed
/// (tests and tools). Cheap to clone.
#[derive(Clone)]
pub struct KindPlans {
    versions: Option<MappingVersions>,
    /// The plan of the version it was last asked for.
    planned: Arc<std::sync::Mutex<Planned>>,
}

/// A version's plan (`None`: a fixed plan).
type Planned = (Option<MappingVersionId>, Arc<Vec<KindPlan>>);

impl KindPlans {
    /// Always these kinds.
    pub fn fixed(plans: Vec<KindPlan>) -> Self {
        Self {
            versions: None,
            planned: Arc::new(std::sync::Mutex::new((None, Arc::new(plans)))),
        }
    }

    /// The kinds of whichever version is in force.
    pub fn following(versions: MappingVersions) -> Self {
        Self {
            versions: Some(versions),
            planned: Arc::new(std::sync::Mutex::new((None, Arc::new(Vec::new())))),
        }
    }

    /// The kinds to handle now, in mapping order.
    pub fn current(&self) -> Arc<Vec<KindPlan>> {
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(versions) = &self.versions {
            let version = versions.current();
            if planned.0.as_ref() != Some(&version.id) {
                *planned = (
                    Some(version.id.clone()),
                    Arc::new(KindPlan::for_mapping(&version.config)),
                );
            }
        }
        planned.1.clone()
    }
}

/// Where the specs are and which branch they are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsPlan {
    pub spec_paths: Vec<String>,
    pub use_default_branch: bool,
    /// Short name, e.g. `main`.
    pub branch: String,
}

impl GitopsPlan {
    /// The crawl plan entry of GitOps for a mapping (none when `specPath` is an empty list).
    pub fn kind_plan(config: &PortAppConfig) -> Option<KindPlan> {
        let paths: Vec<&str> = config.spec_path.paths();
        if paths.is_empty() {
            return None;
        }
        let mut options = Map::new();
        options.insert("specPath".into(), json!(paths));
        options.insert(
            "useDefaultBranch".into(),
            json!(config.use_default_branch.unwrap_or(false)),
        );
        options.insert(
            "branch".into(),
            json!(config.branch.clone().unwrap_or_else(|| "main".into())),
        );
        Some(KindPlan {
            kind: GITOPS_KIND.to_string(),
            selectors: vec![options],
            since: None,
        })
    }

    /// The plan's GitOps entry, if any.
    pub fn of(plan: &[KindPlan]) -> Option<GitopsPlan> {
        let kind = plan.iter().find(|k| k.kind == GITOPS_KIND)?;
        // Written by `kind_plan` from the typed mapping: it always reads.
        let options: GitopsSelector = kind.selectors().ok()?.into_iter().next()?;
        Some(GitopsPlan {
            spec_paths: options.spec_path.0,
            use_default_branch: options.use_default_branch.0,
            branch: options
                .branch
                .map_or_else(|| "main".to_string(), |b| b.0)
                .trim_start_matches("refs/heads/")
                .to_string(),
        })
    }

    /// `refs/heads/…` of the branch tracked in `repository`.
    pub fn tracked_ref(&self, repository: &Value) -> String {
        if self.use_default_branch
            && let Some(branch) = repository.get("defaultBranch").and_then(Value::as_str)
        {
            return branch.to_string();
        }
        format!("refs/heads/{}", self.branch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_receivers_plan_follows_the_mapping_version_in_force() {
        // No GitOps specs: only the kinds named.
        let mapping = |kinds: &[&str]| {
            let mut mapping = adoport_shared::port_app_config::minimal_json(kinds);
            mapping["specPath"] = json!([]);
            mapping
        };
        let config = PortAppConfig::from_json_value(mapping(&["project"])).expect("mapping");
        let versions = MappingVersions::new(config);
        let plans = KindPlans::following(versions.clone());
        let kinds = |plans: &KindPlans| -> Vec<String> {
            plans.current().iter().map(|k| k.kind.clone()).collect()
        };
        assert_eq!(kinds(&plans), ["project"]);
        versions.offer(mapping(&["project", "branch"]), |_| Ok(()));
        assert_eq!(kinds(&plans), ["project", "branch"]);
        assert_eq!(kinds(&KindPlans::fixed(Vec::new())), Vec::<String>::new());
    }
}
