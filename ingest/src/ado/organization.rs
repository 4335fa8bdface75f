//! Which organization an item came from: the `__organizationUrl` and `__organizationName`
//! fields every raw item carries (resync and live events alike), as the Python integration's
//! `iterate_per_organization` stamps them, so that mappings can use them.
//!
//! This module owns the name parsing and the stamping; it must not change anything else of
//! an item (the default mapping's identifiers do not read these fields).

use serde_json::Value;

use super::OrganizationName;

/// The field holding the organization's URL (without trailing slash).
pub const ORGANIZATION_URL_FIELD: &str = "__organizationUrl";
/// The field holding the organization's name.
pub const ORGANIZATION_NAME_FIELD: &str = "__organizationName";

/// The organization's name in its URL:
/// - `https://dev.azure.com/{org}` → `{org}`;
/// - `https://{org}.visualstudio.com` → `{org}`;
/// - an Azure DevOps Server collection URL such as `https://host/tfs/{collection}` → the
///   collection (the last path segment);
/// - a bare host (no path) → the host.
pub fn organization_name(organization_url: &str) -> OrganizationName {
    let trimmed = organization_url.trim().trim_end_matches('/');
    let rest = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // Drop any credentials and the port.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host_port, |(host, _)| host);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let host_lower = host.to_ascii_lowercase();
    if host_lower == "dev.azure.com"
        && let Some(org) = segments.first()
    {
        return OrganizationName::new(*org);
    }
    if let Some(org) = host_lower.strip_suffix(".visualstudio.com")
        && !org.is_empty()
        && !org.contains('.')
    {
        // The name as written in the URL (host names are case-insensitive, keep the user's case).
        return OrganizationName::new(&host[..org.len()]);
    }
    OrganizationName::new(*segments.last().unwrap_or(&host))
}

/// The `__organizationName` the Python integration stamps (its `extract_org_name_from_url`),
/// which mappings moved from it read, so it is reproduced exactly rather than being
/// [`organization_name`]:
/// - `https://dev.azure.com/{org}` (or a `*.dev.azure.com` host) → `{org}` as written;
/// - `https://{org}.visualstudio.com` → `{org}` in lower case (the host name lower-cased);
/// - anything else, an Azure DevOps Server collection included → the organization URL itself.
pub fn stamped_organization_name(organization_url: &str) -> String {
    let url = organization_url.trim().trim_end_matches('/');
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host_port, |(host, _)| host)
        .to_ascii_lowercase();
    if host == "dev.azure.com" || host.ends_with(".dev.azure.com") {
        return match path.trim_matches('/').split('/').next() {
            Some(org) if !org.is_empty() => org.to_string(),
            _ => url.to_string(),
        };
    }
    if let Some(org) = host.strip_suffix(".visualstudio.com") {
        return org.to_string();
    }
    url.to_string()
}

/// One organization's stamp, computed once and applied to every item read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationStamp {
    url: Value,
    name: Value,
}

impl OrganizationStamp {
    /// The stamp of the organization at `organization_url`.
    pub fn new(organization_url: &str) -> Self {
        let url = organization_url.trim_end_matches('/');
        Self {
            url: Value::String(url.to_string()),
            name: Value::String(stamped_organization_name(url)),
        }
    }

    /// The organization's name, e.g. `acme` for `https://dev.azure.com/acme`.
    pub fn name(&self) -> &str {
        self.name.as_str().unwrap_or_default()
    }

    /// Adds `__organizationUrl` and `__organizationName` to `item` (an object; anything else is
    /// left as it is, since it has no place for them).
    pub fn apply(&self, item: &mut Value) {
        if let Value::Object(map) = item {
            map.insert(ORGANIZATION_URL_FIELD.into(), self.url.clone());
            map.insert(ORGANIZATION_NAME_FIELD.into(), self.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamped_names_are_the_python_integrations() {
        for (url, expected) in [
            ("https://dev.azure.com/acme", "acme"),
            ("https://dev.azure.com/Acme-Corp/", "Acme-Corp"),
            ("https://dev.azure.com", "https://dev.azure.com"),
            ("https://Acme.VisualStudio.com/", "acme"),
            ("https://acme.visualstudio.com/DefaultCollection", "acme"),
            ("https://a.b.visualstudio.com/Coll", "a.b"),
            (
                "https://tfs.corp.example/tfs/DefaultCollection/",
                "https://tfs.corp.example/tfs/DefaultCollection",
            ),
            ("http://127.0.0.1:41234/acme", "http://127.0.0.1:41234/acme"),
        ] {
            assert_eq!(stamped_organization_name(url), expected, "{url}");
        }
    }

    #[test]
    fn names_are_parsed_from_every_url_form() {
        for (url, expected) in [
            ("https://dev.azure.com/acme", "acme"),
            ("https://dev.azure.com/acme/", "acme"),
            ("https://DEV.azure.com/Acme-Corp", "Acme-Corp"),
            ("https://acme.visualstudio.com", "acme"),
            ("https://Acme.VisualStudio.com/", "Acme"),
            ("https://acme.visualstudio.com/DefaultCollection", "acme"),
            (
                "https://tfs.corp.example/tfs/DefaultCollection",
                "DefaultCollection",
            ),
            ("https://tfs.corp.example:8080/tfs/Fabrikam/", "Fabrikam"),
            ("https://ado.corp.example/MainCollection", "MainCollection"),
            ("http://127.0.0.1:41234/acme", "acme"),
            ("https://ado.corp.example", "ado.corp.example"),
            ("https://ado.corp.example:8443", "ado.corp.example"),
            // Not Azure DevOps Services: a deeper visualstudio.com host is a plain server.
            ("https://a.b.visualstudio.com/Coll", "Coll"),
        ] {
            assert_eq!(organization_name(url).as_str(), expected, "{url}");
        }
    }

    #[test]
    fn stamp_adds_both_fields_to_objects_only() {
        let stamp = OrganizationStamp::new("https://dev.azure.com/acme/");
        let mut item = json!({"id": "r1", "name": "repo"});
        stamp.apply(&mut item);
        assert_eq!(
            item,
            json!({
                "id": "r1",
                "name": "repo",
                "__organizationUrl": "https://dev.azure.com/acme",
                "__organizationName": "acme"
            })
        );
        let mut scalar = json!(3);
        stamp.apply(&mut scalar);
        assert_eq!(scalar, json!(3));
        assert_eq!(stamp.name(), "acme");
    }
}
