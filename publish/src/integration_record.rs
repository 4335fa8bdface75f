//! The integration record in Port (`/v1/integration/{identifier}`): the fields the Python
//! integration (Ocean) creates it with and keeps current on every start, and the comparison
//! that decides whether a start has to `PATCH` it.
//!
//! Ocean, on every start, reads the record and `PATCH`es `installationAppType`,
//! `changelogDestination`, `actionsProcessingEnabled`, `incrementalSyncEnabled`,
//! `processingMode` and `version` when any of them differs from its settings; with the default
//! resources on it also marks `arePortResourcesInitialized`. An integration the Python
//! integration created (an older `version`, say) is thus brought to what adoport runs. The
//! record holds no secret: nothing here comes from a credential setting.

use adoport_shared::config::{EventListenerType, Settings};
use serde_json::{Map, Value, json};

use crate::client::{COMPATIBLE_INTEGRATION_VERSION, INTEGRATION_TYPE};

/// Ocean's `processingMode` for an integration that maps and writes entities itself
/// (`ocean-core`). adoport always does (it never hands raw data to Port's data-source processor),
/// so it reports that rather than Ocean's default `dsp`, which Ocean itself falls back from
/// when Port's lakehouse is not in use.
pub const PROCESSING_MODE: &str = "ocean-core";

/// Ocean's `createPortResourcesOrigin` when the integration creates the default resources
/// itself, as adoport does.
pub const CREATE_PORT_RESOURCES_ORIGIN: &str = "Default";

/// What the integration record says about this installation.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRecord {
    /// Where Port sends resync requests: `{}` (Port's resync request is polled),
    /// `{"type": "KAFKA"}`, or `{"type": "WEBHOOK", "url": "{app_host}/resync"}`.
    pub changelog_destination: Value,
    /// `OCEAN__ACTIONS_PROCESSOR__ENABLED`.
    pub actions_processing_enabled: bool,
    /// `OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED`, as Ocean reports it.
    pub incremental_sync_enabled: bool,
    /// Whether this start creates the default resources (`OCEAN__INITIALIZE_PORT_RESOURCES`):
    /// the record then says `arePortResourcesInitialized`.
    pub port_resources_initialized: bool,
}

impl Default for IntegrationRecord {
    /// The defaults: POLLING, no actions processor, the default resources on.
    fn default() -> Self {
        Self {
            changelog_destination: json!({}),
            actions_processing_enabled: false,
            incremental_sync_enabled: false,
            port_resources_initialized: true,
        }
    }
}

impl IntegrationRecord {
    /// The record for these settings.
    pub fn for_settings(settings: &Settings) -> Self {
        let listener = &settings.ocean.event_listener;
        let changelog_destination = match listener.kind {
            EventListenerType::Kafka => json!({ "type": "KAFKA" }),
            EventListenerType::Webhook => {
                let host = listener
                    .app_host
                    .as_deref()
                    .or(settings.ocean.base_url.as_deref())
                    .unwrap_or_default()
                    .trim_end_matches('/');
                json!({ "type": "WEBHOOK", "url": format!("{host}/resync") })
            }
            _ => json!({}),
        };
        Self {
            changelog_destination,
            actions_processing_enabled: settings.ocean.actions_processor.enabled,
            incremental_sync_enabled: settings.ocean.integration.incremental_sync_enabled,
            port_resources_initialized: settings.ocean.initialize_port_resources,
        }
    }

    /// The fields Ocean's start-up `PATCH /v1/integration/{id}` sends. `version` is the
    /// Python integration's (see [`COMPATIBLE_INTEGRATION_VERSION`]).
    pub fn fields(&self) -> Value {
        let mut fields = json!({
            "installationAppType": INTEGRATION_TYPE,
            "changelogDestination": self.changelog_destination,
            "actionsProcessingEnabled": self.actions_processing_enabled,
            "incrementalSyncEnabled": self.incremental_sync_enabled,
            "processingMode": PROCESSING_MODE,
            "version": COMPATIBLE_INTEGRATION_VERSION,
        });
        if self.port_resources_initialized
            && let Value::Object(map) = &mut fields
        {
            map.insert("arePortResourcesInitialized".into(), Value::Bool(true));
        }
        fields
    }

    /// The body of `POST /v1/integration` (Ocean's `create_integration`) with `config` as the
    /// mapping.
    pub fn creation_body(&self, identifier: &str, config: Value) -> Value {
        json!({
            "installationId": identifier,
            "installationAppType": INTEGRATION_TYPE,
            "version": COMPATIBLE_INTEGRATION_VERSION,
            "changelogDestination": self.changelog_destination,
            "config": config,
            "actionsProcessingEnabled": self.actions_processing_enabled,
            "incrementalSyncEnabled": self.incremental_sync_enabled,
            "createPortResourcesOrigin": CREATE_PORT_RESOURCES_ORIGIN,
        })
    }

    /// The `PATCH` body that brings `current` (the record Port holds) up to date, or `None`
    /// when every field already matches (Ocean patches only then, and sends all of them).
    pub fn update_for(&self, current: &Value) -> Option<Value> {
        let fields = self.fields();
        let empty = Map::new();
        let wanted = fields.as_object().unwrap_or(&empty);
        let stale = wanted
            .iter()
            .any(|(name, value)| current.get(name) != Some(value));
        stale.then_some(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_the_python_integration_left_is_brought_up_to_date() {
        let record = IntegrationRecord::default();
        let older = json!({
            "installationAppType": "azure-devops",
            "version": "0.1.90",
            "changelogDestination": {},
            "actionsProcessingEnabled": false,
            "incrementalSyncEnabled": false,
        });
        let update = record.update_for(&older).expect("stale");
        assert_eq!(update["version"], COMPATIBLE_INTEGRATION_VERSION);
        assert_eq!(update["processingMode"], PROCESSING_MODE);
        assert_eq!(update["arePortResourcesInitialized"], true);
    }

    #[test]
    fn a_current_record_is_left_alone() {
        let record = IntegrationRecord::default();
        let mut current = record.fields();
        current["identifier"] = json!("my-ado");
        assert_eq!(record.update_for(&current), None);
    }

    #[test]
    fn the_changelog_destination_follows_the_event_listener() {
        let mut settings = Settings::default();
        settings.ocean.event_listener.kind = EventListenerType::Webhook;
        settings.ocean.event_listener.app_host = Some("https://ado.example.com/".into());
        assert_eq!(
            IntegrationRecord::for_settings(&settings).changelog_destination,
            json!({"type": "WEBHOOK", "url": "https://ado.example.com/resync"})
        );
        settings.ocean.event_listener.kind = EventListenerType::Kafka;
        assert_eq!(
            IntegrationRecord::for_settings(&settings).changelog_destination,
            json!({"type": "KAFKA"})
        );
        settings.ocean.event_listener.kind = EventListenerType::Polling;
        assert_eq!(
            IntegrationRecord::for_settings(&settings).changelog_destination,
            json!({})
        );
    }
}
