//! The gate every Azure DevOps request passes: the PAT (`Basic base64(":" + PAT)`, any user
//! name) or a service principal's bearer token (when the organization accepts the identity
//! simulator's tokens), and the `api-version` (query parameter or
//! `Accept: application/json; api-version=…`).

use axum::http::{HeaderMap, header};
use base64::Engine;

use super::AdoSimConfig;
use super::error::AdoError;
use crate::identity::{AZURE_DEVOPS_SCOPE, TokenCheck};

/// Checks the caller's credentials: a bearer token the identity simulator issued for Azure
/// DevOps (expired, revoked, unknown or for another resource → 401, as Azure DevOps answers a
/// bad bearer token), else the PAT ([`check_pat`]).
pub(crate) fn check_credentials(
    headers: &HeaderMap,
    config: &AdoSimConfig,
) -> Result<(), AdoError> {
    let bearer = authorization(headers, "bearer");
    match (bearer, &config.bearer_tokens) {
        (Some(token), Some(tokens)) => match tokens.check(token, AZURE_DEVOPS_SCOPE) {
            TokenCheck::Valid => Ok(()),
            TokenCheck::Expired | TokenCheck::Unknown | TokenCheck::WrongAudience => {
                Err(AdoError::Unauthorized)
            }
        },
        (Some(_), None) => Err(AdoError::Unauthorized),
        (None, _) => check_pat(headers, &config.personal_access_token),
    }
}

/// The credentials of the `Authorization` header when it uses `scheme` (any case).
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let (used, credentials) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    used.eq_ignore_ascii_case(scheme)
        .then_some(credentials.trim())
}

/// Checks the PAT. A refusal is a 203 sign-in page, or a 401 when the caller sent
/// `X-TFS-FedAuthRedirect: Suppress` (as Azure DevOps does).
pub(crate) fn check_pat(headers: &HeaderMap, personal_access_token: &str) -> Result<(), AdoError> {
    let accepted = authorization(headers, "basic")
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| {
            pair.split_once(':')
                .is_some_and(|(_, password)| password == personal_access_token)
        });
    if accepted {
        return Ok(());
    }
    let suppress = headers
        .get("x-tfs-fedauthredirect")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("suppress"));
    Err(if suppress {
        AdoError::Unauthorized
    } else {
        AdoError::SignInPage
    })
}

/// The `api-version` of a request: the query parameter, else the `Accept` header's.
fn requested_version(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    let from_query = query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.eq_ignore_ascii_case("api-version")
                .then(|| value.replace("%2E", ".").replace("%2e", "."))
        })
    });
    from_query.or_else(|| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .find_map(|part| {
                let (name, value) = part.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("api-version")
                    .then(|| value.trim().to_string())
            })
    })
}

/// Checks that an `api-version` is well formed (`7.1`, `7.1-preview`, `7.1-preview.3`) and not
/// above 7.2, and present on every request but a read: Azure DevOps answers a `GET` without one
/// with its latest released version (the Python integration lists projects that way).
pub(crate) fn check_api_version(
    method: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), AdoError> {
    let Some(version) = requested_version(query, headers) else {
        if method == "GET" {
            return Ok(());
        }
        return Err(AdoError::MissingApiVersion {
            method: method.to_string(),
        });
    };
    let number = version.split_once('-').map_or(version.as_str(), |(n, _)| n);
    let suffix_ok = version.split_once('-').is_none_or(|(_, s)| {
        s.strip_prefix("preview").is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('.')
                    .is_some_and(|n| n.parse::<u32>().is_ok())
        })
    });
    let parsed = number
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        Some(pair) if suffix_ok => {
            if pair > (7, 2) {
                Err(AdoError::ApiVersionOutOfRange { version })
            } else {
                Ok(())
            }
        }
        _ => Err(AdoError::InvalidApiVersion { version }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(user: &str, pat: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pat}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        h
    }

    #[test]
    fn pat_any_user_name() {
        assert!(check_pat(&basic("", "p"), "p").is_ok());
        assert!(check_pat(&basic("someone", "p"), "p").is_ok());
        assert!(matches!(
            check_pat(&basic("", "x"), "p"),
            Err(AdoError::SignInPage)
        ));
        let mut h = basic("", "x");
        h.insert(
            "X-TFS-FedAuthRedirect",
            HeaderValue::from_static("Suppress"),
        );
        assert!(matches!(check_pat(&h, "p"), Err(AdoError::Unauthorized)));
    }

    #[test]
    fn api_versions() {
        let none = HeaderMap::new();
        assert!(check_api_version("GET", Some("api-version=7.1"), &none).is_ok());
        assert!(check_api_version("GET", Some("$top=1&api-version=7.1-preview.1"), &none).is_ok());
        assert!(check_api_version("GET", Some("api-version=6.0-preview"), &none).is_ok());
        assert!(check_api_version("GET", None, &none).is_ok());
        assert!(matches!(
            check_api_version("POST", None, &none),
            Err(AdoError::MissingApiVersion { .. })
        ));
        assert!(matches!(
            check_api_version("GET", Some("api-version=9.0"), &none),
            Err(AdoError::ApiVersionOutOfRange { .. })
        ));
        assert!(matches!(
            check_api_version("GET", Some("api-version=abc"), &none),
            Err(AdoError::InvalidApiVersion { .. })
        ));
        let mut accept = HeaderMap::new();
        accept.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json; api-version=7.1"),
        );
        assert!(check_api_version("GET", None, &accept).is_ok());
    }
}
