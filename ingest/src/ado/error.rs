//! Errors of the Azure DevOps client, each saying what failed and what to do about it.

/// A call to Azure DevOps that did not give us data.
#[derive(Debug, thiserror::Error)]
pub enum AdoError {
    #[error(
        "Azure DevOps refused the personal access token for {url} ({detail}); check OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN: it may be expired, revoked or lack read scopes"
    )]
    Unauthorized { url: String, detail: String },
    #[error(
        "Azure DevOps denied access to {url} (HTTP 403): the token lacks permission for this resource"
    )]
    Forbidden { url: String },
    #[error("Azure DevOps has no {url} (HTTP 404)")]
    NotFound { url: String },
    #[error("Azure DevOps answered HTTP {status} for {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
    },
    #[error(
        "Azure DevOps still answered HTTP {status} for {url} after {attempts} attempts: {body}"
    )]
    Exhausted {
        status: u16,
        url: String,
        attempts: u32,
        body: String,
    },
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    #[error(
        "the TLS certificate of {url} is not trusted ({detail}); if a proxy or a private CA signs it, put that CA in a PEM file and set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to it"
    )]
    UntrustedCertificate { url: String, detail: String },
    #[error("Azure DevOps answered {url} with something that is not the expected JSON: {detail}")]
    Decode { url: String, detail: String },
    #[error(
        "Microsoft Entra ID refused a token to the service principal (tenant {tenant_id}, client id {client_id}): {problem}"
    )]
    IdentityRefused {
        tenant_id: String,
        client_id: String,
        problem: String,
    },
    #[error(
        "could not get a token for the service principal (tenant {tenant_id}, client id {client_id}) from {url}: {detail}"
    )]
    IdentityUnavailable {
        url: String,
        tenant_id: String,
        client_id: String,
        detail: String,
    },
    #[error(
        "Azure DevOps refused the service principal's token for {url} ({detail}); add the service principal (tenant {tenant_id}, client id {client_id}) to this organization (Organization settings → Users) with read access to the resources to sync"
    )]
    TokenRefused {
        url: String,
        tenant_id: String,
        client_id: String,
        detail: String,
    },
    #[error("shutting down")]
    ShuttingDown,
}

impl AdoError {
    /// Whether nothing more can be read from the organization with these credentials or this
    /// connection (a refused token, an untrusted certificate): a crawl stops instead of failing
    /// every request that follows.
    pub fn stops_crawl(&self) -> bool {
        matches!(
            self,
            AdoError::Unauthorized { .. }
                | AdoError::UntrustedCertificate { .. }
                | AdoError::IdentityRefused { .. }
                | AdoError::IdentityUnavailable { .. }
                | AdoError::TokenRefused { .. }
        )
    }

    /// Whether trying again later may succeed (the caller decides how long to wait).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AdoError::Transport { .. }
                | AdoError::Exhausted { .. }
                | AdoError::IdentityUnavailable { .. }
        ) || matches!(self, AdoError::Status { status, .. } if *status >= 500 || *status == 429 || *status == 408)
    }
}

/// At most `max` characters of a response body, on one line.
pub(crate) fn excerpt(body: &str, max: usize) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}
