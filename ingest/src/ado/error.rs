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
    #[error("Azure DevOps has no {url} (HTTP 404): {message}")]
    NotFound {
        url: String,
        /// Azure DevOps' `message` (e.g. `TF401019: The Git repository … does not exist`), or an
        /// excerpt of the body when it is not Azure DevOps' error JSON.
        message: String,
        /// Azure DevOps' `typeKey` (e.g. `GitRepositoryNotFoundException`); empty when the body
        /// is not Azure DevOps' error JSON (a proxy's page, an empty body).
        type_key: String,
    },
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

/// What a failed call means, decided in one place ([`AdoError::class`]) for every caller: the
/// crawler, live events and the webhook's answer to Azure DevOps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Azure DevOps answered 404 for the object the request names: it does not exist (any
    /// more). Only this makes a live event delete anything.
    Gone,
    /// Trying again later may succeed: 5xx, 429, 408, no answer, retries exhausted, the
    /// identity endpoint unreachable, shutting down.
    Transient,
    /// Nothing can be read with these credentials or over this connection (a refused token, an
    /// untrusted certificate): not about one object, about the whole organization.
    Refused,
    /// This request will fail again however often it is sent: 400 and other 4xx, 403 for the
    /// object's project, a 404 for the *container* rather than the object (the project, the
    /// organization, the route), an answer that is not the JSON expected.
    Permanent,
}

/// `typeKey`s of 404s that say the project is gone, not the object the request names
/// (`TF200016`; Azure DevOps maps `ProjectDoesNotExistWithNameException` to 404).
const PROJECT_GONE: &[&str] = &[
    "ProjectDoesNotExistWithNameException",
    "ProjectDoesNotExistException",
];
/// `typeKey`s of 404s for a wrong URL rather than a missing object: an unknown organization
/// (`HostNotFoundException`) or route (`HttpException`, "the controller for path … was not
/// found").
const NO_SUCH_ROUTE: &[&str] = &["HostNotFoundException", "HttpException"];

/// `typeKey`s of 404s that say a repository is gone (`TF401019`).
const REPOSITORY_GONE: &[&str] = &["GitRepositoryNotFoundException"];
/// `typeKey`s of 404s that say a Git item or wiki page asked by path or id does not exist at
/// the version asked (`TF401174` item, `TF401175` branch or commit, the wiki or its page), or
/// that its repository is gone: Azure DevOps' contract for "there is none".
pub const CONTENT_MISSING: &[&str] = &[
    "GitItemNotFoundException",
    "GitUnresolvableToCommitException",
    "GitCommitDoesNotExistException",
    "GitRepositoryNotFoundException",
    "WikiNotFoundException",
    "WikiPageNotFoundException",
];

impl AdoError {
    /// Whether this is a 404 in which Azure DevOps' own error JSON names, by its `typeKey`,
    /// one of `type_keys` as missing. Any other 404 (another `typeKey`, none, a proxy's page)
    /// proves nothing, and a crawl that meets one fails its kind.
    pub fn says_missing(&self, type_keys: &[&str]) -> bool {
        matches!(self, AdoError::NotFound { type_key, .. } if type_keys.contains(&type_key.as_str()))
    }

    /// Whether a crawl unit (a project, or a repository of one) is gone: a 404 in which Azure
    /// DevOps says its project (`TF200016`) or repository (`TF401019`) does not exist any
    /// more. Its items are gone with it, so the crawl skips the unit.
    pub fn unit_gone(&self) -> bool {
        self.says_missing(PROJECT_GONE) || self.says_missing(REPOSITORY_GONE)
    }

    /// The one classifier of Azure DevOps failures (see [`ErrorClass`]).
    ///
    /// A 404 is [`ErrorClass::Gone`] only when Azure DevOps says so in its own error JSON about
    /// the object (`TF401019` repository, `TF401180` pull request, `TF401232` work item,
    /// `BuildNotFoundException`, … or no `typeKey` at all); a 404 about the project
    /// (`TF200016`), the organization or the route, or a 404 page that is not Azure DevOps'
    /// JSON (a proxy), proves nothing about the object and is [`ErrorClass::Permanent`].
    pub fn class(&self) -> ErrorClass {
        match self {
            AdoError::NotFound {
                message, type_key, ..
            } => {
                let container = PROJECT_GONE.contains(&type_key.as_str())
                    || NO_SUCH_ROUTE.contains(&type_key.as_str())
                    || message.starts_with("TF200016");
                if container || (type_key.is_empty() && !message.is_empty()) {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Gone
                }
            }
            AdoError::Transport { .. }
            | AdoError::Exhausted { .. }
            | AdoError::IdentityUnavailable { .. }
            | AdoError::ShuttingDown => ErrorClass::Transient,
            AdoError::Status { status, .. } if *status >= 500 || matches!(*status, 408 | 429) => {
                ErrorClass::Transient
            }
            AdoError::Unauthorized { .. }
            | AdoError::UntrustedCertificate { .. }
            | AdoError::IdentityRefused { .. }
            | AdoError::TokenRefused { .. } => ErrorClass::Refused,
            AdoError::Forbidden { .. } | AdoError::Status { .. } | AdoError::Decode { .. } => {
                ErrorClass::Permanent
            }
        }
    }

    /// Whether nothing more can be read from the organization with these credentials or this
    /// connection (a refused token, an untrusted certificate, or no identity endpoint to get
    /// one from): a crawl stops instead of failing every request that follows.
    pub fn stops_crawl(&self) -> bool {
        self.class() == ErrorClass::Refused || matches!(self, AdoError::IdentityUnavailable { .. })
    }

    /// Whether trying again later may succeed (the caller decides how long to wait).
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The HTTP status Azure DevOps answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdoError::Unauthorized { .. } | AdoError::TokenRefused { .. } => Some(401),
            AdoError::Forbidden { .. } => Some(403),
            AdoError::NotFound { .. } => Some(404),
            AdoError::Status { status, .. } | AdoError::Exhausted { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The `message` and `typeKey` of an Azure DevOps error body (`{"$id", "innerException",
/// "message", "typeName", "typeKey", "errorCode", "eventId"}`); for any other body, an excerpt
/// of it and no type key.
pub(crate) fn error_body(body: &str) -> (String, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    };
    match (field("message"), field("typeKey")) {
        (Some(message), type_key) => (excerpt(&message, 300), type_key.unwrap_or_default()),
        (None, _) => (excerpt(body, 300), String::new()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(body: &str) -> AdoError {
        let (message, type_key) = error_body(body);
        AdoError::NotFound {
            url: "https://dev.azure.com/acme/x".into(),
            message,
            type_key,
        }
    }

    fn status(status: u16) -> AdoError {
        AdoError::Status {
            status,
            url: "u".into(),
            body: String::new(),
        }
    }

    #[test]
    fn every_failure_has_one_class() {
        let repository = r#"{"$id":"1","innerException":null,"message":"TF401019: The Git repository with name or identifier r does not exist or you do not have permissions for the operation you are attempting.","typeName":"Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, Microsoft.TeamFoundation.Git.Server","typeKey":"GitRepositoryNotFoundException","errorCode":0,"eventId":3000}"#;
        let work_item = r#"{"$id":"1","innerException":null,"message":"TF401232: Work item 7 does not exist, or you do not have permissions to read it.","typeName":"Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemUnauthorizedAccessException, Microsoft.TeamFoundation.WorkItemTracking.Server","typeKey":"WorkItemUnauthorizedAccessException","errorCode":0,"eventId":3200}"#;
        let project = r#"{"$id":"1","innerException":null,"message":"TF200016: The following project does not exist: p. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server.","typeName":"Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, Microsoft.TeamFoundation.Core.WebApi","typeKey":"ProjectDoesNotExistWithNameException","errorCode":0,"eventId":3000}"#;
        let organization = r#"{"message":"TF400813: The organization 'x' could not be found.","typeKey":"HostNotFoundException"}"#;
        let cases = [
            (not_found(repository), ErrorClass::Gone),
            (not_found(work_item), ErrorClass::Gone),
            (not_found(""), ErrorClass::Gone),
            (not_found(project), ErrorClass::Permanent),
            (not_found(organization), ErrorClass::Permanent),
            (not_found("<html>Not Found</html>"), ErrorClass::Permanent),
            (status(400), ErrorClass::Permanent),
            (status(409), ErrorClass::Permanent),
            (
                AdoError::Forbidden { url: "u".into() },
                ErrorClass::Permanent,
            ),
            (
                AdoError::Decode {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorClass::Permanent,
            ),
            (status(500), ErrorClass::Transient),
            (status(503), ErrorClass::Transient),
            (status(429), ErrorClass::Transient),
            (status(408), ErrorClass::Transient),
            (
                AdoError::Transport {
                    url: "u".into(),
                    detail: "timed out".into(),
                },
                ErrorClass::Transient,
            ),
            (AdoError::ShuttingDown, ErrorClass::Transient),
            (
                AdoError::Unauthorized {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorClass::Refused,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
    }

    #[test]
    fn only_a_404_naming_the_unit_or_the_content_as_missing_means_none() {
        let repository = not_found(
            r#"{"message":"TF401019: The Git repository with name or identifier r does not exist","typeKey":"GitRepositoryNotFoundException"}"#,
        );
        let project = not_found(
            r#"{"message":"TF200016: The following project does not exist: p.","typeKey":"ProjectDoesNotExistWithNameException"}"#,
        );
        let item = not_found(
            r#"{"message":"TF401174: The item '/a' could not be found","typeKey":"GitItemNotFoundException"}"#,
        );
        let generic = not_found(
            r#"{"message":"The requested resource was not found.","typeKey":"NotFoundException"}"#,
        );
        let route = not_found(r#"{"message":"x","typeKey":"HttpException"}"#);
        let proxy = not_found("<html>404 Not Found</html>");
        assert!(repository.unit_gone() && project.unit_gone());
        for other in [&item, &generic, &route, &proxy, &not_found("")] {
            assert!(!other.unit_gone(), "{other}");
        }
        assert!(item.says_missing(CONTENT_MISSING) && repository.says_missing(CONTENT_MISSING));
        for other in [&generic, &route, &proxy, &project, &status(400)] {
            assert!(!other.says_missing(CONTENT_MISSING), "{other}");
        }
    }

    #[test]
    fn a_not_found_names_what_azure_devops_said() {
        let error = not_found(
            r#"{"message":"TF401180: The requested pull request was not found.","typeKey":"GitPullRequestNotFoundException"}"#,
        );
        assert!(error.to_string().contains("TF401180"), "{error}");
        assert_eq!(error.status(), Some(404));
    }
}
