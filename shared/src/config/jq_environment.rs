//! What `env` and `$ENV` hold in a mapping's jq expressions
//! (`OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS`, true by default as in Ocean and Port's
//! chart).
//!
//! Ocean gives jq the whole process environment when the setting is true, and `{}` when false.
//! adoport gives the process environment *without its secrets*: a mapping is edited in Port's
//! UI by people who must not read the PAT or the Port client secret through a property. Left
//! out are every `OCEAN__…` and `ADOPORT__…` variable (the settings, secrets among them), the
//! proxy variables (their URLs may carry credentials) and every variable whose name looks
//! secret ([`looks_secret`]). To give a mapping a value, set a plain variable (Port's chart:
//! `extraEnv`) and read it as `env.NAME`.

use std::collections::BTreeMap;
use std::fmt;

/// Parts of a variable name that mark it as a secret (compared upper-case).
const SECRET_MARKS: [&str; 9] = [
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
];

/// Prefixes of the variables that configure adoport (and hold its secrets).
const SETTINGS_PREFIXES: [&str; 2] = ["OCEAN__", "ADOPORT__"];

/// Variables whose values may carry credentials (`http://user:pass@proxy:3128`).
const PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"];

/// The variables a mapping's `env` holds: names and values. `Debug` prints the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JqEnvironment {
    variables: BTreeMap<String, String>,
}

impl fmt::Debug for JqEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.variables.keys()).finish()
    }
}

/// Whether a variable never reaches a mapping: a setting, a proxy, or a secret-looking name.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SETTINGS_PREFIXES.iter().any(|p| upper.starts_with(p))
        || PROXY_VARIABLES.contains(&upper.as_str())
        || SECRET_MARKS.iter().any(|mark| upper.contains(mark))
        || upper.ends_with("_KEY")
        || upper == "KEY"
}

impl JqEnvironment {
    /// The environment `vars` gives a mapping: empty when `allowed` is false.
    pub fn from_vars(allowed: bool, vars: &[(String, String)]) -> Self {
        if !allowed {
            return Self::default();
        }
        Self {
            variables: vars
                .iter()
                .filter(|(name, _)| !looks_secret(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }

    /// The variables, by name.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of a process with `list` as its variables.
    fn of(allowed: bool, list: &[(&str, &str)]) -> JqEnvironment {
        let owned: Vec<(String, String)> = list
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        JqEnvironment::from_vars(allowed, &owned)
    }

    #[test]
    fn plain_variables_reach_the_mapping_and_secrets_do_not() {
        let env = of(
            true,
            &[
                ("CLUSTER_NAME", "prod-eu"),
                ("HOME", "/tmp"),
                ("OCEAN__PORT__CLIENT_SECRET", "s1"),
                ("OCEAN__INTEGRATION__IDENTIFIER", "my-ado"),
                ("ADOPORT__BROKER__URL", "amqp://u:p@h"),
                ("HTTPS_PROXY", "http://u:p@proxy:3128"),
                ("GITHUB_TOKEN", "t"),
                ("DB_PASSWORD", "p"),
                ("AWS_SECRET_ACCESS_KEY", "k"),
                ("SIGNING_KEY", "k"),
                ("MY_API_KEY", "k"),
            ],
        );
        let names: Vec<&str> = env.variables().keys().map(String::as_str).collect();
        assert_eq!(names, ["CLUSTER_NAME", "HOME"]);
        assert_eq!(env.variables()["CLUSTER_NAME"], "prod-eu");
        let printed = format!("{env:?}");
        assert!(!printed.contains("prod-eu"), "{printed}");
    }

    #[test]
    fn nothing_reaches_the_mapping_when_access_is_off() {
        let env = of(false, &[("CLUSTER_NAME", "prod-eu")]);
        assert!(env.variables().is_empty());
    }
}
