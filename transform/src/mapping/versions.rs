//! Compiled mapping versions: what the transform workers map an event with.
//!
//! The versions themselves (which one is in force, how a new one replaces it, how a process
//! learns a version a resync names) are [`adoport_shared::mapping_versions`], followed by every
//! role alike. This module compiles each version once, on first use, keeps the last few
//! compiled, and picks the version for each raw event: the one its resync was crawled with
//! (so that a resync is crawled, mapped and reconciled with one mapping), else the one in force.
//! Nothing here does I/O.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_shared::mapping_versions::{MappingVersion, MappingVersions, VERSIONS_KEPT};
use adoport_shared::messages::{MappingVersionId, WriteOptions};
use adoport_shared::port_app_config::{PortAppConfig, PortAppConfigError};
use serde_json::Value;

use super::CompiledMapping;
use crate::error::MappingError;

/// How long an event waits for this process to learn the mapping version its resync names.
pub const CATCH_UP_PATIENCE: Duration = Duration::from_secs(20);

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

/// The validator every role's mapping follower passes to
/// [`MappingVersions::offer`]: a version is accepted only when every expression compiles.
pub fn validate(config: &PortAppConfig) -> Result<(), String> {
    CompiledMapping::compile(config)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The mapping one raw event is mapped with.
#[derive(Clone)]
pub struct InForce {
    pub version: Arc<MappingVersion>,
    pub compiled: Arc<CompiledMapping>,
    /// The version's root flags (`enableMergeEntity`, …), carried by every change.
    pub write: WriteOptions,
}

/// The compiled versions of one transform process.
pub struct CompiledVersions {
    versions: MappingVersions,
    /// Newest last.
    compiled: Mutex<VecDeque<(MappingVersionId, Arc<CompiledMapping>)>>,
    patience: Duration,
}

impl CompiledVersions {
    /// Compiles the version in force (refused at start-up if it does not compile).
    pub fn new(versions: MappingVersions) -> Result<Self, MappingError> {
        let current = versions.current();
        let compiled = Arc::new(CompiledMapping::compile(&current.config)?);
        Ok(Self {
            versions,
            compiled: Mutex::new(VecDeque::from([(current.id.clone(), compiled)])),
            patience: CATCH_UP_PATIENCE,
        })
    }

    /// Waits at most `patience` for an unknown version (tests shorten it).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The versions followed.
    pub fn versions(&self) -> &MappingVersions {
        &self.versions
    }

    /// The version in force, compiled.
    pub fn current(&self) -> InForce {
        self.in_force(self.versions.current())
    }

    /// The mapping for a raw event that names `wanted` (a resync's version): that version,
    /// learnt from the source if this process does not know it yet; else — or when the source
    /// no longer has it — the version in force (the event's progress then names the version
    /// used, and reconciliation refuses to delete on a mixed resync).
    pub async fn for_event(&self, wanted: Option<&MappingVersionId>) -> InForce {
        let Some(wanted) = wanted else {
            return self.current();
        };
        match self.versions.resolve(wanted, self.patience).await {
            Some(version) => self.in_force(version),
            None => {
                let current = self.current();
                tracing::warn!(
                    wanted = %wanted,
                    used = %current.version.id,
                    "a resync names a mapping version this process cannot find (changed again since?); mapping with the version in force, and the resync will not delete anything"
                );
                current
            }
        }
    }

    fn in_force(&self, version: Arc<MappingVersion>) -> InForce {
        let write = version.config.write_options();
        let compiled = self.compiled(&version);
        InForce {
            version,
            compiled,
            write,
        }
    }

    /// Compiles a version once (accepted versions compile: the follower validated them with
    /// the same compiler). Should it fail anyway, the newest compiled one is used.
    fn compiled(&self, version: &MappingVersion) -> Arc<CompiledMapping> {
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, compiled)) = cache.iter().find(|(id, _)| *id == version.id) {
            return compiled.clone();
        }
        match CompiledMapping::compile(&version.config) {
            Ok(compiled) => {
                let compiled = Arc::new(compiled);
                if cache.len() >= VERSIONS_KEPT {
                    cache.pop_front();
                }
                cache.push_back((version.id.clone(), compiled.clone()));
                compiled
            }
            Err(e) => {
                tracing::error!(version = %version.id, error = %e, "an accepted mapping version does not compile here; mapping with the previous one");
                cache
                    .back()
                    .map(|(_, compiled)| compiled.clone())
                    .unwrap_or_else(|| Arc::new(CompiledMapping::empty()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::mapping_versions::Offer;
    use adoport_shared::messages::{ChangeOp, RawAction};
    use serde_json::json;

    fn config(title: &str, merge: bool) -> Value {
        json!({"enableMergeEntity": merge, "resources": [{"kind": "project", "selector": {"query": "true"},
            "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\"",
            "title": title}}}}]})
    }

    fn title(in_force: &InForce) -> Value {
        let outcome = in_force.compiled.apply(
            "project",
            RawAction::Upsert,
            &json!({"id": "a", "name": "N"}),
        );
        match &outcome.changes[0].op {
            ChangeOp::Upsert { entity } => entity["title"].clone(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_event_is_mapped_with_the_version_its_resync_names() {
        let first = PortAppConfig::from_json_value(config(".name", true)).expect("config");
        let versions = MappingVersions::new(first);
        let compiled = CompiledVersions::new(versions.clone()).expect("compiles");
        let old = versions.current().id.clone();
        assert_eq!(title(&compiled.current()), json!("N"));
        assert!(compiled.current().write.merge);

        assert!(matches!(
            versions.offer(config(".name | ascii_downcase", false), validate),
            Offer::Replaced { version: 2, .. }
        ));
        let now = compiled.current();
        assert_eq!(title(&now), json!("n"));
        assert!(!now.write.merge, "write options follow the version");
        let then = compiled.for_event(Some(&old)).await;
        assert_eq!(
            title(&then),
            json!("N"),
            "a resync crawled before keeps its version"
        );
        assert!(then.write.merge);

        match versions.offer(config(".name | nosuch", true), validate) {
            Offer::Refused(reason) => assert!(reason.contains("nosuch"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            title(&compiled.current()),
            json!("n"),
            "the running one stays"
        );
    }
}
