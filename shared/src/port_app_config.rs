//! The port-app-config model: the user's mapping from Azure DevOps items to Port entities,
//! parsed and checked once, then read by every stage (ingest reads the kinds and selectors,
//! transform compiles the jq expressions, publish reads the write options).
//!
//! Compatible with the configuration of Port's Python Ocean integration (pydantic models in
//! `port_ocean/core/handlers/port_app_config/models.py` plus the Azure DevOps `GitPortAppConfig`
//! extras `specPath`, `useDefaultBranch`, `branch`). Differences, on purpose:
//!
//! - unknown top-level keys are refused (pydantic ignores them), naming every one;
//! - jq fields must be strings: a number or boolean where a jq expression belongs is refused with
//!   its path (pydantic v1 would coerce `3` to the jq program `"3"`);
//! - unknown keys elsewhere (e.g. a stray `url:` beside `identifier:`) are ignored like pydantic
//!   does, but recorded in [`PortAppConfig::ignored_keys`] so that the caller can warn.
//!
//! This module knows nothing about jq beyond "this string is a jq expression": compiling and
//! evaluating is transform's job.

use std::fmt;

use serde::de::{self, Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::messages::WriteOptions;

/// Why a port-app-config was refused. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum PortAppConfigError {
    /// The text is not YAML (or JSON) at all.
    #[error("the mapping is not valid YAML: {0}")]
    Yaml(String),
    /// A value has the wrong shape; `path` is e.g. `resources[3].port.entity.mappings.title`.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// Top-level keys that the Azure DevOps integration does not know.
    #[error(
        "unknown top-level key(s) {}: expected enableMergeEntity, deleteDependentEntities, createMissingRelatedEntities, entityDeletionThreshold, resources, specPath, useDefaultBranch or branch",
        .0.join(", ")
    )]
    UnknownRootKeys(Vec<String>),
    /// `entityDeletionThreshold` outside 0..=1.
    #[error("entityDeletionThreshold: must be between 0 and 1, found {0}")]
    DeletionThreshold(f64),
}

/// A jq expression, as the user wrote it (compiled by transform).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JqExpr(pub String);

impl JqExpr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JqExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JqExpr {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl Serialize for JqExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A short rendering of an unexpected value for error messages.
fn describe(value: &Value) -> String {
    value_excerpt(value, 60)
}

/// A value's JSON text for messages: at most `max_chars` characters, ending in `...` when cut.
pub fn value_excerpt(value: &Value, max_chars: usize) -> String {
    let text = value.to_string();
    if text.chars().count() > max_chars {
        let short: String = text.chars().take(max_chars.saturating_sub(3)).collect();
        format!("{short}...")
    } else {
        text
    }
}

fn jq_from_value<E: de::Error>(value: Value) -> Result<JqExpr, E> {
    match value {
        Value::String(s) => Ok(JqExpr(s)),
        other => Err(E::custom(format_args!(
            "expected a string (a jq expression), found {}",
            describe(&other)
        ))),
    }
}

impl<'de> Deserialize<'de> for JqExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jq_from_value(Value::deserialize(deserializer)?)
    }
}

/// Port's search query (`IngestSearchQuery`): an entity found by its properties instead of its
/// identifier. Like Ocean, every string in it (`combinator`, `property`, `operator`, `value`) is
/// a jq expression, so a literal is written `'"and"'`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchQuery {
    pub combinator: JqExpr,
    pub rules: Vec<SearchRule>,
}

/// One rule of a [`SearchQuery`]: a leaf or a nested query.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SearchRule {
    Rule {
        property: JqExpr,
        operator: JqExpr,
        value: JqExpr,
    },
    Query(SearchQuery),
}

impl SearchQuery {
    /// Reads a search query from a JSON object; errors carry the path inside the query.
    fn from_object(object: Map<String, Value>, path: &str) -> Result<Self, String> {
        let mut combinator = None;
        let mut rules = None;
        for (key, value) in object {
            match key.as_str() {
                "combinator" => {
                    combinator = Some(
                        jq_from_value::<serde_json::Error>(value)
                            .map_err(|e| format!("{path}.combinator: {e}"))?,
                    )
                }
                "rules" => {
                    let Value::Array(items) = value else {
                        return Err(format!(
                            "{path}.rules: expected a list of rules, found {}",
                            describe(&value)
                        ));
                    };
                    let mut parsed = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        parsed.push(SearchRule::from_value(item, &format!("{path}.rules[{i}]"))?);
                    }
                    rules = Some(parsed);
                }
                // pydantic ignores unknown keys; so do we.
                _ => {}
            }
        }
        Ok(Self {
            combinator: combinator
                .ok_or_else(|| format!("{path}: a search query needs a `combinator`"))?,
            rules: rules.ok_or_else(|| format!("{path}: a search query needs `rules`"))?,
        })
    }
}

impl SearchRule {
    fn from_value(value: Value, path: &str) -> Result<Self, String> {
        let Value::Object(object) = value else {
            return Err(format!(
                "{path}: expected a rule {{property, operator, value}} or a nested query {{combinator, rules}}, found {}",
                describe(&value)
            ));
        };
        if object.contains_key("combinator") {
            return SearchQuery::from_object(object, path).map(SearchRule::Query);
        }
        let field = |name: &str, object: &mut Map<String, Value>| match object.remove(name) {
            Some(v) => {
                jq_from_value::<serde_json::Error>(v).map_err(|e| format!("{path}.{name}: {e}"))
            }
            None => Err(format!("{path}: a search rule needs `{name}`")),
        };
        let mut object = object;
        Ok(SearchRule::Rule {
            property: field("property", &mut object)?,
            operator: field("operator", &mut object)?,
            value: field("value", &mut object)?,
        })
    }
}

/// A mapping field that is a jq expression or a search query (identifier, team, relations).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MappingValue {
    Jq(JqExpr),
    Search(SearchQuery),
}

impl<'de> Deserialize<'de> for MappingValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(MappingValue::Jq(JqExpr(s))),
            Value::Object(object) => SearchQuery::from_object(object, "(search query)")
                .map(MappingValue::Search)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format_args!(
                "expected a string (a jq expression) or a search query {{combinator, rules}}, found {}",
                describe(&other)
            ))),
        }
    }
}

/// Named jq fields in the order the user wrote them (`properties`, `relations`).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFields<T>(pub Vec<(String, T)>);

impl<T> Default for NamedFields<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> NamedFields<T> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl<T: Serialize> Serialize for NamedFields<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedFields<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
            type Value = NamedFields<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from names to jq expressions")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                // `properties:` with nothing after it: YAML null, read as empty.
                Ok(NamedFields::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(NamedFields::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<T>()?;
                    out.push((key, value));
                }
                Ok(NamedFields(out))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `port.entity.mappings`: how one raw item becomes one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMapping {
    pub identifier: MappingValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<JqExpr>,
    pub blueprint: JqExpr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<JqExpr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<MappingValue>,
    #[serde(default)]
    pub properties: NamedFields<JqExpr>,
    #[serde(default)]
    pub relations: NamedFields<MappingValue>,
}

/// `port.entity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityConfig {
    pub mappings: EntityMapping,
}

/// `port`: the mapping of one resource, optionally fanned out over an array (`itemsToParse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortResourceConfig {
    pub entity: EntityConfig,
    /// jq pointing at an array in the raw item; one entity per element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse: Option<JqExpr>,
    /// The key under which each element is put (`item` by default).
    #[serde(default = "default_items_to_parse_name")]
    pub items_to_parse_name: String,
    /// Whether the array itself is removed from the item each element is merged into.
    #[serde(default = "default_true")]
    pub items_to_parse_top_level_transform: bool,
}

fn default_items_to_parse_name() -> String {
    "item".to_owned()
}

fn default_true() -> bool {
    true
}

/// `selector`: `query` filters items (jq, must yield a boolean); every other key is an
/// ingest option of the kind (`defaultTeam`, `includedFiles`, `wiql`, …), kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default = "default_query")]
    pub query: JqExpr,
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

impl Default for Selector {
    fn default() -> Self {
        Self {
            query: default_query(),
            options: Map::new(),
        }
    }
}

fn default_query() -> JqExpr {
    JqExpr("true".to_owned())
}

/// One entry of `resources`: a kind of Azure DevOps item and how to map it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceConfig {
    pub kind: String,
    #[serde(default)]
    pub selector: Selector,
    pub port: PortResourceConfig,
}

/// The deprecated `file://<path>` mapping value of the Azure DevOps integration: "the content
/// of this file on the repository's default branch". Transform reads it as
/// `.__includedFiles["<path>"]`, so ingest must fetch these paths like `includedFiles`.
pub const LEGACY_FILE_PREFIX: &str = "file://";

impl ResourceConfig {
    /// The paths named by `file://` mapping values of this resource, in mapping order, without
    /// duplicates.
    pub fn legacy_file_paths(&self) -> Vec<&str> {
        fn search<'a>(q: &'a SearchQuery, out: &mut Vec<&'a JqExpr>) {
            out.push(&q.combinator);
            for rule in &q.rules {
                match rule {
                    SearchRule::Rule {
                        property,
                        operator,
                        value,
                    } => out.extend([property, operator, value]),
                    SearchRule::Query(inner) => search(inner, out),
                }
            }
        }
        fn value<'a>(v: &'a MappingValue, out: &mut Vec<&'a JqExpr>) {
            match v {
                MappingValue::Jq(e) => out.push(e),
                MappingValue::Search(q) => search(q, out),
            }
        }
        let m = &self.port.entity.mappings;
        let mut exprs: Vec<&JqExpr> = Vec::new();
        value(&m.identifier, &mut exprs);
        exprs.extend(m.title.iter().chain([&m.blueprint]).chain(m.icon.iter()));
        if let Some(team) = &m.team {
            value(team, &mut exprs);
        }
        exprs.extend(m.properties.iter().map(|(_, e)| e));
        for (_, v) in m.relations.iter() {
            value(v, &mut exprs);
        }
        let mut paths: Vec<&str> = Vec::new();
        for e in exprs {
            if let Some(path) = e.as_str().trim().strip_prefix(LEGACY_FILE_PREFIX)
                && !paths.contains(&path)
            {
                paths.push(path);
            }
        }
        paths
    }
}

/// `specPath`: one path or a list of them (GitOps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SpecPath {
    One(String),
    Many(Vec<String>),
}

impl Default for SpecPath {
    fn default() -> Self {
        SpecPath::One("port.yml".to_owned())
    }
}

impl SpecPath {
    pub fn paths(&self) -> Vec<&str> {
        match self {
            SpecPath::One(p) => vec![p.as_str()],
            SpecPath::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

/// The whole port-app-config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortAppConfig {
    #[serde(default = "default_true")]
    pub enable_merge_entity: bool,
    #[serde(default = "default_true")]
    pub delete_dependent_entities: bool,
    #[serde(default = "default_true")]
    pub create_missing_related_entities: bool,
    /// Largest share of owned entities a resync may delete (0..=1).
    #[serde(default = "default_threshold")]
    pub entity_deletion_threshold: f64,
    /// In the user's order; one kind may appear several times.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    #[serde(default)]
    pub spec_path: SpecPath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_branch: Option<bool>,
    /// Ocean's default is `main` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Keys below the top level that were ignored (as pydantic ignores them), as paths such as
    /// `resources[3].port.entity.mappings.url`. Worth a warning at load time.
    #[serde(skip)]
    pub ignored_keys: Vec<String>,
}

fn default_threshold() -> f64 {
    0.9
}

impl PortAppConfig {
    /// Parses a YAML (or JSON) document.
    pub fn from_yaml_str(text: &str) -> Result<Self, PortAppConfigError> {
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| PortAppConfigError::Yaml(e.to_string()))?;
        Self::from_json_value(value)
    }

    /// Reads the config from JSON (as Port's API returns it).
    pub fn from_json_value(value: Value) -> Result<Self, PortAppConfigError> {
        let mut ignored: Vec<(bool, String)> = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| {
            let root = matches!(
                path,
                serde_ignored::Path::Map {
                    parent: serde_ignored::Path::Root,
                    ..
                }
            );
            ignored.push((root, render_ignored(&path)));
        };
        let result: Result<PortAppConfig, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
        let mut config = result.map_err(|e| PortAppConfigError::Invalid {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
        let unknown_root: Vec<String> = ignored
            .iter()
            .filter(|(root, _)| *root)
            .map(|(_, p)| p.clone())
            .collect();
        if !unknown_root.is_empty() {
            return Err(PortAppConfigError::UnknownRootKeys(unknown_root));
        }
        if !(0.0..=1.0).contains(&config.entity_deletion_threshold) {
            return Err(PortAppConfigError::DeletionThreshold(
                config.entity_deletion_threshold,
            ));
        }
        config.ignored_keys = ignored.into_iter().map(|(_, p)| p).collect();
        Ok(config)
    }

    /// How Port should apply this mapping's writes.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            merge: self.enable_merge_entity,
            create_missing_related_entities: self.create_missing_related_entities,
            delete_dependents: self.delete_dependent_entities,
        }
    }

    /// The resources of one kind, with their index in `resources`, in mapping order.
    pub fn resources_of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (usize, &'a ResourceConfig)> + 'a {
        self.resources
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.kind == kind)
    }

    /// Distinct kinds, in the order of their first appearance.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = Vec::new();
        for r in &self.resources {
            if !kinds.contains(&r.kind.as_str()) {
                kinds.push(&r.kind);
            }
        }
        kinds
    }
}

/// Renders a serde_ignored path as `resources[3].port.entity.mappings.url`.
fn render_ignored(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_ignored(parent)),
        Path::Map { parent, key } => {
            let parent = render_ignored(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_ignored(parent),
    }
}

/// The JSON of the smallest port-app-config that maps `kinds`: each item to blueprint `b`,
/// identified by `.id`. What tests and tools that care only about which kinds are mapped start
/// from (as Port would send it, for [`PortAppConfig::from_json_value`]).
pub fn minimal_json(kinds: &[&str]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            serde_json::json!({"kind": kind, "selector": {"query": "true"},
                "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}})
        })
        .collect();
    serde_json::json!({ "resources": resources })
}

/// The mapping adoport installs when Port has none for the integration: the Python
/// integration's default, unchanged (a test keeps the two equal).
pub const DEFAULT_PORT_APP_CONFIG: &str = include_str!("../assets/default-port-app-config.yaml");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REFERENCE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/ocean-azure-devops/port-app-config.yaml"
    );
    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/ocean-mappings"
    );
    const EXAMPLE_MAPPINGS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/ocean-azure-devops/mapping-example/example-mappings.yaml"
    );

    fn minimal(resource_mappings: Value) -> Value {
        json!({"resources": [{"kind": "project", "selector": {"query": "true"},
            "port": {"entity": {"mappings": resource_mappings}}}]})
    }

    #[test]
    fn port_app_config_reference_parses() {
        let text = std::fs::read_to_string(REFERENCE).expect("reference mapping");
        let config = PortAppConfig::from_yaml_str(&text).expect("reference parses");
        assert_eq!(config.resources.len(), 8);
        assert_eq!(
            config.kinds(),
            [
                "project",
                "repository",
                "repository-policy",
                "board",
                "work-item",
                "column",
                "release"
            ]
        );
        assert!(config.enable_merge_entity && config.delete_dependent_entities);
        assert_eq!(config.entity_deletion_threshold, 0.9);
        assert_eq!(config.use_default_branch, Some(true));
        assert_eq!(config.spec_path.paths(), ["port.yml"]);
        assert!(config.ignored_keys.is_empty(), "{:?}", config.ignored_keys);

        let project = &config.resources[0];
        assert_eq!(project.selector.query.as_str(), "true");
        assert_eq!(project.selector.options["defaultTeam"], json!("true"));
        let m = &project.port.entity.mappings;
        assert_eq!(
            m.identifier,
            MappingValue::Jq(r#".id | gsub(" "; "")"#.into())
        );
        assert_eq!(m.blueprint.as_str(), r#""azureDevopsProject""#);
        let names: Vec<&str> = m.properties.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            ["state", "revision", "visibility", "defaultTeam", "link"]
        );
        assert_eq!(project.port.items_to_parse_name, "item");
        assert!(project.port.items_to_parse_top_level_transform);

        let repo = &config.resources[1];
        assert_eq!(
            repo.selector.options["includedFiles"],
            json!(["README.md", "CODEOWNERS"])
        );
        assert_eq!(
            config
                .resources_of_kind("repository-policy")
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        let work_item = config
            .resources_of_kind("work-item")
            .next()
            .expect("work-item")
            .1;
        assert!(
            work_item.selector.options["wiql"]
                .as_str()
                .is_some_and(|w| w.contains("System.State"))
        );

        assert_eq!(
            config.write_options(),
            WriteOptions {
                merge: true,
                create_missing_related_entities: true,
                delete_dependents: true
            }
        );
    }

    #[test]
    fn port_app_config_corpus_parses() {
        let mut files: Vec<_> = std::fs::read_dir(CORPUS)
            .expect("corpus dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 40, "corpus has {} files", files.len());
        let mut failures = Vec::new();
        let mut resources = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            match PortAppConfig::from_yaml_str(&text) {
                Ok(config) => {
                    resources += config.resources.len();
                    for key in &config.ignored_keys {
                        println!("{}: ignored {key}", file.display());
                    }
                }
                Err(e) => failures.push(format!(
                    "{}: {e}",
                    file.file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default()
                )),
            }
        }
        println!(
            "{} files, {resources} resources, failures: {failures:#?}",
            files.len()
        );
        // github.yaml carries the GitHub integration's own root key `repositoryType`: not an
        // Azure DevOps key, refused on purpose.
        assert_eq!(failures.len(), 1, "{failures:#?}");
        assert!(
            failures[0].starts_with("github.yaml: unknown top-level key(s) repositoryType"),
            "{failures:#?}"
        );
    }

    #[test]
    fn port_app_config_example_mappings_parse_and_record_ignored_keys() {
        let text = std::fs::read_to_string(EXAMPLE_MAPPINGS).expect("example mappings");
        let config = PortAppConfig::from_yaml_str(&text).expect("parses");
        assert_eq!(config.resources.len(), 15);
        // the folder resource has a stray `url:` beside `identifier:`
        assert_eq!(
            config.ignored_keys,
            ["resources[9].port.entity.mappings.url"]
        );
        let file = &config.resources[6];
        assert_eq!(
            file.selector.options["files"]["repos"],
            json!(["my-node-app", "my-react-app"])
        );
        assert_eq!(
            config.resources[7].selector.options["files"]["path"][1],
            json!("docs/README.md")
        );
    }

    #[test]
    fn port_app_config_legacy_file_paths() {
        let config = PortAppConfig::from_json_value(minimal(json!({
            "identifier": ".id", "blueprint": "\"b\"",
            "properties": {"readme": "file://README.md", "other": ".x", "again": "file://README.md"},
            "relations": {"owners": "file://CODEOWNERS"}
        })))
        .expect("parses");
        assert_eq!(
            config.resources[0].legacy_file_paths(),
            ["README.md", "CODEOWNERS"]
        );
    }

    #[test]
    fn port_app_config_defaults() {
        let config = PortAppConfig::from_yaml_str("resources: []").expect("parses");
        assert!(
            config.enable_merge_entity
                && config.create_missing_related_entities
                && config.delete_dependent_entities
        );
        assert_eq!(config.entity_deletion_threshold, 0.9);
        assert_eq!(config.spec_path, SpecPath::One("port.yml".into()));
        assert_eq!(config.use_default_branch, None);
        assert_eq!(config.branch, None);
        let config = PortAppConfig::from_json_value(json!({
            "enableMergeEntity": false, "deleteDependentEntities": false,
            "createMissingRelatedEntities": false, "entityDeletionThreshold": 0.5,
            "specPath": ["a.yml", "b.yml"], "branch": "dev",
            "resources": [{"kind": "k", "port": {"entity": {"mappings":
                {"identifier": ".id", "blueprint": "\"b\""}}}}]
        }))
        .expect("parses");
        assert_eq!(
            config.write_options(),
            WriteOptions {
                merge: false,
                create_missing_related_entities: false,
                delete_dependents: false
            }
        );
        assert_eq!(config.spec_path.paths(), ["a.yml", "b.yml"]);
        assert_eq!(config.resources[0].selector.query.as_str(), "true");
        let m = &config.resources[0].port.entity.mappings;
        assert!(
            m.title.is_none()
                && m.team.is_none()
                && m.properties.is_empty()
                && m.relations.is_empty()
        );
    }

    #[test]
    fn port_app_config_search_queries() {
        let config = PortAppConfig::from_json_value(minimal(json!({
            "identifier": {"combinator": "\"and\"", "rules": [
                {"property": "\"$identifier\"", "operator": "\"=\"", "value": ".id"},
                {"combinator": "\"or\"", "rules": [{"property": "\"a\"", "operator": "\"=\"", "value": ".a"}]}
            ]},
            "blueprint": "\"b\"",
            "team": {"combinator": "\"and\"", "rules": []},
            "relations": {"owner": ".owner", "team": {"combinator": "\"and\"", "rules": []}}
        })))
        .expect("parses");
        let m = &config.resources[0].port.entity.mappings;
        let MappingValue::Search(q) = &m.identifier else {
            panic!("search identifier")
        };
        assert_eq!(q.rules.len(), 2);
        assert!(matches!(&q.rules[1], SearchRule::Query(inner) if inner.rules.len() == 1));
        assert!(matches!(
            m.relations.get("team"),
            Some(MappingValue::Search(_))
        ));
        // the model serialises back to the shape it was read from
        let back = serde_json::to_value(m).expect("serialises");
        assert_eq!(
            back["identifier"]["rules"][1]["combinator"],
            json!("\"or\"")
        );
    }

    #[test]
    fn port_app_config_bad_inputs_name_their_paths() {
        let cases: Vec<(Value, &str)> = vec![
            (
                minimal(
                    json!({"identifier": ".id", "blueprint": "\"b\"", "properties": {"state": 3}}),
                ),
                "resources[0].port.entity.mappings.properties.state: expected a string (a jq expression), found 3",
            ),
            (
                minimal(json!({"identifier": ".id", "blueprint": true})),
                "resources[0].port.entity.mappings.blueprint: expected a string (a jq expression), found true",
            ),
            (
                minimal(json!({"blueprint": "\"b\""})),
                "resources[0].port.entity.mappings: missing field `identifier`",
            ),
            (
                minimal(
                    json!({"identifier": {"combinator": "\"and\"", "rules": [{"property": "\"a\"", "operator": "\"=\"", "value": 1}]}, "blueprint": "\"b\""}),
                ),
                "resources[0].port.entity.mappings.identifier: (search query).rules[0].value: expected a string (a jq expression), found 1",
            ),
            (
                minimal(
                    json!({"identifier": ".id", "blueprint": "\"b\"", "relations": {"r": [1]}}),
                ),
                "resources[0].port.entity.mappings.relations.r: expected a string (a jq expression) or a search query {combinator, rules}, found [1]",
            ),
            (
                json!({"resources": [{"kind": "k", "selector": {"query": 1}, "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}}]}),
                "expected a string (a jq expression), found 1",
            ),
            (
                json!({"resources": [{"kind": 1}]}),
                "resources[0].kind: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"resources": {}}),
                "resources: invalid type: map, expected a sequence",
            ),
            (
                json!({"entityDeletionThreshold": 1.5}),
                "entityDeletionThreshold: must be between 0 and 1, found 1.5",
            ),
            (
                json!({"resources": [], "foo": 1, "bar": 2}),
                "unknown top-level key(s) foo, bar",
            ),
        ];
        for (input, expected) in cases {
            let err = PortAppConfig::from_json_value(input.clone()).expect_err(&input.to_string());
            let text = err.to_string();
            assert!(
                text.contains(expected),
                "got:      {text}\nexpected: {expected}"
            );
        }
        let err = PortAppConfig::from_yaml_str("resources: [").expect_err("bad yaml");
        assert!(matches!(err, PortAppConfigError::Yaml(_)), "{err}");
    }

    #[test]
    fn built_in_default_equals_the_python_integrations_default() {
        let reference = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/ocean-azure-devops/port-app-config.yaml"
        ))
        .expect("reference mapping (tests/fixtures) is readable");
        let ours: serde_json::Value =
            serde_saphyr::from_str(super::DEFAULT_PORT_APP_CONFIG).expect("ours parses");
        let theirs: serde_json::Value = serde_saphyr::from_str(&reference).expect("theirs parses");
        assert_eq!(ours, theirs);
        super::PortAppConfig::from_yaml_str(super::DEFAULT_PORT_APP_CONFIG).expect("valid");
    }
}
