//! What the transform tests of runaway expressions share: a mapping of kind `thing` with the
//! properties a test gives, the small jq limits that keep their tables fast, and raw events of
//! `thing` items.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::time::Duration;

use adoport_shared::messages::{Origin, RawAction, RawEvent};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_transform::JqLimits;
use serde_json::Value;

/// The field path of the `shaped` property in a [`thing_mapping`].
pub const SHAPED: &str = "resources[0].port.entity.mappings.properties.shaped";

/// A mapping of kind `thing` to blueprint `thing` (identifier `.id | tostring`, every item
/// selected) with `properties`: YAML lines indented by 12 spaces (blank lines are ignored).
pub fn thing_mapping(properties: &str) -> PortAppConfig {
    let yaml = format!(
        r#"
resources:
  - kind: thing
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id | tostring
          blueprint: '"thing"'
          properties:
{properties}"#
    );
    PortAppConfig::from_yaml_str(&yaml).expect("mapping parses")
}

/// Small step, memory and stack limits, and `item_time` per item.
pub fn limits(item_time: Duration) -> JqLimits {
    JqLimits {
        item_time,
        max_steps: 100_000,
        max_memory: 4 * 1024 * 1024,
        max_stack: 1024 * 1024,
    }
}

/// An upsert event of `thing` items from `origin`.
pub fn thing_event(origin: Origin, items: Vec<Value>) -> RawEvent {
    RawEvent::new(
        "thing",
        origin,
        "https://dev.azure.com/o",
        RawAction::Upsert,
        items,
    )
}
