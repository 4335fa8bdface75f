//! Mapping versions: what the transform workers run, and how a new port-app-config replaces it.
//!
//! A new version (from Port or the mapping file, offered by whoever polls it) is parsed and
//! compiled completely before it replaces the running one; a version that does not parse or
//! compile is refused with all its errors and the running one stays. Every worker task reads
//! the current version from a `tokio::sync::watch`, so all of them (and, since every replica
//! polls the same source, all replicas) converge on the same version. Nothing here does I/O.

use std::sync::Arc;

use adoport_shared::port_app_config::{PortAppConfig, PortAppConfigError};
use serde_json::Value;
use tokio::sync::watch;

use super::CompiledMapping;
use crate::error::MappingError;

/// What the workers read: the mapping currently in force.
pub type MappingWatch = watch::Receiver<Arc<CompiledMapping>>;

/// Why a mapping version was refused. The running version (if any) stays.
#[derive(Debug, thiserror::Error)]
pub enum RefusedMapping {
    /// Not a valid port-app-config (the error names the path and what was expected).
    #[error("not a valid port-app-config: {0}")]
    Model(#[from] PortAppConfigError),
    /// Valid, but expressions do not compile (every one is listed).
    #[error("{0}")]
    Compile(#[from] MappingError),
}

/// Parses and compiles a mapping version given as JSON (Port's `integration.config`, or a
/// YAML file read into JSON).
pub fn compile_version(raw: &Value) -> Result<(PortAppConfig, CompiledMapping), RefusedMapping> {
    let config = PortAppConfig::from_json_value(raw.clone())?;
    let compiled = CompiledMapping::compile(&config)?;
    Ok((config, compiled))
}

/// What became of an offered version.
#[derive(Debug)]
pub enum Offer {
    /// The same as the running version: nothing to do.
    Unchanged,
    /// Compiled and now in force.
    Replaced {
        version: u64,
    },
    /// Refused; the running version stays. Offering the same bad version again gives
    /// `AlreadyRefused` (so a poller logs it once).
    Refused(RefusedMapping),
    AlreadyRefused,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionStatus {
    /// 1 for the version started with, +1 per replacement.
    pub version: u64,
    /// Versions refused so far.
    pub refused: u64,
    /// Why the last refused version was refused.
    pub last_refusal: Option<String>,
}

/// The owner of the running mapping version.
#[derive(Debug)]
pub struct MappingVersions {
    mapping: watch::Sender<Arc<CompiledMapping>>,
    status: watch::Sender<VersionStatus>,
    running: Value,
    refused: Option<Value>,
}

impl MappingVersions {
    /// Starts with an already compiled mapping; `raw` is its source, to recognise an unchanged
    /// version.
    pub fn new(raw: Value, compiled: CompiledMapping) -> Self {
        let (mapping, _) = watch::channel(Arc::new(compiled));
        let (status, _) = watch::channel(VersionStatus {
            version: 1,
            ..VersionStatus::default()
        });
        Self {
            mapping,
            status,
            running: raw,
            refused: None,
        }
    }

    /// Starts from a config already parsed (its JSON form identifies the version).
    pub fn from_config(config: &PortAppConfig) -> Result<Self, RefusedMapping> {
        let compiled = CompiledMapping::compile(config)?;
        let raw = serde_json::to_value(config).unwrap_or(Value::Null);
        Ok(Self::new(raw, compiled))
    }

    /// The mapping in force, updated on every replacement.
    pub fn subscribe(&self) -> MappingWatch {
        self.mapping.subscribe()
    }

    pub fn status(&self) -> watch::Receiver<VersionStatus> {
        self.status.subscribe()
    }

    /// Offers a version: it replaces the running one only if it parses and compiles.
    pub fn offer(&mut self, raw: Value) -> Offer {
        if raw == self.running || self.running_equivalent(&raw) {
            return Offer::Unchanged;
        }
        if self.refused.as_ref() == Some(&raw) {
            return Offer::AlreadyRefused;
        }
        match compile_version(&raw) {
            Ok((_, compiled)) => {
                self.mapping.send_replace(Arc::new(compiled));
                self.running = raw;
                self.refused = None;
                let mut version = 0;
                self.status.send_modify(|s| {
                    s.version += 1;
                    version = s.version;
                });
                Offer::Replaced { version }
            }
            Err(e) => {
                let text = e.to_string();
                self.refused = Some(raw);
                self.status.send_modify(|s| {
                    s.refused += 1;
                    s.last_refusal = Some(text);
                });
                Offer::Refused(e)
            }
        }
    }

    /// The running version may have been given as a parsed config: compare in that form.
    fn running_equivalent(&self, raw: &Value) -> bool {
        PortAppConfig::from_json_value(raw.clone())
            .ok()
            .and_then(|c| serde_json::to_value(c).ok())
            .is_some_and(|v| v == self.running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::messages::RawAction;
    use serde_json::json;

    fn config(title: &str) -> Value {
        json!({"resources": [{"kind": "project", "selector": {"query": "true"},
            "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\"",
            "title": title}}}}]})
    }

    fn title(watch: &MappingWatch) -> Value {
        let outcome = watch.borrow().apply(
            "project",
            RawAction::Upsert,
            &json!({"id": "a", "name": "N"}),
        );
        match &outcome.changes[0].op {
            adoport_shared::messages::ChangeOp::Upsert { entity } => entity["title"].clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_version_replaces_a_bad_one_is_refused_with_all_errors() {
        let (_, compiled) = compile_version(&config(".name")).expect("compiles");
        let mut versions = MappingVersions::new(config(".name"), compiled);
        let watch = versions.subscribe();
        assert_eq!(title(&watch), json!("N"));
        assert!(matches!(versions.offer(config(".name")), Offer::Unchanged));

        assert!(matches!(
            versions.offer(config(".name | ascii_downcase")),
            Offer::Replaced { version: 2 }
        ));
        assert_eq!(title(&watch), json!("n"));

        let mut bad = config(".name | nosuch");
        bad["resources"][0]["port"]["entity"]["mappings"]["properties"] =
            json!({"a": ".x | nosuch2"});
        match versions.offer(bad.clone()) {
            Offer::Refused(RefusedMapping::Compile(e)) => assert_eq!(e.errors().len(), 2, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(versions.offer(bad), Offer::AlreadyRefused));
        assert_eq!(title(&watch), json!("n"), "the running version stays");
        let status = versions.status().borrow().clone();
        assert_eq!((status.version, status.refused), (2, 1));
        assert!(status.last_refusal.is_some_and(|r| r.contains("nosuch2")));

        match versions.offer(json!({"resources": [{"kind": 3}]})) {
            Offer::Refused(RefusedMapping::Model(e)) => {
                assert!(e.to_string().contains("resources[0]"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}
