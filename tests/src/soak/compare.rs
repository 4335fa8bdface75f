//! The soak's verdict on Port: the catalog the scaled-out stack left after the chaos, entity by
//! entity against the catalog a clean one-shot sync of the same Azure DevOps state lands.
//!
//! Compared, for every entity either Port holds: that the other holds it too (by blueprint and
//! identifier), and its `title`, `icon`, `team`, every property, every relation, and its
//! `$datasource` (which integration owns it: after the final resync, every entity the mapping
//! produces must be this integration's again, even one another writer took over meanwhile).
//!
//! Not compared: `$createdAt`, `$updatedAt`, `createdBy`, `updatedBy` — when and by whom the
//! entity was last written, which differs by construction between a stack that ran for
//! minutes and a sync that ran once.
//!
//! Normalised as Port means them (and as publish's own comparison does): a property, relation,
//! title or icon that is `null` equals one that is absent (Port's "unset"); numbers compare by
//! value (`1` and `1.0` are one JSON number); a team is a set of names. Nothing else: nested
//! objects, arrays and strings compare exactly.
//!
//! Entities planted by "another writer" that the mapping never produces are left out of the
//! comparison and checked on their own: reconciliation must never delete what it does not own.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// An entity's key: `(blueprint, identifier)`.
pub type Key = (String, String);

/// What the comparison found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Entities compared (the union of both catalogs, planted foreign entities left out).
    pub compared: usize,
    /// One line per difference, in key order.
    pub differences: Vec<String>,
}

impl Comparison {
    pub fn equal(&self) -> bool {
        self.differences.is_empty()
    }

    /// The first `n` differences, one per line.
    pub fn first(&self, n: usize) -> String {
        let mut text = self
            .differences
            .iter()
            .take(n)
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n");
        if self.differences.len() > n {
            text.push_str(&format!("\n  … and {} more", self.differences.len() - n));
        }
        text
    }
}

fn key_of(entity: &Value) -> Key {
    let text = |name: &str| {
        entity
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("blueprint"), text("identifier"))
}

fn by_key(entities: Vec<Value>) -> BTreeMap<Key, Value> {
    entities.into_iter().map(|e| (key_of(&e), e)).collect()
}

/// Compares the soak's catalog with the clean one, leaving out `foreign` (planted entities of
/// another writer, which only the soak's Port holds).
pub fn compare(soak: Vec<Value>, clean: Vec<Value>, foreign: &BTreeSet<Key>) -> Comparison {
    let soak = by_key(soak);
    let clean = by_key(clean);
    let keys: BTreeSet<&Key> = soak
        .keys()
        .chain(clean.keys())
        .filter(|k| !foreign.contains(*k))
        .collect();
    let mut comparison = Comparison {
        compared: keys.len(),
        differences: Vec::new(),
    };
    for key in keys {
        let (blueprint, identifier) = key;
        let name = format!("{blueprint}/{identifier}");
        match (soak.get(key), clean.get(key)) {
            (Some(_), None) => comparison.differences.push(format!(
                "{name}: in the soak's Port, not in the clean sync's (should have been deleted)"
            )),
            (None, Some(_)) => comparison.differences.push(format!(
                "{name}: missing from the soak's Port (the clean sync has it)"
            )),
            (Some(ours), Some(theirs)) => {
                for difference in entity_differences(ours, theirs) {
                    comparison.differences.push(format!("{name}: {difference}"));
                }
            }
            (None, None) => {}
        }
    }
    comparison
}

/// The fields of two versions of one entity that differ, described.
fn entity_differences(soak: &Value, clean: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["title", "icon", "$datasource"] {
        let (a, b) = (soak.get(field), clean.get(field));
        if !same_value(a, b) {
            out.push(format!("{field} {} ≠ clean {}", show(a), show(b)));
        }
    }
    if team(soak) != team(clean) {
        out.push(format!(
            "team {} ≠ clean {}",
            show(soak.get("team")),
            show(clean.get("team"))
        ));
    }
    for section in ["properties", "relations"] {
        let empty = Map::new();
        let a = soak
            .get(section)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let b = clean
            .get(section)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (x, y) = (a.get(name), b.get(name));
            if !same_value(x, y) {
                out.push(format!("{section}.{name} {} ≠ clean {}", show(x), show(y)));
            }
        }
    }
    out
}

fn show(value: Option<&Value>) -> String {
    let text = value.map_or("(absent)".to_string(), Value::to_string);
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn team(entity: &Value) -> BTreeSet<String> {
    match entity.get("team") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_string))
            .collect(),
        Some(Value::String(name)) => BTreeSet::from([name.clone()]),
        _ => BTreeSet::new(),
    }
}

/// Equality with `null` = absent at the top, numbers by value anywhere.
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => true,
        (Some(a), Some(b)) => same_json(a, b),
        _ => false,
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => i == j,
                (_, _, Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(id: &str, title: &str, properties: Value) -> Value {
        json!({"blueprint": "bp", "identifier": id, "title": title, "team": [],
               "properties": properties, "relations": {"project": "p"},
               "$datasource": "port-ocean/azure-devops/x/azure-devops/exporter",
               "$updatedAt": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn equal_catalogs_compare_equal_with_the_documented_normalisation() {
        let soak = vec![entity("a", "A", json!({"n": 1, "x": null}))];
        let mut clean = vec![entity("a", "A", json!({"n": 1.0}))];
        clean[0]["$updatedAt"] = json!("2027-01-01T00:00:00Z");
        let result = compare(soak, clean, &BTreeSet::new());
        assert!(result.equal(), "{}", result.first(10));
        assert_eq!(result.compared, 1);
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let mut edited = entity("a", "hand-edited", json!({"n": 2}));
        edited["$datasource"] = json!("someone-else");
        let soak = vec![
            edited,
            entity("stale", "S", json!({})),
            entity("f", "F", json!({})),
        ];
        let clean = vec![
            entity("a", "A", json!({"n": 1})),
            entity("new", "N", json!({})),
        ];
        let foreign = BTreeSet::from([("bp".to_string(), "f".to_string())]);
        let result = compare(soak, clean, &foreign);
        assert_eq!(result.compared, 3);
        let text = result.first(10);
        assert!(
            text.contains("bp/a: title \"hand-edited\" ≠ clean \"A\""),
            "{text}"
        );
        assert!(text.contains("bp/a: $datasource"), "{text}");
        assert!(text.contains("bp/a: properties.n 2 ≠ clean 1"), "{text}");
        assert!(
            text.contains("bp/new: missing from the soak's Port"),
            "{text}"
        );
        assert!(
            text.contains("bp/stale: in the soak's Port, not in the clean"),
            "{text}"
        );
        assert!(!text.contains("bp/f"), "{text}");
    }
}
