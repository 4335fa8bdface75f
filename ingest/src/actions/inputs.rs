//! Reading an action run's inputs (`payload.integrationActionExecutionProperties`) the way
//! Port sends them: text may come as a number, objects and lists as JSON text, booleans as
//! `"true"`/`"false"`. Each reader names the input in its error, so the person who ran the
//! action knows which field to fix.

use serde_json::{Map, Value};

/// Why the inputs cannot be used; the text is what the person who ran the action reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A non-empty text input (trimmed), or a number as text; `None` when absent or blank.
pub fn text(properties: &Value, name: &str) -> Option<String> {
    match properties.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A required text input; `what` says what it takes.
pub fn required_text(properties: &Value, name: &str, what: &str) -> Result<String, InputError> {
    text(properties, name)
        .ok_or_else(|| InputError(format!("the \"{name}\" input is required: {what}")))
}

/// A required whole number (a number or its text); `what` says where to find it.
pub fn required_number(properties: &Value, name: &str, what: &str) -> Result<u64, InputError> {
    let given = required_text(properties, name, what)?;
    given.parse::<u64>().map_err(|_| {
        InputError(format!(
            "the \"{name}\" input must be a whole number ({what}), not {given:?}"
        ))
    })
}

/// A boolean input: `true`/`false` or their text; `None` when absent.
pub fn boolean(properties: &Value, name: &str) -> Result<Option<bool>, InputError> {
    match properties.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(InputError(format!(
            "the \"{name}\" input must be true or false, not {other}"
        ))),
    }
}

/// A JSON object input (an object, or its JSON text); `None` when absent or blank.
pub fn object(properties: &Value, name: &str) -> Result<Option<Map<String, Value>>, InputError> {
    let bad = |got: String| {
        InputError(format!(
            "the \"{name}\" input must be a JSON object, e.g. {{\"key\": \"value\"}}; got {got}"
        ))
    };
    match properties.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(bad(format!("{s:?}"))),
        },
        Some(other) => Err(bad(other.to_string())),
    }
}

/// A list of texts: a JSON array of strings, its JSON text, or comma-separated text; `None`
/// when absent or empty.
pub fn text_list(properties: &Value, name: &str) -> Result<Option<Vec<String>>, InputError> {
    let bad = |got: &Value| {
        InputError(format!(
            "the \"{name}\" input must be a list of texts (a JSON array or comma-separated text), not {got}"
        ))
    };
    let items: Vec<String> = match properties.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(v)))
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) if s.trim_start().starts_with('[') => {
            match serde_json::from_str::<Value>(s) {
                Ok(parsed @ Value::Array(_)) => {
                    return text_list(&serde_json::json!({ name: parsed }), name);
                }
                _ => return Err(bad(&Value::String(s.clone()))),
            }
        }
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(other) => return Err(bad(other)),
    };
    let items: Vec<String> = items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Ok((!items.is_empty()).then_some(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_come_as_port_sends_them() {
        let p = json!({"n": 12, "t": " x ", "b": "false", "l": "a, b,", "j": "[\"c\"]",
                       "a": ["d"], "o": "{\"k\": 1}", "bad": 3});
        assert_eq!(text(&p, "n").as_deref(), Some("12"));
        assert_eq!(text(&p, "t").as_deref(), Some("x"));
        assert_eq!(required_number(&p, "n", "x"), Ok(12));
        assert!(required_number(&p, "t", "the id").is_err());
        assert_eq!(boolean(&p, "b"), Ok(Some(false)));
        assert!(boolean(&p, "bad").is_err());
        assert_eq!(
            text_list(&p, "l"),
            Ok(Some(vec!["a".to_string(), "b".to_string()]))
        );
        assert_eq!(text_list(&p, "j"), Ok(Some(vec!["c".to_string()])));
        assert_eq!(text_list(&p, "a"), Ok(Some(vec!["d".to_string()])));
        assert_eq!(text_list(&p, "none"), Ok(None));
        assert!(text_list(&p, "bad").is_err());
        assert_eq!(object(&p, "o").map(|o| o.map(|m| m.len())), Ok(Some(1)));
        let missing = required_text(&p, "title", "the pull request's title").expect_err("missing");
        assert!(missing.0.contains("\"title\""), "{missing}");
    }
}
