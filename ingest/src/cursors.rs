//! Incremental sync cursors, kept in Port where Ocean keeps them: one per `(kind, index)` —
//! the kind and the position of its resource in the mapping — on
//! `/v1/integration/{identifier}/cursor?kind=&index=` (`GET` → `{cursor: {primary}}` or no
//! cursor; `PUT {primary}` to update, `POST` to create when the `PUT` answers 404), `primary`
//! being the ISO 8601 time up to which the resource was synced.
//!
//! Ingest reads and writes them itself, not through publish: a cursor is read before the crawl
//! and advanced right after the crawl of its kind succeeded, in the same process (see
//! docs/design.md, "Incremental sync"). They are not catalog writes.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use adoport_shared::config::PortAccess;
use adoport_shared::metrics::HttpStats;
use adoport_shared::port::answer::status_error;
use adoport_shared::port::retry::classify_error;
use adoport_shared::port::{Next, PortApi, PortError, RetryPolicy};

/// A cursor call is retried a few times on what the shared classifier calls transient (429,
/// 5xx, no answer), never sooner than Port's `Retry-After` (up to a minute).
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    min_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(5),
    max_retry_after: Duration::from_secs(60),
    retry_window: Duration::ZERO,
};

/// A cursor that could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("incremental sync cursor of kind {kind} (resource {index}): {source}")]
    Port {
        kind: String,
        index: usize,
        #[source]
        source: Box<PortError>,
    },
    #[error(
        "incremental sync cursor of kind {kind} (resource {index}) holds {value:?}, which is not an ISO 8601 time; fix or delete it in Port"
    )]
    Unreadable {
        kind: String,
        index: usize,
        value: String,
    },
    #[error("could not set up the Port client for incremental sync cursors: {0}")]
    Setup(String),
}

/// The time as Ocean writes it (Python's `isoformat()` of a UTC time: `+00:00`, microseconds
/// when there are any).
pub fn iso(time: DateTime<Utc>) -> String {
    let format = if time.timestamp_subsec_micros() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    time.to_rfc3339_opts(format, false)
}

/// The integration's cursors in Port.
#[derive(Clone, Debug)]
pub struct CursorStore {
    api: PortApi,
    stop: CancellationToken,
}

impl CursorStore {
    pub fn new(access: &PortAccess, stop: CancellationToken) -> Result<Self, CursorError> {
        let api = PortApi::new(access, None, HttpStats::default())
            .map_err(|e| CursorError::Setup(e.to_string()))?;
        Ok(Self { api, stop })
    }

    /// The stored cursor of `(kind, index)`, `None` before its first save.
    pub async fn get(
        &self,
        kind: &str,
        index: usize,
    ) -> Result<Option<DateTime<Utc>>, CursorError> {
        let (status, body) = self.call(Method::GET, kind, index, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let primary = body
            .get("cursor")
            .and_then(|cursor| cursor.get("primary"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        let Some(primary) = primary else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(primary)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| CursorError::Unreadable {
                kind: kind.to_string(),
                index,
                value: primary.to_string(),
            })
    }

    /// Saves `value` as the cursor of `(kind, index)`: `PUT`, and `POST` when Port has none yet.
    pub async fn save(
        &self,
        kind: &str,
        index: usize,
        value: DateTime<Utc>,
    ) -> Result<(), CursorError> {
        let body = json!({ "primary": iso(value) });
        let (status, _) = self.call(Method::PUT, kind, index, Some(&body)).await?;
        if status == StatusCode::NOT_FOUND {
            let (status, answer) = self.call(Method::POST, kind, index, Some(&body)).await?;
            if status == StatusCode::NOT_FOUND {
                return Err(CursorError::Port {
                    kind: kind.to_string(),
                    index,
                    source: Box::new(PortError::InvalidResponse {
                        operation: "POST /v1/integration/{id}/cursor".into(),
                        detail: format!(
                            "404 on creating the cursor: {}",
                            adoport_shared::port::error::excerpt(&answer.to_string())
                        ),
                    }),
                });
            }
        }
        Ok(())
    }

    /// One cursor call, retried on transient answers; a success or a 404 is returned with its
    /// JSON body, any other status is the error.
    async fn call(
        &self,
        method: Method,
        kind: &str,
        index: usize,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), CursorError> {
        let failed = |source| CursorError::Port {
            kind: kind.to_string(),
            index,
            source: Box::new(source),
        };
        let identifier = self.api.integration_identifier().to_string();
        let url = self
            .api
            .url(&["v1", "integration", &identifier, "cursor"])
            .map_err(failed)?;
        let operation = format!("{method} /v1/integration/{identifier}/cursor");
        let index_text = index.to_string();
        let query = [("kind", kind), ("index", index_text.as_str())];
        let mut schedule = RETRY.schedule();
        loop {
            let attempt = async {
                let response = self
                    .api
                    .send(&operation, |http| {
                        let request = http.request(method.clone(), url.clone()).query(&query);
                        match body {
                            Some(body) => request.json(body),
                            None => request,
                        }
                    })
                    .await?;
                let status = response.status();
                if status.is_success() || status == StatusCode::NOT_FOUND {
                    let text = response.text().await.unwrap_or_default();
                    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Ok((status, json));
                }
                Err(status_error(&operation, response).await)
            };
            let error = match attempt.await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let decision = classify_error(&error);
            let next = schedule
                .wait_next(&decision, &self.stop, |delay, attempt| {
                    tracing::warn!(
                        kind, index, error = %error, attempt, delay_ms = delay.as_millis() as u64,
                        "Port cursor call failed; retrying"
                    );
                })
                .await;
            if next != Next::Again {
                return Err(failed(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_written_as_python_writes_them() {
        let whole = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 5).unwrap();
        assert_eq!(iso(whole), "2026-03-01T12:00:05+00:00");
        let fraction = whole + chrono::Duration::microseconds(1500);
        assert_eq!(iso(fraction), "2026-03-01T12:00:05.001500+00:00");
    }
}
