//! Typed selectors: the options one resource's `selector` gives its kind's crawl, one struct
//! per selector model of the Python integration (`integration.py`), read from that resource's
//! options ([`KindPlan::selectors`](crate::plan::KindPlan::selectors) yields one per resource,
//! in mapping order, so a crawl can be run per resource).
//!
//! Read as the Python integration reads them, and as leniently as adoport always has: a missing
//! field takes its default; an unknown field is ignored (pydantic's default); a value of the
//! wrong type reads as the default rather than refusing the mapping (booleans may be quoted,
//! `'true'`, as the default mapping writes them; numbers may be quoted). `files` (file) and
//! `criteria` (advanced-security-alert), which pydantic checks strictly, are interpreted by
//! their kinds' modules. The bottom layer: it names no other module of ingest.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A boolean option: `true`, or a string that reads `true` (any case, trimmed); anything
/// else is `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Flag(match Value::deserialize(deserializer)? {
            Value::Bool(b) => b,
            Value::String(text) => text.trim().eq_ignore_ascii_case("true"),
            _ => false,
        }))
    }
}

/// A whole-number option that is present: its value, when it is a number or a quoted number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count(pub Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Count(match Value::deserialize(deserializer)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }))
    }
}

/// A text option that is present: its value, when it is a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Text(match Value::deserialize(deserializer)? {
            Value::String(s) => Some(s),
            _ => None,
        }))
    }
}

/// A list-of-strings option: its strings (other elements, or a value that is not a list, read
/// as none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Strings(match Value::deserialize(deserializer)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }))
    }
}

/// Reads one resource's options as the selector `T`.
pub fn read<T: DeserializeOwned + Default>(options: &Map<String, Value>) -> T {
    // Every field type above accepts any value, so this fails only for a model that has a
    // strict field; such a model reads as its defaults.
    serde_json::from_value(Value::Object(options.clone())).unwrap_or_default()
}

/// `Selector`: only the `query` that transform applies (group, group-member, release, gitops).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BareSelector {}

/// `AzureDevopsSelector`: `defaultTeam` (project: replace each project with the full project,
/// default team included). Reused by the Python integration for member, branch,
/// repository-policy, board, column, iteration, environment, release-deployment and the
/// pipeline run kinds, where the flag is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AzureDevopsSelector {
    pub default_team: Flag,
}

/// `RepositorySelector`: `includedFiles` (paths read into `__includedFiles`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RepositorySelector {
    pub included_files: Strings,
}

/// `PullRequestSelector`: closed pull requests of the last `minTimeInDays` (7), at most
/// `maxResults` (100) per repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PullRequestSelector {
    pub min_time_in_days: Option<Count>,
    pub max_results: Option<Count>,
}

/// `TeamSelector`: `includeMembers` (`__members`), `includeAreaPaths` (`__areaPaths`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TeamSelector {
    pub include_members: Flag,
    pub include_area_paths: Flag,
}

/// `AreaPathSelector`: `depth` of the classification tree read (unset: Azure DevOps' default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AreaPathSelector {
    pub depth: Option<Count>,
}

/// `WikiPageSelector`: `includeContent` (each page read with its content).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WikiSelector {
    pub include_content: Flag,
}

/// `PipelineSelector`: `includeRepo` (`__repository` of each pipeline).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PipelineSelector {
    pub include_repo: Flag,
}

/// `BuildSelector`: `enrichWithFirstCommit` (`__firstCommit` of each build).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BuildSelector {
    pub enrich_with_first_commit: Flag,
}

/// `ReleaseDefinitionSelector`: `expand` (`$expand`, default `environments`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReleaseDefinitionSelector {
    pub expand: Option<Text>,
}

/// `AzureDevopsWorkItemSelector`: `wiql` (a clause added to the query), `expand` (`All`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkItemSelector {
    pub wiql: Option<Text>,
    pub expand: Option<Text>,
}

/// `UserSelector`: `source` (`entitlements` or `graph`), `includeGroupMemberships` (graph),
/// `includeFields` (a list or a comma-separated string) and `apiVersion` (a string or a
/// number; entitlements), the last two read as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserSelector {
    pub source: Option<Text>,
    pub include_group_memberships: Flag,
    pub include_fields: Option<Value>,
    pub api_version: Option<Value>,
}

/// `TestRunSelector`: `includeResults` (default true), `codeCoverage` (`{flags}`), read as
/// given by `crate::kinds::test_runs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TestRunSelector {
    pub include_results: Option<Value>,
    pub code_coverage: Option<Value>,
}

/// `FileSelector`: `files` (`{path, repos}`) and `includedFiles`, read as given by
/// `crate::kinds::files`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FileSelector {
    pub files: Option<Value>,
    pub included_files: Strings,
}

/// `AzureDevopsFolderSelector`: `project_name` (snake case, as the Python model's alias),
/// `folders` (`[{path, repos}]`) and `includedFiles`, read as given by `crate::kinds::folders`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FolderSelector {
    #[serde(rename = "project_name")]
    pub project_name: Option<Text>,
    pub folders: Option<Value>,
    pub included_files: Strings,
}

/// `AdvancedSecurityAlertSelector`: `criteria` (`{states, severity, alertType}`), read as given
/// by `crate::kinds::security` and the live alert handler.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AlertSelector {
    pub criteria: Option<Value>,
}

/// Which selector model a kind's resources are read with (a row of `crate::kinds::KINDS`
/// names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorType {
    Bare,
    AzureDevops,
    Repository,
    PullRequest,
    Team,
    AreaPath,
    Wiki,
    Pipeline,
    Build,
    ReleaseDefinition,
    WorkItem,
    User,
    TestRun,
    File,
    Folder,
    Alert,
    /// The reserved `gitops` kind: `specPath`, `useDefaultBranch` and `branch` of the mapping's
    /// root, read by [`crate::plan::GitopsPlan`].
    Gitops,
}

/// The union, in order and without repeats, of a list option over resources.
pub fn union<'a>(lists: impl IntoIterator<Item = &'a Strings>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in lists.into_iter().flat_map(|list| &list.0) {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

#[cfg(test)]
impl SelectorType {
    /// Reads `options` with this model, for display and checks: the model's fields, each with
    /// the value it reads (defaults included).
    pub fn describe(self, options: &Map<String, Value>) -> String {
        match self {
            SelectorType::Bare | SelectorType::Gitops => {
                format!("{:?}", read::<BareSelector>(options))
            }
            SelectorType::AzureDevops => format!("{:?}", read::<AzureDevopsSelector>(options)),
            SelectorType::Repository => format!("{:?}", read::<RepositorySelector>(options)),
            SelectorType::PullRequest => format!("{:?}", read::<PullRequestSelector>(options)),
            SelectorType::Team => format!("{:?}", read::<TeamSelector>(options)),
            SelectorType::AreaPath => format!("{:?}", read::<AreaPathSelector>(options)),
            SelectorType::Wiki => format!("{:?}", read::<WikiSelector>(options)),
            SelectorType::Pipeline => format!("{:?}", read::<PipelineSelector>(options)),
            SelectorType::Build => format!("{:?}", read::<BuildSelector>(options)),
            SelectorType::ReleaseDefinition => {
                format!("{:?}", read::<ReleaseDefinitionSelector>(options))
            }
            SelectorType::WorkItem => format!("{:?}", read::<WorkItemSelector>(options)),
            SelectorType::User => format!("{:?}", read::<UserSelector>(options)),
            SelectorType::TestRun => format!("{:?}", read::<TestRunSelector>(options)),
            SelectorType::File => format!("{:?}", read::<FileSelector>(options)),
            SelectorType::Folder => format!("{:?}", read::<FolderSelector>(options)),
            SelectorType::Alert => format!("{:?}", read::<AlertSelector>(options)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn flags_accept_booleans_and_quoted_booleans_and_nothing_else() {
        let team = |v: Value| read::<TeamSelector>(&options(v)).include_members.0;
        assert!(team(json!({"includeMembers": true})));
        assert!(team(json!({"includeMembers": " TRUE "})));
        assert!(!team(json!({"includeMembers": "false"})));
        assert!(!team(json!({"includeMembers": 1})));
        assert!(!team(json!({})));
    }

    #[test]
    fn numbers_texts_and_lists_read_leniently_and_unknown_fields_are_ignored() {
        let pr = read::<PullRequestSelector>(&options(
            json!({"minTimeInDays": "3", "maxResults": "many", "unknown": [1]}),
        ));
        assert_eq!(pr.min_time_in_days, Some(Count(Some(3))));
        assert_eq!(pr.max_results, Some(Count(None)));
        let none = read::<PullRequestSelector>(&options(json!({})));
        assert_eq!(none.min_time_in_days, None);
        let repo = read::<RepositorySelector>(&options(json!({"includedFiles": ["a", 1, "b"]})));
        assert_eq!(repo.included_files, Strings(vec!["a".into(), "b".into()]));
        let odd = read::<RepositorySelector>(&options(json!({"includedFiles": "a"})));
        assert_eq!(odd.included_files, Strings::default());
        let work = read::<WorkItemSelector>(&options(json!({"wiql": 3, "expand": "None"})));
        assert_eq!(work.wiql, Some(Text(None)));
        assert_eq!(work.expand, Some(Text(Some("None".into()))));
        let folder = read::<FolderSelector>(&options(json!({"project_name": "P"})));
        assert_eq!(folder.project_name, Some(Text(Some("P".into()))));
    }
}
