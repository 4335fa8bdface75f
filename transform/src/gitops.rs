//! GitOps entities bypass the mapping: a raw event of the reserved kind
//! [`GITOPS_KIND`](adoport_shared::messages::GITOPS_KIND) carries Port entities read from
//! `port.yml` specs (ingest already parsed them and resolved `file://` values), and each becomes
//! an upsert or delete of its `blueprint` and `identifier` as it is.

use serde_json::Value;

use crate::mapping::{ItemProblem, KindOutcome, MappedChange};
use adoport_shared::messages::{ChangeOp, GITOPS_KIND, RawAction};

/// The outcome of each item of a GitOps raw event (no jq: nothing to evaluate).
pub fn outcomes(event: &adoport_shared::messages::RawEvent) -> Vec<KindOutcome> {
    event
        .items
        .iter()
        .map(|item| outcome(event.action, item))
        .collect()
}

/// The change one spec entity asks for; an entity without a blueprint or identifier is a
/// problem (counted like a mapping's dropped entity), never a silent drop.
pub fn outcome(action: RawAction, item: &Value) -> KindOutcome {
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let item_id = item
        .get("identifier")
        .map(|v| v.to_string())
        .unwrap_or_else(|| "<no identifier>".into());
    let Some(blueprint) = text("blueprint") else {
        return KindOutcome::failed(ItemProblem::EmptyBlueprint {
            resource_index: 0,
            kind: GITOPS_KIND.into(),
            item_id,
            found: item
                .get("blueprint")
                .map_or("nothing".into(), |v| v.to_string()),
        });
    };
    let Some(identifier) = text("identifier") else {
        return KindOutcome::failed(ItemProblem::EmptyIdentifier {
            resource_index: 0,
            kind: GITOPS_KIND.into(),
            item_id,
        });
    };
    let op = match action {
        RawAction::Delete => ChangeOp::Delete,
        RawAction::Upsert => {
            let mut entity = item.clone();
            if let Value::Object(map) = &mut entity {
                // The blueprint is the route; `__…` keys are ingest's stamps, not entity fields.
                map.retain(|key, _| key != "blueprint" && !key.starts_with("__"));
            }
            ChangeOp::Upsert { entity }
        }
    };
    KindOutcome {
        changes: vec![MappedChange {
            blueprint,
            identifier,
            resource_index: 0,
            op,
        }],
        problems: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_entities_pass_through_as_they_are() {
        let item = json!({"identifier": "svc", "blueprint": "service", "title": "Svc",
            "properties": {"tier": 1}, "relations": {"team": "a"}});
        let upsert = outcome(RawAction::Upsert, &item);
        assert_eq!(upsert.changes[0].blueprint, "service");
        assert_eq!(
            upsert.changes[0].op,
            ChangeOp::Upsert {
                entity: json!({"identifier": "svc", "title": "Svc",
                    "properties": {"tier": 1}, "relations": {"team": "a"}})
            }
        );
        assert_eq!(
            outcome(RawAction::Delete, &item).changes[0].op,
            ChangeOp::Delete
        );
        let broken = outcome(RawAction::Upsert, &json!({"identifier": "x"}));
        assert!(broken.changes.is_empty());
        assert!(broken.problems[0].is_item_failure());
    }
}
