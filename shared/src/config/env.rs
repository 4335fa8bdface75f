//! Environment variables → a settings tree, the way Ocean (pydantic-settings) reads them.
//!
//! `PREFIX__A__B_C=v` becomes `{"a": {"b_c": "v"}}`: segments split on `__`, lower-cased.
//! A value that is a JSON object is parsed and merged, so `OCEAN__EVENT_LISTENER='{"type":"ONCE"}'`
//! and `OCEAN__EVENT_LISTENER__TYPE=ONCE` give the same tree. Where both forms set the same
//! key, the more specific variable (more segments) wins. Every other value stays a string;
//! the typed settings read it leniently (see `flex`).

use serde_json::{Map, Value};

use super::ConfigError;

/// Builds the tree of every variable that starts with `{prefix}__` (case-insensitive).
pub fn tree<I>(prefix: &str, vars: I) -> Result<Value, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let head = format!("{}__", prefix.to_ascii_uppercase());
    let mut entries: Vec<(Vec<String>, String, String)> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let upper = name.to_ascii_uppercase();
            let rest = upper.strip_prefix(&head)?;
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return None;
            }
            Some((path, name, value))
        })
        .collect();
    // Shallow first, so that a specific variable overrides a key of a JSON object above it.
    entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));

    let mut root = Value::Object(Map::new());
    for (path, name, raw) in entries {
        let trimmed = raw.trim();
        let value = if trimmed.starts_with('{') {
            serde_json::from_str::<Value>(trimmed).map_err(|e| ConfigError::Invalid {
                setting: name.clone(),
                problem: format!("looks like a JSON object but does not parse: {e}"),
            })?
        } else {
            Value::String(raw)
        };
        insert(&mut root, &path, value).map_err(|conflict| ConfigError::Invalid {
            setting: name,
            problem: format!(
                "conflicts with {head}{}, which sets the same setting to a plain value",
                conflict.to_ascii_uppercase()
            ),
        })?;
    }
    Ok(root)
}

/// Inserts `value` at `path`, merging objects. Err(path prefix) when a plain value is in the way.
fn insert(node: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        merge(node, value);
        return Ok(());
    };
    let Value::Object(map) = node else {
        return Err(String::new());
    };
    let child = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if rest.is_empty() {
        merge(child, value);
        return Ok(());
    }
    if !child.is_object() {
        return Err(first.clone());
    }
    insert(child, rest, value).map_err(|inner| {
        if inner.is_empty() {
            first.clone()
        } else {
            format!("{first}__{inner}")
        }
    })
}

/// Objects merge key by key; anything else replaces.
fn merge(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, v) in from {
                merge(into.entry(key).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;
    use serde_json::json;

    #[test]
    fn nested_names_become_objects() {
        let t = tree(
            "OCEAN",
            vars(&[
                ("OCEAN__PORT__CLIENT_ID", "id"),
                (
                    "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
                    "https://dev.azure.com/x",
                ),
                ("PATH", "/bin"),
                ("OCEANX__NOPE", "1"),
            ]),
        )
        .expect("tree");
        assert_eq!(
            t,
            json!({"port": {"client_id": "id"}, "integration": {"config": {"organization_url": "https://dev.azure.com/x"}}})
        );
    }

    #[test]
    fn json_object_and_nested_form_are_equal() {
        let a = tree(
            "OCEAN",
            vars(&[("OCEAN__EVENT_LISTENER", r#"{"type":"ONCE"}"#)]),
        )
        .expect("a");
        let b = tree("OCEAN", vars(&[("OCEAN__EVENT_LISTENER__TYPE", "ONCE")])).expect("b");
        assert_eq!(a, b);
    }

    #[test]
    fn specific_variable_overrides_json_object() {
        let t = tree(
            "OCEAN",
            vars(&[
                ("OCEAN__EVENT_LISTENER__TYPE", "POLLING"),
                (
                    "OCEAN__EVENT_LISTENER",
                    r#"{"type":"ONCE","resync_on_start":true}"#,
                ),
            ]),
        )
        .expect("tree");
        assert_eq!(
            t,
            json!({"event_listener": {"type": "POLLING", "resync_on_start": true}})
        );
    }

    #[test]
    fn bad_json_and_conflicts_name_the_variable() {
        let err =
            tree("OCEAN", vars(&[("OCEAN__EVENT_LISTENER", "{type: ONCE}")])).expect_err("bad");
        assert!(err.to_string().contains("OCEAN__EVENT_LISTENER"), "{err}");
        let err = tree(
            "OCEAN",
            vars(&[("OCEAN__PORT", "x"), ("OCEAN__PORT__CLIENT_ID", "id")]),
        )
        .expect_err("conflict");
        let text = err.to_string();
        assert!(
            text.contains("OCEAN__PORT__CLIENT_ID") && text.contains("OCEAN__PORT"),
            "{text}"
        );
    }
}
