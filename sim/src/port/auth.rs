//! Port's token flow: client credentials in, a bearer token out (3 h). The same credentials get
//! the same token back until it expires, as Port does; [`Tokens::expire_all`] lets a test force
//! the refresh-on-401 path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

/// Token lifetime Port announces (`expiresIn`).
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(10_800);

#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// token → expiry.
    issued: HashMap<String, Instant>,
    /// client id → its current token.
    by_client: HashMap<String, String>,
}

impl Tokens {
    /// The client's current token, or a new one.
    pub(crate) fn issue(&mut self, client_id: &str) -> String {
        let now = Instant::now();
        if let Some(token) = self.by_client.get(client_id)
            && self.issued.get(token).is_some_and(|expiry| *expiry > now)
        {
            return token.clone();
        }
        let token = format!("sim-token-{}", uuid::Uuid::new_v4().simple());
        self.issued.insert(token.clone(), now + TOKEN_LIFETIME);
        self.by_client.insert(client_id.to_string(), token.clone());
        token
    }

    /// True when the request carries `Authorization: Bearer <a live token>`.
    pub(crate) fn accepts(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .and_then(|token| self.issued.get(token))
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Invalidates every token issued so far.
    pub(crate) fn expire_all(&mut self) {
        self.issued.clear();
        self.by_client.clear();
    }
}
