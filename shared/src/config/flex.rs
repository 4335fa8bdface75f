//! Lenient scalar readers for settings that arrive as environment strings.
//!
//! Environment variables are strings, and the Python integration (pydantic) reads `"true"`,
//! `"1"`, `"60"` into booleans and numbers, and a list from a JSON array or a comma-separated
//! string. These readers accept both the typed value (from JSON) and its string form, so
//! `OCEAN__EVENT_LISTENER='{"type":"ONCE"}'` and `OCEAN__EVENT_LISTENER__TYPE=ONCE` end up the same.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// A string; numbers and booleans are accepted as their text.
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(de::Error::custom(format!(
            "expected a string, found {}",
            describe(&other)
        ))),
    }
}

/// The value of an optional setting: `None` when it is missing, null or an empty string.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(value) => Ok(Some(value)),
    }
}

/// An optional string; an empty string counts as unset.
pub fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    present(deserializer)?
        .map(|value| string(value).map_err(de::Error::custom))
        .transpose()
}

fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_u64().and_then(|n| match n {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }),
        _ => None,
    }
}

/// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(deserializer)?;
    parse_bool(&value).ok_or_else(|| {
        de::Error::custom(format!(
            "expected a boolean (true or false), found {}",
            describe(&value)
        ))
    })
}

fn parse_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A whole number ≥ 0 read from `value`.
fn whole<E: de::Error>(value: &Value) -> Result<u64, E> {
    parse_u64(value).ok_or_else(|| {
        E::custom(format!(
            "expected a whole number, found {}",
            describe(value)
        ))
    })
}

/// A whole number ≥ 0.
pub fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole(&Value::deserialize(deserializer)?)
}

/// An optional whole number; an empty string counts as unset.
pub fn opt_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    present(deserializer)?
        .map(|value| whole(&value))
        .transpose()
}

/// A list of strings: a JSON array, or a comma-separated string (blank entries dropped).
pub fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| string(item).map_err(de::Error::custom))
            .collect(),
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.starts_with('[') {
                let items: Vec<Value> = serde_json::from_str(trimmed).map_err(|e| {
                    de::Error::custom(format!("expected a JSON array of strings: {e}"))
                })?;
                return items
                    .into_iter()
                    .map(|item| string(item).map_err(de::Error::custom))
                    .collect();
            }
            Ok(trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect())
        }
        Some(other) => Err(de::Error::custom(format!(
            "expected a list (JSON array or comma-separated), found {}",
            describe(&other)
        ))),
    }
}

/// Minutes between runs, as Ocean's `parse_interval_to_minutes` reads them: a whole number of
/// minutes (`15`, `"15"`), or a number with a unit (`"30m"`, `"1h"`, `"90s"`, `"1d"`, `"1w"`);
/// missing, null or blank is 15. Which values are allowed is checked at validation.
pub fn interval_minutes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let Some(value) = present(deserializer)? else {
        return Ok(15);
    };
    if let Some(minutes) = parse_u64(&value) {
        return Ok(minutes);
    }
    let text = match &value {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => String::new(),
    };
    let seconds_per_unit = |unit: char| match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3_600),
        'd' => Some(86_400),
        'w' => Some(604_800),
        _ => None,
    };
    let parsed = text.chars().last().and_then(|unit| {
        let count: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
        Some(count.checked_mul(seconds_per_unit(unit)?)? / 60)
    });
    parsed.ok_or_else(|| {
        de::Error::custom(format!(
            "expected minutes (15, 30 or 60) or a duration such as \"30m\" or \"1h\", found {}",
            describe(&value)
        ))
    })
}
