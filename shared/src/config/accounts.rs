//! Which Azure DevOps organizations ingest reads, and how it proves who it is to them: the
//! integration's `accountMode`.
//!
//! - `Single Account`: one `organizationUrl` and a personal access token (sent as basic auth).
//! - `Multiple Accounts`: a Microsoft Entra ID service principal (`tenantId`, `clientId`,
//!   `clientSecret`) and the `organizationUrls` it has been added to, as a JSON list or a
//!   comma-separated string. One token of the tenant serves every organization.
//!
//! The identity endpoint is `https://login.microsoftonline.com` unless `AZURE_AUTHORITY_HOST`
//! names another (the variable azure-identity reads: sovereign clouds, a test's simulator).
//! This module owns the validation of these settings; every problem names the variable.

use super::{
    AccountMode, AzureDevopsAccess, ConfigError, NetworkSettings, Secret, Settings, required_secret,
};

/// Microsoft Entra ID's public-cloud authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The variable that overrides it (as azure-identity reads it).
pub const AUTHORITY_HOST_VARIABLE: &str = "AZURE_AUTHORITY_HOST";

const ORGANIZATION_URLS: &str = "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS";

/// A Microsoft Entra ID application that reads Azure DevOps with the client-credentials flow.
#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Without trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority_host: String,
}

/// How ingest authenticates to Azure DevOps.
#[derive(Debug, Clone)]
pub enum AzureDevopsCredentials {
    /// `Single Account`: `Basic base64(":" + PAT)`.
    PersonalAccessToken(Secret),
    /// `Multiple Accounts`: a bearer token of the service principal.
    ServicePrincipal(ServicePrincipal),
}

/// Every organization ingest reads and the credentials it reads them with.
#[derive(Debug, Clone)]
pub struct AzureDevopsAccounts {
    /// Without trailing slash, in the order configured, no duplicates; at least one.
    pub organization_urls: Vec<String>,
    pub credentials: AzureDevopsCredentials,
    pub timeout_secs: u64,
    /// Proxies and extra trusted CAs ([`crate::http::client_builder`]).
    pub network: NetworkSettings,
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

fn required(value: Option<&String>, setting: &str, hint: &str) -> Result<String, ConfigError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::missing(setting, hint))
}

/// The organization URLs of `Multiple Accounts`: each an http(s) URL, none twice.
fn organization_urls(listed: &[String]) -> Result<Vec<String>, ConfigError> {
    if listed.is_empty() {
        return Err(ConfigError::Missing {
            setting: ORGANIZATION_URLS.into(),
            hint: "the organizations the service principal reads, as a JSON list or comma-separated, e.g. https://dev.azure.com/org-a,https://dev.azure.com/org-b".into(),
        });
    }
    let mut urls: Vec<String> = Vec::with_capacity(listed.len());
    for entry in listed {
        let url = entry.trim().trim_end_matches('/').to_string();
        if !is_url(&url) {
            return Err(ConfigError::Invalid {
                setting: ORGANIZATION_URLS.into(),
                problem: format!(
                    "\"{entry}\" is not a URL; every entry must start with http, e.g. https://dev.azure.com/my-org"
                ),
            });
        }
        if urls.iter().any(|u| u.eq_ignore_ascii_case(&url)) {
            return Err(ConfigError::Invalid {
                setting: ORGANIZATION_URLS.into(),
                problem: format!("\"{url}\" is listed twice; list each organization once"),
            });
        }
        urls.push(url);
    }
    Ok(urls)
}

impl Settings {
    /// The organizations and credentials of the configured `accountMode`; required by ingest.
    pub fn azure_devops_accounts(&self) -> Result<AzureDevopsAccounts, ConfigError> {
        let config = &self.ocean.integration.config;
        if config.account_mode == AccountMode::SingleAccount {
            let AzureDevopsAccess {
                organization_url,
                personal_access_token,
                timeout_secs,
                network,
            } = self.azure_devops_access()?;
            return Ok(AzureDevopsAccounts {
                organization_urls: vec![organization_url],
                credentials: AzureDevopsCredentials::PersonalAccessToken(personal_access_token),
                timeout_secs,
                network,
            });
        }
        let tenant_id = required(
            config.tenant_id.as_ref(),
            "OCEAN__INTEGRATION__CONFIG__TENANT_ID",
            "the directory (tenant) id of the service principal's Microsoft Entra ID tenant",
        )?;
        let client_id = required(
            config.client_id.as_ref(),
            "OCEAN__INTEGRATION__CONFIG__CLIENT_ID",
            "the application (client) id of the service principal",
        )?;
        let client_secret = required_secret(
            &config.client_secret,
            "OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET",
            "a client secret (its value, not its id) of the service principal",
        )?;
        let organization_urls = organization_urls(&config.organization_urls)?;
        let authority_host = match &self.azure_authority_host {
            None => DEFAULT_AUTHORITY_HOST.to_string(),
            Some(host) if is_url(host.trim()) => host.trim().trim_end_matches('/').to_string(),
            Some(host) => {
                return Err(ConfigError::Invalid {
                    setting: AUTHORITY_HOST_VARIABLE.into(),
                    problem: format!(
                        "\"{host}\" is not a URL; use {DEFAULT_AUTHORITY_HOST} (the default) or your cloud's authority, e.g. https://login.microsoftonline.us"
                    ),
                });
            }
        };
        Ok(AzureDevopsAccounts {
            organization_urls,
            credentials: AzureDevopsCredentials::ServicePrincipal(ServicePrincipal {
                tenant_id,
                client_id,
                client_secret,
                authority_host,
            }),
            timeout_secs: self.ocean.client_timeout,
            network: self.network.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(list: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(list.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const MULTIPLE: &[(&str, &str)] = &[
        (
            "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
            "Multiple Accounts",
        ),
        ("OCEAN__INTEGRATION__CONFIG__TENANT_ID", "tenant-1"),
        ("OCEAN__INTEGRATION__CONFIG__CLIENT_ID", "client-1"),
        ("OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET", "s3cret-value"),
        (
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS",
            "https://dev.azure.com/org-a/, https://dev.azure.com/org-b",
        ),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        MULTIPLE
            .iter()
            .copied()
            .filter(|(k, _)| *k != name)
            .collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut vars = without(name);
        vars.push((name, value));
        vars
    }

    #[test]
    fn multiple_accounts_read_a_comma_separated_list() {
        let accounts = settings(MULTIPLE)
            .expect("valid")
            .azure_devops_accounts()
            .expect("accounts");
        assert_eq!(
            accounts.organization_urls,
            vec!["https://dev.azure.com/org-a", "https://dev.azure.com/org-b"]
        );
        let AzureDevopsCredentials::ServicePrincipal(principal) = &accounts.credentials else {
            panic!("a service principal: {accounts:?}");
        };
        assert_eq!(principal.tenant_id, "tenant-1");
        assert_eq!(principal.client_id, "client-1");
        assert_eq!(principal.client_secret.expose(), "s3cret-value");
        assert_eq!(principal.authority_host, DEFAULT_AUTHORITY_HOST);
        assert!(!format!("{accounts:?}").contains("s3cret-value"));
    }

    #[test]
    fn multiple_accounts_read_a_json_list_and_the_authority_host() {
        let mut vars = with(
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS",
            r#"["https://dev.azure.com/org-a","https://org-b.visualstudio.com/"]"#,
        );
        vars.push(("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9999/"));
        let accounts = settings(&vars)
            .expect("valid")
            .azure_devops_accounts()
            .expect("accounts");
        assert_eq!(
            accounts.organization_urls,
            vec![
                "https://dev.azure.com/org-a",
                "https://org-b.visualstudio.com"
            ]
        );
        let AzureDevopsCredentials::ServicePrincipal(principal) = &accounts.credentials else {
            panic!("a service principal");
        };
        assert_eq!(principal.authority_host, "http://127.0.0.1:9999");
        // The whole config as one JSON object, as Port's UI writes it.
        let s = settings(&[(
            "OCEAN__INTEGRATION__CONFIG",
            r#"{"accountMode":"Multiple Accounts","tenantId":"t","clientId":"c","clientSecret":"x","organizationUrls":["https://dev.azure.com/a"]}"#,
        )])
        .expect("valid");
        let accounts = s.azure_devops_accounts().expect("accounts");
        assert_eq!(accounts.organization_urls, vec!["https://dev.azure.com/a"]);
    }

    #[test]
    fn every_missing_or_ill_formed_setting_is_named() {
        type Vars = Vec<(&'static str, &'static str)>;
        let cases: Vec<(Vars, &str, &str)> = vec![
            (
                without("OCEAN__INTEGRATION__CONFIG__TENANT_ID"),
                "OCEAN__INTEGRATION__CONFIG__TENANT_ID",
                "required",
            ),
            (
                without("OCEAN__INTEGRATION__CONFIG__CLIENT_ID"),
                "OCEAN__INTEGRATION__CONFIG__CLIENT_ID",
                "required",
            ),
            (
                without("OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET"),
                "OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET",
                "required",
            ),
            (
                with("OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET", ""),
                "OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET",
                "required",
            ),
            (without(ORGANIZATION_URLS), ORGANIZATION_URLS, "required"),
            (
                with(ORGANIZATION_URLS, " , "),
                ORGANIZATION_URLS,
                "required",
            ),
            (
                with(ORGANIZATION_URLS, "https://dev.azure.com/a,dev.azure.com/b"),
                ORGANIZATION_URLS,
                "\"dev.azure.com/b\" is not a URL",
            ),
            (
                with(
                    ORGANIZATION_URLS,
                    "https://dev.azure.com/a,https://dev.azure.com/A/",
                ),
                ORGANIZATION_URLS,
                "listed twice",
            ),
            (
                with("AZURE_AUTHORITY_HOST", "login.microsoftonline.com"),
                "AZURE_AUTHORITY_HOST",
                "not a URL",
            ),
        ];
        for (vars, setting, problem) in cases {
            let err = settings(&vars)
                .expect("parses")
                .azure_devops_accounts()
                .expect_err(setting);
            let text = err.to_string();
            assert!(
                text.starts_with(setting) && text.contains(problem),
                "{setting}: {text}"
            );
            assert!(!text.contains("s3cret-value"), "{text}");
        }
        let err = settings(&[(ORGANIZATION_URLS, "{\"a\":1}")]).expect_err("an object");
        assert!(err.to_string().starts_with(ORGANIZATION_URLS), "{err}");
        let err = settings(&[("OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE", "Many")])
            .expect_err("unknown mode");
        assert!(
            err.to_string()
                .starts_with("OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE"),
            "{err}"
        );
    }

    #[test]
    fn single_account_is_one_organization_with_a_pat() {
        let accounts = settings(&[
            (
                "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
                "https://dev.azure.com/acme/",
            ),
            ("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN", "pat"),
        ])
        .expect("valid")
        .azure_devops_accounts()
        .expect("accounts");
        assert_eq!(
            accounts.organization_urls,
            vec!["https://dev.azure.com/acme"]
        );
        assert!(matches!(
            &accounts.credentials,
            AzureDevopsCredentials::PersonalAccessToken(pat) if pat.expose() == "pat"
        ));
        let err = settings(&[(
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            "https://dev.azure.com/acme",
        )])
        .expect("valid")
        .azure_devops_accounts()
        .expect_err("no pat");
        assert!(
            err.to_string()
                .starts_with("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN")
        );
    }
}
