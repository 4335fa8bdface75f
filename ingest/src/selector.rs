//! Typed selectors: the options one resource's `selector` gives its kind's crawl, one struct
//! per selector model of the Python integration (`integration.py`, `misc.py` for folder), read
//! from that resource's options ([`KindPlan::selectors`](crate::plan::KindPlan::selectors)
//! yields one per resource, in mapping order, so a crawl can be run per resource).
//!
//! Read as pydantic (v1) reads those models: a missing field takes its default; an unknown
//! field is ignored, except inside `files` (file), `criteria` (advanced-security-alert) and
//! `codeCoverage` (test-run), whose models forbid extras; a value pydantic coerces is coerced
//! the same way (booleans may be quoted, `'true'`, as the default mapping writes them, or
//! `yes`/`no`/`1`/`0`; whole numbers may be quoted; a number reads as text where text is
//! expected); anything else — a value of the wrong type, a value outside a field's choices, a
//! missing required field — is a [`SelectorError`] naming the kind, the resource and the
//! field, and the kind is not read under that mapping (it is reported failed, so none of its
//! entities are deleted). The bottom layer: it names no other module of ingest.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Why one resource's selector cannot be read with its kind's model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kind {kind}: the selector of its resource #{resource} (in mapping order) is not valid: field `{field}`: {message}"
)]
pub struct SelectorError {
    pub kind: String,
    /// The resource's position among the kind's resources, from 1.
    pub resource: usize,
    /// Where in the selector, e.g. `files.path` or `folders[0].repos` (`selector` for the
    /// selector as a whole, e.g. a missing required field).
    pub field: String,
    pub message: String,
}

/// A selector model: its options, read from one resource's selector.
pub trait Selector: DeserializeOwned + fmt::Debug {}

/// Reads the options of the `index`th (from 0) resource of `kind` as the selector `T`.
pub fn read<T: Selector>(
    kind: &str,
    index: usize,
    options: &Map<String, Value>,
) -> Result<T, SelectorError> {
    serde_path_to_error::deserialize(Value::Object(options.clone())).map_err(|e| {
        let field = e.path().to_string();
        SelectorError {
            kind: kind.to_string(),
            resource: index + 1,
            field: if field == "." {
                "selector".into()
            } else {
                field
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Reads a value and makes it a `T` with `read`, or refuses it as not `what`.
fn coerce<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    what: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<T, D::Error> {
    let value = Value::deserialize(deserializer)?;
    read(&value).ok_or_else(|| D::Error::custom(format!("{value} is not {what}")))
}

/// A boolean option (pydantic's `bool`): `true`/`false`, `1`/`0`, or a string that reads
/// as one (`true`, `yes`, `on`, `t`, `y`, `1` and their opposites, any case, trimmed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        coerce(deserializer, "a boolean", |value| match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
            Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
            Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "t" | "y" | "1" => Some(true),
                "false" | "no" | "off" | "f" | "n" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        })
        .map(Flag)
    }
}

/// A whole-number option (pydantic's `int`): a number (a fraction is cut, as `int()` does),
/// a quoted whole number, or a boolean (`1`/`0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count(pub i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        coerce(deserializer, "a whole number", |value| match value {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                    .map(|f| f.trunc() as i64)
            }),
            Value::String(text) => text.trim().parse().ok(),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        })
        .map(Count)
    }
}

impl Count {
    /// The count, when it is at least 1 (pydantic's `ge=1`).
    fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        let Count(n) = Count::deserialize(deserializer)?;
        match u64::try_from(n) {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(D::Error::custom(format!("{n} is less than 1"))),
        }
    }
}

/// A text option (pydantic's `str`): a string, or a number or boolean as its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        text(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

fn text(value: Value) -> Result<Text, String> {
    match value {
        Value::String(s) => Ok(Text(s)),
        Value::Number(n) => Ok(Text(n.to_string())),
        // Python's `str(True)`.
        Value::Bool(b) => Ok(Text(if b { "True" } else { "False" }.into())),
        other => Err(format!("{other} is not a string")),
    }
}

/// A list-of-strings option (pydantic's `list[str]`): a list whose items are texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| text(item).map(|t| t.0))
                .collect::<Result<_, _>>()
                .map(Strings)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("{other} is not a list"))),
        }
    }
}

/// `Union[str, List[str]]`: one text or a list of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            list @ Value::Array(_) => Strings::deserialize(list)
                .map(|s| OneOrMany(s.0))
                .map_err(D::Error::custom),
            one => text(one)
                .map(|t| OneOrMany(vec![t.0]))
                .map_err(D::Error::custom),
        }
    }
}

/// The values a [`Choice`] allows (a pydantic `Literal`).
pub trait Choices {
    const ALLOWED: &'static [&'static str];
}

/// A text option that must be one of `C::ALLOWED`, exactly.
pub struct Choice<C>(pub String, PhantomData<C>);

impl<C> Choice<C> {
    pub fn of(value: &str) -> Self {
        Choice(value.to_string(), PhantomData)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<C> Clone for Choice<C> {
    fn clone(&self) -> Self {
        Choice::of(&self.0)
    }
}

impl<C> PartialEq for Choice<C> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<C> fmt::Debug for Choice<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de, C: Choices> Deserialize<'de> for Choice<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match value.as_str() {
            Some(s) if C::ALLOWED.contains(&s) => Ok(Choice::of(s)),
            _ => Err(D::Error::custom(format!(
                "{value} is not one of {}",
                C::ALLOWED.join(", ")
            ))),
        }
    }
}

/// Declares the [`Choices`] of each `Literal` the models use.
macro_rules! choices {
    ($($(#[$doc:meta])* $name:ident = [$($value:literal),+ $(,)?];)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $name;

            impl Choices for $name {
                const ALLOWED: &'static [&'static str] = &[$($value),+];
            }
        )*
    };
}

choices! {
    /// `expand` of work items.
    WorkItemExpand = ["None", "Fields", "Relations", "Links", "All"];
    /// `expand` of release definitions.
    DefinitionExpand = ["environments", "artifacts", "triggers", "variables", "tags", "lastRelease"];
    /// `expand` of releases.
    ReleaseExpand = ["environments", "artifacts", "approvals", "manualInterventions", "variables", "tags"];
    /// `statusFilter` of releases.
    ReleaseStatus = ["abandoned", "active", "draft", "undefined"];
    /// `wikiType` of wikis.
    WikiType = ["projectWiki", "codeWiki"];
    /// `source` of users.
    UserSource = ["graph", "entitlements"];
    /// `includeFields` of user entitlements.
    UserField = ["license", "extensions", "projects", "groupRules"];
    /// `criteria.states` of alerts.
    AlertState = ["active", "dismissed", "fixed", "autoDismissed"];
    /// `criteria.severity` of alerts.
    AlertSeverity = ["low", "medium", "high", "critical", "note", "warning", "error"];
    /// `criteria.alertType` of alerts.
    AlertType = ["dependency", "code", "secret"];
}

/// Declares selector models: each a struct whose fields take their defaults when absent and
/// whose unknown fields are ignored, and its [`Selector`] impl.
macro_rules! selectors {
    ($(
        $(#[$doc:meta])*
        $model:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty,)* }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Deserialize)]
            #[serde(default, rename_all = "camelCase")]
            pub struct $model {
                $($(#[$field_doc])* pub $field: $ty,)*
            }

            impl Selector for $model {}
        )*
    };
}

/// Declares [`SelectorType`], the model a row of `crate::kinds::KINDS` names, and
/// [`SelectorType::describe`], which reads a resource with that model.
macro_rules! selector_types {
    ($($(#[$doc:meta])* $variant:ident => $model:ty,)*) => {
        /// Which selector model a kind's resources are read with (a row of
        /// `crate::kinds::KINDS` names it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum SelectorType {
            $($(#[$doc])* $variant,)*
        }

        impl SelectorType {
            /// Reads the `index`th (from 0) resource's `options` of `kind` with this model:
            /// the model's fields, each with the value it reads (defaults included).
            pub fn describe(
                self,
                kind: &str,
                index: usize,
                options: &Map<String, Value>,
            ) -> Result<String, SelectorError> {
                Ok(match self {
                    $(SelectorType::$variant => {
                        format!("{:?}", read::<$model>(kind, index, options)?)
                    })*
                })
            }
        }
    };
}

selector_types! {
    Bare => BareSelector,
    AzureDevops => AzureDevopsSelector,
    Repository => RepositorySelector,
    PullRequest => PullRequestSelector,
    Team => TeamSelector,
    AreaPath => AreaPathSelector,
    Wiki => WikiSelector,
    Pipeline => PipelineSelector,
    Release => ReleaseSelector,
    Build => BuildSelector,
    ReleaseDefinition => ReleaseDefinitionSelector,
    WorkItem => WorkItemSelector,
    User => UserSelector,
    TestRun => TestRunSelector,
    File => FileSelector,
    Folder => FolderSelector,
    Alert => AlertSelector,
    /// The reserved `gitops` kind: `specPath`, `useDefaultBranch` and `branch` of the
    /// mapping's root, read by [`crate::plan::GitopsPlan`].
    Gitops => GitopsSelector,
}

selectors! {
    /// `Selector`: only the `query` that transform applies (group, group-member).
    #[derive(Default)]
    BareSelector {}

    /// `AzureDevopsSelector`: `defaultTeam` (project: replace each project with the full
    /// project, default team included). Reused by the Python integration for member, branch,
    /// repository-policy, board, column, iteration, environment, release-deployment and the
    /// pipeline run kinds, where the flag is ignored.
    #[derive(Default)]
    AzureDevopsSelector {
        default_team: Flag,
    }

    /// `RepositorySelector`: `includedFiles` (paths read into `__includedFiles`).
    #[derive(Default)]
    RepositorySelector {
        included_files: Strings,
    }

    /// `PullRequestSelector`: closed pull requests of the last `minTimeInDays`, at most
    /// `maxResults` per repository, each at least 1 (see [`PullRequestSelector::window`]).
    #[derive(Default)]
    PullRequestSelector {
        #[serde(deserialize_with = "Count::at_least_one")]
        min_time_in_days: Option<u64>,
        #[serde(deserialize_with = "Count::at_least_one")]
        max_results: Option<u64>,
    }

    /// `TeamSelector`: `includeMembers` (`__members`), `includeAreaPaths` (`__areaPaths`).
    #[derive(Default)]
    TeamSelector {
        include_members: Flag,
        include_area_paths: Flag,
    }

    /// `AreaPathSelector`: `depth` of the classification tree read (unset: Azure DevOps'
    /// default).
    #[derive(Default)]
    AreaPathSelector {
        depth: Option<Count>,
    }

    /// `AzureDevopsWikiSelector`: `wikiType` (only the wikis of that type; unset: both),
    /// `includeContent` (each page read with its content) and `apiVersion` (of every wiki
    /// call; unset or empty: 7.1, see [`WikiSelector::api_version`]).
    #[derive(Default)]
    WikiSelector {
        wiki_type: Option<Choice<WikiType>>,
        include_content: Flag,
        api_version: Option<Text>,
    }

    /// `PipelineSelector`: `includeRepo` (`__repository` of each pipeline).
    #[derive(Default)]
    PipelineSelector {
        include_repo: Flag,
    }

    /// `BuildSelector` (an `AzureDevopsSelector`): `enrichWithFirstCommit` (`__firstCommit`
    /// of each build).
    #[derive(Default)]
    BuildSelector {
        default_team: Flag,
        enrich_with_first_commit: Flag,
    }

    /// `ReleaseDefinitionSelector`: `expand` (`$expand`, [`ReleaseDefinitionSelector::expand`])
    /// and `tagFilter` (only definitions with these tags, [`ReleaseDefinitionSelector::params`]).
    #[derive(Default)]
    ReleaseDefinitionSelector {
        expand: Option<Choice<DefinitionExpand>>,
        tag_filter: Option<Strings>,
    }

    /// `AzureDevopsReleaseSelector`: `expand`, `statusFilter`, `tagFilter`,
    /// `sourceBranchFilter`, `minCreatedTime`, `maxCreatedTime`, each unset by default and
    /// sent to Release - List as it is given ([`ReleaseSelector::params`]).
    #[derive(Default)]
    ReleaseSelector {
        expand: Option<Choice<ReleaseExpand>>,
        status_filter: Option<Choice<ReleaseStatus>>,
        tag_filter: Option<Strings>,
        source_branch_filter: Option<Text>,
        min_created_time: Option<Text>,
        max_created_time: Option<Text>,
    }

    /// `AzureDevopsWorkItemSelector`: `wiql` (a clause added to the query), `expand`
    /// ([`WorkItemSelector::query`]).
    #[derive(Default)]
    WorkItemSelector {
        wiql: Option<Text>,
        expand: Option<Choice<WorkItemExpand>>,
    }

    /// `UserSelector`: `source` (`entitlements`, the default, or `graph`), `subjectTypes` and
    /// `includeGroupMemberships` (graph), `includeFields` and `apiVersion` (entitlements).
    #[derive(Default)]
    UserSelector {
        source: Option<Choice<UserSource>>,
        subject_types: Option<Strings>,
        include_group_memberships: Flag,
        include_fields: Option<Vec<Choice<UserField>>>,
        api_version: Option<Text>,
    }

    /// `TestRunSelector`: `includeResults` (default true), `codeCoverage` (`{flags}`, off by
    /// default).
    TestRunSelector {
        include_results: Flag,
        code_coverage: Option<CodeCoverage>,
    }

    /// `AzureDevopsFolderSelector`: `project_name` (snake case, as the Python model names it;
    /// `projectName` is read too), `folders` and `includedFiles`.
    #[derive(Default)]
    FolderSelector {
        #[serde(rename = "project_name", alias = "projectName")]
        project_name: Option<Text>,
        folders: Vec<FolderPattern>,
        included_files: Strings,
    }

    /// The reserved `gitops` kind's options, written by adoport from the mapping's root
    /// (`crate::plan::GitopsPlan::kind_plan`).
    #[derive(Default)]
    GitopsSelector {
        spec_path: Strings,
        use_default_branch: Flag,
        branch: Option<Text>,
    }

    /// `AdvancedSecuritySelector`: `criteria` (no criteria: every alert).
    #[derive(Default)]
    AlertSelector {
        criteria: Option<AlertCriteria>,
    }
}

impl PullRequestSelector {
    /// Over the kind's resources, each option as the first resource that sets it gives it, else
    /// the Python integration's default: (`minTimeInDays`, 7; `maxResults`, 100).
    pub fn window(selectors: &[Self]) -> (u64, u64) {
        let first = |option: fn(&Self) -> Option<u64>, default| {
            selectors.iter().find_map(option).unwrap_or(default)
        };
        (
            first(|s| s.min_time_in_days, 7),
            first(|s| s.max_results, 100),
        )
    }
}

impl WorkItemSelector {
    /// Over the kind's resources: the first `wiql` given, and the first `expand` given (else
    /// `All`).
    pub fn query(selectors: &[Self]) -> (Option<&str>, &str) {
        (
            selectors
                .iter()
                .find_map(|s| s.wiql.as_ref())
                .map(|t| t.0.as_str()),
            selectors
                .iter()
                .find_map(|s| s.expand.as_ref())
                .map_or("All", Choice::as_str),
        )
    }
}

impl ReleaseDefinitionSelector {
    /// Over the kind's resources: the first `expand` given, else `environments`.
    pub fn expand(selectors: &[Self]) -> &str {
        (selectors.iter().find_map(|s| s.expand.as_ref())).map_or("environments", Choice::as_str)
    }

    /// The query parameters of Definitions - List this resource adds besides `$expand`:
    /// `tagFilter`, its tags joined by commas (an empty list filters nothing).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        tag_filter(self.tag_filter.as_ref()).into_iter().collect()
    }
}

/// `tagFilter` as Azure DevOps takes it: the tags joined by commas; `None` for no tags.
fn tag_filter(tags: Option<&Strings>) -> Option<(&'static str, String)> {
    tags.filter(|t| !t.0.is_empty())
        .map(|t| ("tagFilter", t.0.join(",")))
}

impl ReleaseSelector {
    /// The query parameters of Release - List this resource asks for, in a fixed order: each
    /// option that is set, as it is given (`expand` as `$expand`, `tagFilter` joined by
    /// commas); an empty text or list filters nothing and is not sent.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let text = |name, value: &Option<Text>| {
            (value.as_ref())
                .filter(|t| !t.0.is_empty())
                .map(|t| (name, t.0.clone()))
        };
        [
            (self.expand.as_ref()).map(|e| ("$expand", e.as_str().to_string())),
            (self.status_filter.as_ref()).map(|s| ("statusFilter", s.as_str().to_string())),
            tag_filter(self.tag_filter.as_ref()),
            text("sourceBranchFilter", &self.source_branch_filter),
            text("minCreatedTime", &self.min_created_time),
            text("maxCreatedTime", &self.max_created_time),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl WikiSelector {
    /// Over the kind's resources: the first non-empty `apiVersion` given, else 7.1 (the Python
    /// integration's default for every wiki call).
    pub fn api_version(selectors: &[Self]) -> &str {
        selectors
            .iter()
            .filter_map(|s| s.api_version.as_ref())
            .map(|t| t.0.trim())
            .find(|v| !v.is_empty())
            .unwrap_or("7.1")
    }

    /// Over the kind's resources: the wiki types read, `None` for every type (a resource
    /// without `wikiType` reads them all).
    pub fn types(selectors: &[Self]) -> Option<Vec<String>> {
        (selectors.iter())
            .map(|s| s.wiki_type.as_ref().map(|t| t.as_str().to_string()))
            .collect::<Option<Vec<_>>>()
            .filter(|types| !types.is_empty())
    }
}

/// `TestRunSelector`'s defaults: results included.
impl Default for TestRunSelector {
    fn default() -> Self {
        Self {
            include_results: Flag(true),
            code_coverage: None,
        }
    }
}

/// `CodeCoverageConfig`: `flags` (how detailed the coverage answer is); nothing else.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeCoverage {
    pub flags: Option<Count>,
}

/// `AzureDevopsFileSelector`: `files` (required) and `includedFiles`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSelector {
    pub files: FilePattern,
    #[serde(default)]
    pub included_files: Strings,
}

impl Selector for FileSelector {}

/// `FilePattern`: `path` (one path or pattern, or a list; required) and `repos` (repository
/// names; unset: every repository); nothing else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePattern {
    pub path: OneOrMany,
    #[serde(default)]
    pub repos: Option<Strings>,
}

/// `FolderPattern`: `path` (required) and `repos` (none: every repository).
#[derive(Debug, Clone, Deserialize)]
pub struct FolderPattern {
    pub path: Text,
    #[serde(default)]
    pub repos: Vec<RepositoryBranch>,
}

/// `RepositoryBranchMapping`: a repository `name` and the `branch` read (unset: its default
/// branch); a bare name is read as `{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryBranch {
    pub name: String,
    pub branch: Option<String>,
}

impl<'de> Deserialize<'de> for RepositoryBranch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Mapping {
            name: Text,
            #[serde(default)]
            branch: Option<Text>,
        }
        match Value::deserialize(deserializer)? {
            Value::String(name) => Ok(RepositoryBranch { name, branch: None }),
            other => Mapping::deserialize(other)
                .map(|m| RepositoryBranch {
                    name: m.name.0,
                    branch: m.branch.map(|b| b.0),
                })
                .map_err(D::Error::custom),
        }
    }
}

/// `AdvancedSecurityFilter`: `states`, `severity`, `alertType` (each unset: no filter);
/// nothing else.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertCriteria {
    pub states: Option<Vec<Choice<AlertState>>>,
    pub severity: Option<Vec<Choice<AlertSeverity>>>,
    pub alert_type: Option<Choice<AlertType>>,
}

impl AlertCriteria {
    /// The filter named `key` (`states`, `severity`, `alertType`) as its values; `None` when
    /// unset or empty (no filter).
    pub fn filter(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = match key {
            "states" => self.states.iter().flatten().map(Choice::as_str).collect(),
            "severity" => self.severity.iter().flatten().map(Choice::as_str).collect(),
            _ => self.alert_type.iter().map(Choice::as_str).collect(),
        };
        (!values.is_empty()).then_some(values)
    }
}

impl SelectorType {
    /// Reads every resource of `kind` (`options`: each resource's position among the kind's
    /// resources, and its options, in mapping order) with this model; the first that does not
    /// read is the error.
    pub fn check<'a>(
        self,
        kind: &str,
        options: impl IntoIterator<Item = (usize, &'a Map<String, Value>)>,
    ) -> Result<(), SelectorError> {
        for (position, resource) in options {
            self.describe(kind, position, resource)?;
        }
        Ok(())
    }
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
mod tests {
    use super::*;
    use serde_json::json;

    fn read_as<T: Selector>(value: Value) -> Result<T, SelectorError> {
        read("k", 0, value.as_object().expect("an object"))
    }

    fn error<T: Selector>(value: Value) -> (String, String) {
        let e = read_as::<T>(value).expect_err("refused");
        (e.field, e.message)
    }

    #[test]
    fn flags_accept_booleans_and_what_pydantic_reads_as_one() {
        let team = |v: Value| read_as::<TeamSelector>(v).map(|s| s.include_members.0);
        for yes in [
            json!(true),
            json!(" TRUE "),
            json!("yes"),
            json!("1"),
            json!(1),
        ] {
            assert_eq!(team(json!({ "includeMembers": yes })), Ok(true), "{yes}");
        }
        for no in [
            json!(false),
            json!("false"),
            json!("No"),
            json!("off"),
            json!(0),
        ] {
            assert_eq!(team(json!({ "includeMembers": no })), Ok(false), "{no}");
        }
        assert_eq!(team(json!({})), Ok(false));
        for bad in [json!("maybe"), json!(2), json!([true]), json!(null)] {
            assert!(team(json!({ "includeMembers": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_python_integrations() {
        let empty = || json!({});
        let pr = read_as::<PullRequestSelector>(empty()).expect("reads");
        assert_eq!(PullRequestSelector::window(&[pr]), (7, 100));
        let runs = read_as::<TestRunSelector>(empty()).expect("reads");
        assert!(runs.include_results.0 && runs.code_coverage.is_none());
        let work = read_as::<WorkItemSelector>(empty()).expect("reads");
        assert_eq!(WorkItemSelector::query(&[work]), (None, "All"));
        let user = read_as::<UserSelector>(empty()).expect("reads");
        assert!(user.source.is_none() && !user.include_group_memberships.0);
        assert!(user.include_fields.is_none() && user.api_version.is_none());
        let definitions = read_as::<ReleaseDefinitionSelector>(empty()).expect("reads");
        assert_eq!(
            ReleaseDefinitionSelector::expand(&[definitions]),
            "environments"
        );
        let folder = read_as::<FolderSelector>(empty()).expect("reads");
        assert!(folder.folders.is_empty() && folder.project_name.is_none());
        assert!(
            read_as::<AlertSelector>(empty())
                .expect("reads")
                .criteria
                .is_none()
        );
        assert!(
            read_as::<AreaPathSelector>(empty())
                .expect("reads")
                .depth
                .is_none()
        );
    }

    #[test]
    fn release_and_wiki_filters_default_to_none_and_become_the_query_parameters() {
        let release = read_as::<ReleaseSelector>(json!({})).expect("reads");
        assert!(release.params().is_empty(), "no filter by default");
        let release = read_as::<ReleaseSelector>(json!({
            "expand": "artifacts", "statusFilter": "active", "tagFilter": ["a", 1],
            "sourceBranchFilter": "refs/heads/main", "minCreatedTime": "2025-01-01",
            "maxCreatedTime": 2026, "query": "true"
        }))
        .expect("reads");
        let params: Vec<(&str, String)> = release.params();
        assert_eq!(
            params,
            [
                ("$expand", "artifacts".to_string()),
                ("statusFilter", "active".into()),
                ("tagFilter", "a,1".into()),
                ("sourceBranchFilter", "refs/heads/main".into()),
                ("minCreatedTime", "2025-01-01".into()),
                ("maxCreatedTime", "2026".into()),
            ]
        );
        let empty = read_as::<ReleaseSelector>(json!({"tagFilter": [], "statusFilter": null}));
        assert!(empty.expect("reads").params().is_empty());
        let definitions =
            read_as::<ReleaseDefinitionSelector>(json!({"tagFilter": ["x", "y"]})).expect("reads");
        assert_eq!(definitions.params(), [("tagFilter", "x,y".to_string())]);
        assert!(
            (read_as::<ReleaseDefinitionSelector>(json!({})).expect("reads"))
                .params()
                .is_empty()
        );

        let wiki = |v: Value| read_as::<WikiSelector>(v).expect("reads");
        assert_eq!(WikiSelector::api_version(&[wiki(json!({}))]), "7.1");
        assert_eq!(
            WikiSelector::api_version(&[
                wiki(json!({"apiVersion": ""})),
                wiki(json!({"apiVersion": 7.0}))
            ]),
            "7.0"
        );
        assert_eq!(WikiSelector::types(&[wiki(json!({}))]), None);
        let code = wiki(json!({"wikiType": "codeWiki"}));
        assert_eq!(
            WikiSelector::types(std::slice::from_ref(&code)),
            Some(vec!["codeWiki".to_string()])
        );
        assert_eq!(WikiSelector::types(&[code, wiki(json!({}))]), None);
    }

    #[test]
    fn numbers_texts_and_lists_are_coerced_as_pydantic_does() {
        let pr = read_as::<PullRequestSelector>(json!({"minTimeInDays": "3", "maxResults": 2.9}))
            .expect("reads");
        let later = read_as::<PullRequestSelector>(json!({"minTimeInDays": 9})).expect("reads");
        assert_eq!(PullRequestSelector::window(&[pr, later]), (3, 2));
        let area = read_as::<AreaPathSelector>(json!({"depth": " 4 "})).expect("reads");
        assert_eq!(area.depth, Some(Count(4)));
        let repo = read_as::<RepositorySelector>(json!({"includedFiles": ["a", 1, "b"]}));
        assert_eq!(repo.expect("reads").included_files.0, ["a", "1", "b"]);
        let work = read_as::<WorkItemSelector>(json!({"wiql": 3, "expand": "None"}));
        let first = read_as::<WorkItemSelector>(json!({})).expect("reads");
        assert_eq!(
            WorkItemSelector::query(&[first, work.expect("reads")]),
            (Some("3"), "None")
        );
        let user = read_as::<UserSelector>(
            json!({"apiVersion": 7.1, "includeFields": ["license", "projects"], "source": "graph"}),
        )
        .expect("reads");
        assert_eq!(user.api_version, Some(Text("7.1".into())));
        assert_eq!(user.include_fields.map(|f| f.len()), Some(2));
        assert_eq!(user.source.map(|s| s.0), Some("graph".into()));
        let folder = read_as::<FolderSelector>(json!({"project_name": "P", "unknown": [1]}));
        assert_eq!(folder.expect("reads").project_name, Some(Text("P".into())));
        let folder = read_as::<FolderSelector>(json!({"projectName": "P"})).expect("reads");
        assert_eq!(folder.project_name, Some(Text("P".into())));
    }

    #[test]
    fn files_folders_criteria_and_coverage_take_each_accepted_shape() {
        let one = read_as::<FileSelector>(json!({"files": {"path": "a.md"}})).expect("reads");
        assert_eq!(
            (one.files.path.0, one.files.repos),
            (vec!["a.md".into()], None)
        );
        let many = read_as::<FileSelector>(
            json!({"files": {"path": ["a", "b"], "repos": ["r"]}, "includedFiles": ["c"]}),
        )
        .expect("reads");
        assert_eq!(many.files.path.0, ["a", "b"]);
        assert_eq!(many.files.repos, Some(Strings(vec!["r".into()])));
        assert_eq!(many.included_files.0, ["c"]);
        let folder = read_as::<FolderSelector>(json!({"folders": [
            {"path": "docs", "repos": ["a", {"name": "b", "branch": "dev"}, {"name": "c"}]},
            {"path": "src/*"},
        ]}))
        .expect("reads");
        assert_eq!(folder.folders[0].repos.len(), 3);
        assert_eq!(folder.folders[0].repos[1].branch.as_deref(), Some("dev"));
        assert!(folder.folders[1].repos.is_empty());
        let alert = read_as::<AlertSelector>(json!({"criteria": {
            "states": ["active", "fixed"], "severity": ["high"], "alertType": "secret"}}))
        .expect("reads");
        let criteria = alert.criteria.expect("criteria");
        assert_eq!(criteria.filter("states"), Some(vec!["active", "fixed"]));
        assert_eq!(criteria.filter("alertType"), Some(vec!["secret"]));
        let coverage = read_as::<TestRunSelector>(
            json!({"includeResults": "false", "codeCoverage": {"flags": "2"}}),
        )
        .expect("reads");
        assert!(!coverage.include_results.0);
        assert_eq!(coverage.code_coverage.and_then(|c| c.flags), Some(Count(2)));
    }

    #[test]
    fn what_pydantic_refuses_is_an_error_naming_the_kind_resource_and_field() {
        let e = read::<FileSelector>(
            "file",
            1,
            json!({"files": {"path": "a", "branch": "x"}})
                .as_object()
                .expect("object"),
        )
        .expect_err("extra field in files");
        assert_eq!(
            (e.kind.as_str(), e.resource, e.field.as_str()),
            ("file", 2, "files.branch")
        );
        assert!(
            e.message.contains("unknown field `branch`"),
            "{}",
            e.message
        );
        assert_eq!(
            e.to_string(),
            format!(
                "kind file: the selector of its resource #2 (in mapping order) is not valid: field `files.branch`: {}",
                e.message
            )
        );
        assert_eq!(error::<FileSelector>(json!({})).0, "selector");
        assert_eq!(
            error::<FileSelector>(json!({"files": {"path": {}}})).0,
            "files.path"
        );
        assert_eq!(
            error::<AlertSelector>(json!({"criteria": {"states": ["open"]}})).0,
            "criteria.states[0]"
        );
        let (field, message) = error::<AlertSelector>(json!({"criteria": {"severities": []}}));
        assert_eq!(field, "criteria.severities");
        assert!(message.contains("unknown field `severities`"), "{message}");
        assert_eq!(
            error::<TestRunSelector>(json!({"codeCoverage": {"flag": 1}})).0,
            "codeCoverage.flag"
        );
        assert_eq!(
            error::<PullRequestSelector>(json!({"maxResults": 0})).0,
            "maxResults"
        );
        assert_eq!(
            error::<PullRequestSelector>(json!({"minTimeInDays": "many"})).0,
            "minTimeInDays"
        );
        assert_eq!(
            error::<WorkItemSelector>(json!({"expand": "all"})).0,
            "expand"
        );
        assert_eq!(error::<UserSelector>(json!({"source": "ldap"})).0, "source");
        assert_eq!(
            error::<UserSelector>(json!({"includeFields": "license"})).0,
            "includeFields"
        );
        assert_eq!(
            error::<RepositorySelector>(json!({"includedFiles": "a"})).0,
            "includedFiles"
        );
        assert_eq!(
            error::<FolderSelector>(json!({"folders": [{"repos": []}]})).0,
            "folders[0]"
        );
        assert_eq!(
            error::<FolderSelector>(json!({"folders": [{"path": "a", "repos": [{}]}]})).0,
            "folders[0].repos[0]"
        );
        assert_eq!(
            error::<WikiSelector>(json!({"includeContent": "sometimes"})).0,
            "includeContent"
        );
        assert_eq!(
            error::<WikiSelector>(json!({"wikiType": "ProjectWiki"})).0,
            "wikiType"
        );
        for (selector, field) in [
            (json!({"statusFilter": "Active"}), "statusFilter"),
            (json!({"expand": "triggers"}), "expand"),
            (json!({"tagFilter": "a"}), "tagFilter"),
            (json!({"sourceBranchFilter": {}}), "sourceBranchFilter"),
            (json!({"maxCreatedTime": [1]}), "maxCreatedTime"),
        ] {
            assert_eq!(error::<ReleaseSelector>(selector).0, field);
        }
        assert_eq!(
            error::<ReleaseDefinitionSelector>(json!({"tagFilter": [{}]})).0,
            "tagFilter"
        );
    }
}
