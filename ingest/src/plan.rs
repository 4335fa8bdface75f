//! The plan: which kinds the mapping version in force asks for, one crawl unit per kind and
//! distinct selector, with the mapping resources that share it ([`KindPlan`]); the plan of the version in force as the webhook receiver
//! reads it for each event ([`KindPlans`]); and where GitOps specs are read from
//! ([`GitopsPlan`]). The bottom layer of ingest: the kinds, the crawler, live events and push
//! handling read it, and it names none of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::kind::Kind;
use crate::selector::{self, GitopsSelector, Selector, SelectorError};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{GITOPS_KIND, MappingVersionId, crawl_unit_key};
use adoport_shared::port_app_config::PortAppConfig;

/// One crawl unit: a kind, the selector options it is read with (kind-specific fields such as
/// `defaultTeam`, `includedFiles`, `wiql`; `query` is transform's business) and the mapping
/// resources of the kind whose selector options are exactly these. Each unit is crawled once
/// and its items are mapped by its resources only, as the Python integration runs each
/// resource with its own selector — resources with identical options share one crawl.
#[derive(Debug, Clone, PartialEq)]
pub struct KindPlan {
    pub kind: String,
    /// The unit's selector options (one entry; plans built by hand may unite several).
    pub selectors: Vec<Map<String, Value>>,
    /// In an incremental run: read only what changed since this time (the kind's cursor); a
    /// full resync reads everything (`None`).
    pub since: Option<DateTime<Utc>>,
    /// The mapping resources (indices into the mapping's `resources`) this unit is read for,
    /// in mapping order.
    pub resources: Vec<u32>,
    /// Whether they are every resource of the kind (the kind's only unit): then its raw events
    /// name no resources, and its bookkeeping is keyed by the kind alone, as before units.
    pub whole_kind: bool,
    /// For each entry of `selectors`, the position (from 0) among the kind's resources of the
    /// resource it was read from, so that a refused selector names its resource.
    pub positions: Vec<usize>,
}

impl KindPlan {
    /// The kind, when this version knows it.
    pub fn known(&self) -> Option<Kind> {
        Kind::parse(&self.kind)
    }

    /// The crawl units a mapping asks for: kinds in mapping order, and within a kind one unit
    /// per distinct selector, in the order of its first resource.
    pub fn for_mapping(mapping: &PortAppConfig) -> Vec<KindPlan> {
        let mut plans = Vec::new();
        for kind in mapping.kinds() {
            let mut units: Vec<KindPlan> = Vec::new();
            for (position, (index, resource)) in mapping.resources_of_kind(kind).enumerate() {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let options = &resource.selector.options;
                match units.iter_mut().find(|unit| unit.selectors[0] == *options) {
                    Some(unit) => unit.resources.push(index),
                    None => units.push(KindPlan {
                        kind: kind.to_string(),
                        selectors: vec![options.clone()],
                        since: None,
                        resources: vec![index],
                        whole_kind: false,
                        positions: vec![position],
                    }),
                }
            }
            if let [only] = units.as_mut_slice() {
                only.whole_kind = true;
            }
            plans.extend(units);
        }
        plans.extend(GitopsPlan::kind_plan(mapping));
        plans
    }

    /// The resources its raw events name: `None` when the unit is the whole kind.
    pub fn event_resources(&self) -> Option<Vec<u32>> {
        (!self.whole_kind).then(|| self.resources.clone())
    }

    /// Its name in resync bookkeeping (the kind alone for a whole kind).
    pub fn key(&self) -> String {
        crawl_unit_key(&self.kind, self.event_resources().as_deref())
    }

    /// What a person reads it as: the kind, and the mapping resources when the kind has
    /// several units.
    pub fn describe(&self) -> String {
        adoport_shared::messages::describe_crawl_unit(&self.key())
    }

    /// Each resource's selector, read as the model `T`, in mapping order; the first resource
    /// whose selector the model refuses is the error.
    pub fn selectors<T: Selector>(&self) -> Result<Vec<T>, SelectorError> {
        (self.selectors.iter().enumerate())
            .map(|(index, options)| selector::read(&self.kind, self.position(index), options))
            .collect()
    }

    /// Each selector's options with the position of its resource among the kind's resources.
    pub fn positioned(&self) -> impl Iterator<Item = (usize, &Map<String, Value>)> {
        (self.selectors.iter().enumerate()).map(|(index, options)| (self.position(index), options))
    }

    /// The position among the kind's resources of the resource of `selectors[index]`.
    pub fn position(&self, index: usize) -> usize {
        self.positions.get(index).copied().unwrap_or(index)
    }
}

#[cfg(test)]
impl KindPlan {
    /// A plan of `kind` whose resources' selectors are `selectors` (objects), as if it were
    /// the kind's only unit.
    pub(crate) fn of(kind: &str, selectors: &[Value]) -> KindPlan {
        KindPlan {
            kind: kind.into(),
            selectors: selectors
                .iter()
                .map(|s| s.as_object().cloned().unwrap_or_default())
                .collect(),
            since: None,
            resources: (0..selectors.len() as u32).collect(),
            whole_kind: true,
            positions: (0..selectors.len()).collect(),
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
            resources: Vec::new(),
            whole_kind: true,
            positions: vec![0],
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

    #[test]
    fn resources_of_a_kind_share_a_unit_only_when_their_selectors_are_identical() {
        let mut mapping = adoport_shared::port_app_config::minimal_json(&[
            "work-item",
            "work-item",
            "file",
            "work-item",
            "file",
        ]);
        mapping["specPath"] = json!([]);
        let selectors = [
            json!({"query": "true", "wiql": "[System.State] = 'Active'"}),
            json!({"query": ".id > 3", "wiql": "[System.State] = 'Active'"}),
            json!({"query": "true", "files": {"path": "port.yml"}}),
            json!({"query": "true", "wiql": "[System.State] = 'Closed'"}),
            json!({"query": "true", "files": {"path": "package.json"}}),
        ];
        for (resource, selector) in mapping["resources"]
            .as_array_mut()
            .expect("resources")
            .iter_mut()
            .zip(selectors)
        {
            resource["selector"] = selector;
        }
        let config = PortAppConfig::from_json_value(mapping).expect("mapping");
        let plan = KindPlan::for_mapping(&config);
        let units: Vec<(&str, &[u32], bool, String)> = plan
            .iter()
            .map(|u| {
                (
                    u.kind.as_str(),
                    u.resources.as_slice(),
                    u.whole_kind,
                    u.key(),
                )
            })
            .collect();
        assert_eq!(
            units,
            [
                ("work-item", &[0, 1][..], false, "work-item#0,1".to_string()),
                ("work-item", &[3][..], false, "work-item#3".to_string()),
                ("file", &[2][..], false, "file#2".to_string()),
                ("file", &[4][..], false, "file#4".to_string()),
            ]
        );
        assert_eq!(plan[0].selectors.len(), 1);
        assert_eq!(plan[0].selectors[0]["wiql"], "[System.State] = 'Active'");
        assert!(!plan[0].selectors[0].contains_key("query"));
        assert_eq!(plan[1].describe(), "kind work-item (mapping resource 3)");
        // A refused selector names its resource among the kind's: resource 3 is the third
        // work item (position 2), resource 4 the second file.
        assert_eq!((plan[1].position(0), plan[3].position(0)), (2, 1));
        // One unit for the kind: its events name no resources, its key is the kind.
        let single = KindPlan::for_mapping(
            &PortAppConfig::from_json_value({
                let mut m = adoport_shared::port_app_config::minimal_json(&["project"]);
                m["specPath"] = json!([]);
                m
            })
            .expect("mapping"),
        );
        assert_eq!(single[0].event_resources(), None);
        assert_eq!(single[0].key(), "project");
    }
}
