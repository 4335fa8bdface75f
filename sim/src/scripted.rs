//! Scripted answers: "the next N requests on this route get these answers", for fault tests.
//!
//! A scripted answer replaces the simulator's own answer for one request on one route template.
//! Each simulator renders it in its own dialect (Azure DevOps `TFxxxxxx` bodies and
//! `X-RateLimit-*` headers, Port `{ok:false, error}` bodies and `x-ratelimit-*` headers).

/// One scripted answer.
///
/// - `status` 429: a rate-limit answer with `Retry-After` (from `retry_after_secs`, default 1)
///   and the simulator's rate-limit headers and body.
/// - a 2xx `status` with `body: None`: the simulator answers normally but adds `Retry-After`
///   when `retry_after_secs` is set (Azure DevOps sends it on 200s near the budget).
/// - any other status: that status with `body` if given, else the simulator's error body.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedAnswer {
    pub status: u16,
    pub retry_after_secs: Option<u64>,
    pub body: Option<serde_json::Value>,
}

impl ScriptedAnswer {
    /// An answer with this status and the simulator's default body for it.
    pub fn status(code: u16) -> Self {
        Self {
            status: code,
            retry_after_secs: None,
            body: None,
        }
    }

    /// A 429 with `Retry-After: retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            status: 429,
            retry_after_secs: Some(retry_after_secs),
            body: None,
        }
    }

    /// An answer with this status and exactly this JSON body.
    pub fn json(code: u16, body: serde_json::Value) -> Self {
        Self {
            status: code,
            retry_after_secs: None,
            body: Some(body),
        }
    }

    /// The simulator's normal answer, unchanged (to let requests pass before a fault).
    pub fn normal() -> Self {
        Self::status(200)
    }

    /// The normal answer, plus a `Retry-After` header (the "slow down" hint on a 200).
    pub fn ok_with_retry_after(retry_after_secs: u64) -> Self {
        Self {
            status: 200,
            retry_after_secs: Some(retry_after_secs),
            body: None,
        }
    }

    /// True when the simulator should answer normally and only add headers.
    pub(crate) fn passes_through(&self) -> bool {
        (200..300).contains(&self.status) && self.body.is_none()
    }

    /// The status as an HTTP status code (500 if out of range).
    pub(crate) fn status_code(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
    }
}
