//! Whether Port already holds what an upsert would write: the comparison of the entity a resync
//! produced with Port's current entity, as Port's search returns it.
//!
//! The verdict is conservative. "Holds" only when the write surely would change nothing; in
//! every doubt the entity is written. A false "differs" costs one write, a false "holds" would
//! leave Port wrong until the next resync, so nothing is normalised unless Port is known to
//! normalise it:
//!
//! - **Write semantics.** With merge (`enableMergeEntity`, the default), a write changes only
//!   the fields it sends: only those must match. With replace, the write makes Port's entity
//!   equal to the body: fields we do not send (title, icon, team, properties, relations) must
//!   be absent or empty in Port.
//! - **`team`** is stored as an array of team names (the entity JSON's `team` is
//!   `Array<String>`): a string `"a"` is `["a"]`, `null` is `[]`, and the order of names does
//!   not matter (the Python integration compares sorted teams, `are_teams_different`).
//! - **`null` and absent** are the same for `title`, `icon`, a property and a relation: Port
//!   answers unset ones as `null` or leaves them out (the Python integration drops `None` values
//!   Port does not hold before comparing, `are_entities_fields_equal`). For a relation, `[]` is
//!   also empty (no related entity).
//! - **Numbers** are compared by value: `1` and `1.0` are the same JSON number to Port (jaq
//!   prints integral results as `1.0`, Port answers `1`). Two integers are compared exactly,
//!   never through a float, so distinct large integers never look equal.
//! - Everything else is compared exactly: strings, booleans, arrays (in order, relation arrays
//!   included), and objects (key order aside).
//!
//! An upsert that names its identifier, a relation or its team by a search query (an object
//! instead of a string) cannot be compared: Port resolves the query when it writes, so it is
//! always written, as the Python integration does (`is_using_search_identifier` /
//! `is_using_search_relation`). So is a body with a field this module does not know.
//!
//! Ownership is not decided here: the read only returns entities whose `$datasource` is ours
//! ([`crate::client::PortClient::current_entities`]), so an entity another writer owns is
//! "missing" and written, which makes it ours.

use serde_json::{Map, Value};

/// The top-level fields of an upsert body this module knows how to compare.
const KNOWN_FIELDS: [&str; 7] = [
    "identifier",
    "title",
    "icon",
    "team",
    "properties",
    "relations",
    "blueprint",
];

/// Whether `ours` can be compared with Port's entity at all (see the module documentation).
pub fn comparable(ours: &Value) -> bool {
    let Value::Object(body) = ours else {
        return false;
    };
    let plain_relations = match body.get("relations") {
        None | Some(Value::Null) => true,
        Some(Value::Object(relations)) => relations.values().all(|target| match target {
            Value::Null | Value::String(_) => true,
            Value::Array(ids) => ids.iter().all(Value::is_string),
            _ => false,
        }),
        Some(_) => false,
    };
    let plain_team = match body.get("team") {
        None | Some(Value::Null | Value::String(_)) => true,
        Some(Value::Array(names)) => names.iter().all(Value::is_string),
        Some(_) => false,
    };
    let plain_properties = matches!(
        body.get("properties"),
        None | Some(Value::Null | Value::Object(_))
    );
    body.get("identifier").is_some_and(Value::is_string)
        && plain_relations
        && plain_team
        && plain_properties
        && body.keys().all(|k| KNOWN_FIELDS.contains(&k.as_str()))
}

/// Whether writing `ours` (an upsert body) with the given semantics would leave `theirs` (Port's
/// entity of the same blueprint and identifier) as it is.
pub fn port_holds(ours: &Value, theirs: &Value, merge: bool) -> bool {
    if !comparable(ours) {
        return false;
    }
    let (Value::Object(ours), Value::Object(theirs)) = (ours, theirs) else {
        return false;
    };
    if ours.get("identifier") != theirs.get("identifier") {
        return false;
    }
    if let Some(blueprint) = ours.get("blueprint")
        && Some(blueprint) != theirs.get("blueprint")
    {
        return false;
    }
    // With merge, only the fields we send change; with replace, every field does.
    let sent = |field: &str| !merge || ours.contains_key(field);
    let scalar_fields_hold = ["title", "icon"].into_iter().all(|field| {
        !sent(field) || same_or_both_empty(ours.get(field), theirs.get(field), is_null)
    });
    let team_holds = !sent("team") || teams(ours.get("team")) == teams(theirs.get("team"));
    scalar_fields_hold
        && team_holds
        && fields_hold(
            ours.get("properties"),
            theirs.get("properties"),
            merge,
            is_null,
        )
        && fields_hold(
            ours.get("relations"),
            theirs.get("relations"),
            merge,
            is_empty_relation,
        )
}

/// Properties or relations: every one we send holds in Port; with replace, every other one
/// Port has is empty.
fn fields_hold(
    ours: Option<&Value>,
    theirs: Option<&Value>,
    merge: bool,
    empty: fn(&Value) -> bool,
) -> bool {
    let none = Map::new();
    let (Some(ours), Some(theirs)) = (as_map(ours, &none), as_map(theirs, &none)) else {
        return false;
    };
    let sent_hold = ours
        .iter()
        .all(|(name, value)| same_or_both_empty(Some(value), theirs.get(name), empty));
    let others_empty = merge
        || theirs
            .iter()
            .all(|(name, value)| ours.contains_key(name) || empty(value));
    sent_hold && others_empty
}

/// An object field (`properties`, `relations`) as a map; `none` when unset, `None` when it is
/// not an object.
fn as_map<'a>(
    value: Option<&'a Value>,
    none: &'a Map<String, Value>,
) -> Option<&'a Map<String, Value>> {
    match value {
        None | Some(Value::Null) => Some(none),
        Some(Value::Object(map)) => Some(map),
        Some(_) => None,
    }
}

/// Equal values, or both empty (absent counts as empty).
fn same_or_both_empty(
    ours: Option<&Value>,
    theirs: Option<&Value>,
    empty: fn(&Value) -> bool,
) -> bool {
    match (ours, theirs) {
        (Some(a), Some(b)) => same_value(a, b) || (empty(a) && empty(b)),
        (Some(v), None) | (None, Some(v)) => empty(v),
        (None, None) => true,
    }
}

fn is_null(value: &Value) -> bool {
    value.is_null()
}

/// A relation with no related entity: `null` or `[]`.
fn is_empty_relation(value: &Value) -> bool {
    value.is_null() || value.as_array().is_some_and(Vec::is_empty)
}

/// A team value as Port stores it: the sorted team names (`None` when it is not a team value).
fn teams(value: Option<&Value>) -> Option<Vec<&str>> {
    let mut names = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()?,
        Some(_) => return None,
    };
    names.sort_unstable();
    Some(names)
}

/// JSON equality with numbers compared by value (see the module documentation).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| same_value(x, y)))
        }
        _ => a == b,
    }
}

fn same_number(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    let integer = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => a == b,
        // A float on either side: compare by value (an integral float equals its integer).
        _ => matches!((x.as_f64(), y.as_f64()), (Some(a), Some(b)) if a == b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MERGE: bool = true;
    const REPLACE: bool = false;

    /// Port's answer for an entity, as its search returns it.
    fn port(fields: Value) -> Value {
        let mut entity = json!({
            "identifier": "e1", "blueprint": "bp", "title": "E1", "team": [],
            "properties": {"a": 1, "b": "x"}, "relations": {"project": "p1"},
            "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z",
            "createdBy": "x", "updatedBy": "x",
        });
        if let (Value::Object(entity), Value::Object(fields)) = (&mut entity, fields) {
            entity.extend(fields);
        }
        entity
    }

    /// One row: what we send, what Port holds, the semantics, the expected verdict.
    struct Row {
        name: &'static str,
        ours: Value,
        theirs: Value,
        merge: bool,
        holds: bool,
    }

    fn row(name: &'static str, ours: Value, theirs: Value, merge: bool, holds: bool) -> Row {
        Row {
            name,
            ours,
            theirs,
            merge,
            holds,
        }
    }

    fn ours(fields: Value) -> Value {
        let mut entity = json!({
            "identifier": "e1", "title": "E1",
            "properties": {"a": 1, "b": "x"}, "relations": {"project": "p1"},
        });
        if let (Value::Object(entity), Value::Object(fields)) = (&mut entity, fields) {
            entity.extend(fields);
        }
        entity
    }

    fn without(mut entity: Value, field: &str) -> Value {
        if let Value::Object(map) = &mut entity {
            map.remove(field);
        }
        entity
    }

    #[test]
    fn table() {
        let rows = [
            row("identical", ours(json!({})), port(json!({})), MERGE, true),
            row(
                "identical, replace",
                ours(json!({})),
                port(json!({})),
                REPLACE,
                true,
            ),
            row(
                "a property differs",
                ours(json!({"properties": {"a": 2, "b": "x"}})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "the title differs",
                ours(json!({"title": "new"})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "another identifier",
                ours(json!({"identifier": "e2"})),
                port(json!({})),
                MERGE,
                false,
            ),
            // Merge: what we do not send may differ.
            row(
                "merge: Port has a property we do not send",
                ours(json!({})),
                port(json!({"properties": {"a": 1, "b": "x", "c": true}})),
                MERGE,
                true,
            ),
            row(
                "merge: Port has a title we do not send",
                without(ours(json!({})), "title"),
                port(json!({"title": "set by hand"})),
                MERGE,
                true,
            ),
            // Replace: what we do not send must be empty in Port.
            row(
                "replace: Port has a property we do not send",
                ours(json!({})),
                port(json!({"properties": {"a": 1, "b": "x", "c": true}})),
                REPLACE,
                false,
            ),
            row(
                "replace: Port has it as null",
                ours(json!({})),
                port(json!({"properties": {"a": 1, "b": "x", "c": null}})),
                REPLACE,
                true,
            ),
            row(
                "replace: Port has a relation we do not send",
                ours(json!({})),
                port(json!({"relations": {"project": "p1", "owner": "u1"}})),
                REPLACE,
                false,
            ),
            row(
                "replace: Port has an empty relation we do not send",
                ours(json!({})),
                port(json!({"relations": {"project": "p1", "owner": null, "tags": []}})),
                REPLACE,
                true,
            ),
            row(
                "replace: Port has a team we do not send",
                ours(json!({})),
                port(json!({"team": ["a"]})),
                REPLACE,
                false,
            ),
            row(
                "replace: Port has an icon we do not send",
                ours(json!({})),
                port(json!({"icon": "Git"})),
                REPLACE,
                false,
            ),
            // Team: Port stores an array.
            row(
                "team string vs array",
                ours(json!({"team": "a"})),
                port(json!({"team": ["a"]})),
                MERGE,
                true,
            ),
            row(
                "team order",
                ours(json!({"team": ["b", "a"]})),
                port(json!({"team": ["a", "b"]})),
                MERGE,
                true,
            ),
            row(
                "team differs",
                ours(json!({"team": "a"})),
                port(json!({"team": ["a", "b"]})),
                MERGE,
                false,
            ),
            row(
                "team null vs empty",
                ours(json!({"team": null})),
                port(json!({"team": []})),
                MERGE,
                true,
            ),
            row(
                "team by search query",
                ours(json!({"team": {"combinator": "and", "rules": []}})),
                port(json!({})),
                MERGE,
                false,
            ),
            // Null and absent.
            row(
                "a null property Port leaves out",
                ours(json!({"properties": {"a": 1, "b": "x", "c": null}})),
                port(json!({})),
                MERGE,
                true,
            ),
            row(
                "a property Port lacks",
                ours(json!({"properties": {"a": 1, "b": "x", "c": 0}})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "a null title vs Port's null",
                ours(json!({"title": null})),
                port(json!({"title": null})),
                MERGE,
                true,
            ),
            row(
                "a null title vs Port's title",
                ours(json!({"title": null})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "an empty string is not null",
                ours(json!({"properties": {"a": 1, "b": ""}})),
                port(json!({"properties": {"a": 1, "b": null}})),
                MERGE,
                false,
            ),
            // Relations.
            row(
                "relation array in order",
                ours(json!({"relations": {"project": ["p1", "p2"]}})),
                port(json!({"relations": {"project": ["p1", "p2"]}})),
                MERGE,
                true,
            ),
            row(
                "relation array in another order",
                ours(json!({"relations": {"project": ["p2", "p1"]}})),
                port(json!({"relations": {"project": ["p1", "p2"]}})),
                MERGE,
                false,
            ),
            row(
                "relation string vs one-element array",
                ours(json!({"relations": {"project": "p1"}})),
                port(json!({"relations": {"project": ["p1"]}})),
                MERGE,
                false,
            ),
            row(
                "relation null vs empty array",
                ours(json!({"relations": {"project": null}})),
                port(json!({"relations": {"project": []}})),
                MERGE,
                true,
            ),
            row(
                "relation null vs Port's target",
                ours(json!({"relations": {"project": null}})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "relation by search query",
                ours(json!({"relations": {"project": {"combinator": "and", "rules": []}}})),
                port(json!({})),
                MERGE,
                false,
            ),
            // Numbers.
            row(
                "1 vs 1.0",
                ours(json!({"properties": {"a": 1.0, "b": "x"}})),
                port(json!({})),
                MERGE,
                true,
            ),
            row(
                "1.5 vs 1",
                ours(json!({"properties": {"a": 1.5, "b": "x"}})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "large integers differ by one",
                ours(json!({"properties": {"a": 9_007_199_254_740_993_u64, "b": "x"}})),
                port(json!({"properties": {"a": 9_007_199_254_740_992_u64, "b": "x"}})),
                MERGE,
                false,
            ),
            row(
                "numbers inside arrays and objects",
                ours(json!({"properties": {"a": 1, "b": "x", "c": [1.0, {"d": 2.0}]}})),
                port(json!({"properties": {"a": 1, "b": "x", "c": [1, {"d": 2}]}})),
                MERGE,
                true,
            ),
            row(
                "a number is not its text",
                ours(json!({"properties": {"a": "1", "b": "x"}})),
                port(json!({})),
                MERGE,
                false,
            ),
            // Nested objects: exact, key order aside.
            row(
                "object key order",
                ours(json!({"properties": {"a": 1, "b": "x", "c": {"y": 1, "z": 2}}})),
                port(json!({"properties": {"a": 1, "b": "x", "c": {"z": 2, "y": 1}}})),
                MERGE,
                true,
            ),
            row(
                "a nested null is not absent",
                ours(json!({"properties": {"a": 1, "b": "x", "c": {"y": null}}})),
                port(json!({"properties": {"a": 1, "b": "x", "c": {}}})),
                MERGE,
                false,
            ),
            // Shapes we do not compare.
            row(
                "identifier by search query",
                ours(json!({"identifier": {"combinator": "and", "rules": []}})),
                port(json!({})),
                MERGE,
                false,
            ),
            row(
                "an unknown field",
                ours(json!({"rank": 3})),
                port(json!({"rank": 3})),
                MERGE,
                false,
            ),
            row(
                "the blueprint field matches",
                ours(json!({"blueprint": "bp"})),
                port(json!({})),
                MERGE,
                true,
            ),
            row(
                "the blueprint field differs",
                ours(json!({"blueprint": "other"})),
                port(json!({})),
                MERGE,
                false,
            ),
        ];
        let mut wrong = Vec::new();
        for r in &rows {
            if port_holds(&r.ours, &r.theirs, r.merge) != r.holds {
                wrong.push(r.name);
            }
        }
        assert!(wrong.is_empty(), "wrong verdicts: {wrong:?}");
    }

    #[test]
    fn search_queries_and_odd_shapes_are_not_comparable() {
        assert!(comparable(&ours(json!({}))));
        assert!(!comparable(&json!("e1")));
        assert!(!comparable(&ours(json!({"properties": [1]}))));
        assert!(!comparable(&ours(json!({"relations": {"p": [1]}}))));
        assert!(!comparable(&ours(json!({"team": [1]}))));
        assert!(comparable(&json!({"identifier": "e1"})));
    }
}
