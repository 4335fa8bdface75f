//! The "changed since" filters of Azure DevOps lists, as the incremental sync uses them: a
//! query parameter holding an ISO 8601 time keeps the items whose time field is at or after it
//! (`minTime` on builds' `queueTime` with `queryOrder=queueTimeDescending`, `minModifiedTime`
//! on deployments' `lastModifiedOn`,
//! `criteria.modifiedSince` on alerts' `lastSeenDate`), and the test runs' required
//! `minLastUpdatedDate`/`maxLastUpdatedDate` pair, at most 7 days apart. A time that does not
//! parse is 400, as Azure DevOps answers it.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::error::AdoError;

/// The time in query parameter `name`, if given.
pub(super) fn time_param(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, AdoError> {
    let Some(text) = query.get(name) else {
        return Ok(None);
    };
    parse(text).map(Some).ok_or_else(|| {
        AdoError::bad_argument(format!(
            "The value '{text}' is not valid for parameter '{name}'."
        ))
    })
}

/// An ISO 8601 time as Azure DevOps reads it (with an offset, or UTC without one).
pub(super) fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// Keeps the items whose `field` is at or after the time in parameter `name` (all of them
/// without the parameter).
pub(super) fn keep_since(
    values: Vec<Value>,
    query: &HashMap<String, String>,
    name: &str,
    field: &str,
) -> Result<Vec<Value>, AdoError> {
    let Some(since) = time_param(query, name)? else {
        return Ok(values);
    };
    Ok(values
        .into_iter()
        .filter(|item| {
            item.get(field)
                .and_then(Value::as_str)
                .and_then(parse)
                .is_some_and(|t| t >= since)
        })
        .collect())
}

/// From and to, both included.
pub(super) type Window = (DateTime<Utc>, DateTime<Utc>);

/// The test runs' update window: both ends or neither, at most 7 days apart.
pub(super) fn update_window(query: &HashMap<String, String>) -> Result<Option<Window>, AdoError> {
    let min = time_param(query, "minLastUpdatedDate")?;
    let max = time_param(query, "maxLastUpdatedDate")?;
    match (min, max) {
        (None, None) => Ok(None),
        (Some(min), Some(max)) if max >= min && max - min <= Duration::days(7) => {
            Ok(Some((min, max)))
        }
        (Some(_), Some(_)) => Err(AdoError::bad_argument(
            "The date range between minLastUpdatedDate and maxLastUpdatedDate must be 7 days or less.",
        )),
        _ => Err(AdoError::bad_argument(
            "Both minLastUpdatedDate and maxLastUpdatedDate must be specified.",
        )),
    }
}
