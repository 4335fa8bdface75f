//! How every HTTP client reaches the outside: proxies and extra trusted CA certificates, read
//! from the variables Port documents for its self-hosted components and for the Python
//! integration, once, at start-up.
//!
//! - `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`: upper case wins over lower case (as
//!   curl and hyper-util read them); a value without a scheme means `http://`.
//! - `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`: PEM files whose certificates are trusted in addition
//!   to the system's roots. Both may be set; each is loaded.
//! - Every `*.crt` and `*.pem` file in `/usr/local/share/ca-certificates/` ([`LOCAL_CA_DIR`]):
//!   where Debian's `update-ca-certificates` takes local CAs from, and where Port's `port-ocean`
//!   chart mounts its `selfSignedCertificate`. The Python image copies them into its bundle
//!   at start; adoport (non-root, read-only file system) reads them instead.
//!
//! A proxy URL that does not parse or a CA file that cannot be read or holds no certificate
//! stops start-up naming the variable. [`crate::http`] turns these settings into clients.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ConfigError;

/// The proxy variables, each as (upper-case name, lower-case name).
const PROXY_VARIABLES: [(&str, &str); 3] = [
    ("HTTP_PROXY", "http_proxy"),
    ("HTTPS_PROXY", "https_proxy"),
    ("ALL_PROXY", "all_proxy"),
];

/// The variables naming extra CA files, in the order they are loaded.
pub const CA_FILE_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"];

/// Where local CA certificates are dropped (Debian's `update-ca-certificates` source; Port's
/// chart mounts `selfSignedCertificate` there as `cert.crt`).
pub const LOCAL_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// Where Linux distributions keep the system's CA bundle. On Linux the platform verifier reads
/// `SSL_CERT_FILE` *instead of* the system store; the first of these that exists is added too,
/// so that the file's certificates come on top of the system roots, as documented.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// A proxy and the variable that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// The variable as it was set, e.g. `https_proxy`.
    pub variable: String,
    /// The proxy URL, with a scheme.
    pub url: String,
}

/// Certificates read from one PEM file.
#[derive(Clone)]
pub struct CaBundle {
    /// The variable that named the file (or `system` for the system bundle kept alongside).
    pub variable: String,
    pub path: PathBuf,
    pub certificates: Arc<Vec<reqwest::Certificate>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("variable", &self.variable)
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// Proxies and extra CA certificates for every HTTP client (Azure DevOps, Port, identity).
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    pub http_proxy: Option<ProxySetting>,
    pub https_proxy: Option<ProxySetting>,
    pub all_proxy: Option<ProxySetting>,
    /// Hosts, domains and IP ranges that bypass the proxies (curl's `NO_PROXY` syntax).
    pub no_proxy: Option<String>,
    /// Extra trusted certificates, file by file.
    pub extra_ca: Vec<CaBundle>,
}

fn first_set<'a>(vars: &'a [(String, String)], names: &[&str]) -> Option<(&'a str, &'a str)> {
    names.iter().find_map(|name| {
        vars.iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.trim()))
    })
}

fn proxy(
    vars: &[(String, String)],
    names: (&str, &str),
) -> Result<Option<ProxySetting>, ConfigError> {
    let Some((variable, value)) = first_set(vars, &[names.0, names.1]) else {
        return Ok(None);
    };
    let url = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let invalid = |problem: String| ConfigError::Invalid {
        setting: variable.to_string(),
        problem,
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| {
        invalid(format!(
            "\"{value}\" is not a proxy URL ({e}); use http://host:port"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(format!(
            "\"{value}\" is not a supported proxy; use http://host:port or https://host:port"
        )));
    }
    Ok(Some(ProxySetting {
        variable: variable.to_string(),
        url,
    }))
}

/// Reads a PEM bundle; `variable` names it in errors.
fn ca_bundle(variable: &str, path: PathBuf) -> Result<CaBundle, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        setting: variable.to_string(),
        problem,
    };
    let pem = std::fs::read(&path).map_err(|e| {
        invalid(format!(
            "cannot read the CA file {}: {e}; point it at a readable PEM file or unset it",
            path.display()
        ))
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        invalid(format!(
            "{} is not a PEM certificate bundle: {e}",
            path.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(CaBundle {
        variable: variable.to_string(),
        path,
        certificates: Arc::new(certificates),
    })
}

/// The certificate files directly in `dir` (`*.crt`, `*.pem`), sorted; none when it does not
/// exist.
fn ca_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("crt") || e.eq_ignore_ascii_case("pem"))
        })
        .collect();
    files.sort();
    files
}

impl NetworkSettings {
    /// Reads the variables above from `vars` (the process environment, or a test's list), and
    /// the certificates in [`LOCAL_CA_DIR`].
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::from_vars_and_ca_dir(vars, Path::new(LOCAL_CA_DIR))
    }

    /// [`NetworkSettings::from_vars`] with another local CA directory (tests).
    pub fn from_vars_and_ca_dir(
        vars: &[(String, String)],
        local_ca_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let [http, https, all] = PROXY_VARIABLES;
        let mut settings = NetworkSettings {
            http_proxy: proxy(vars, http)?,
            https_proxy: proxy(vars, https)?,
            all_proxy: proxy(vars, all)?,
            no_proxy: first_set(vars, &["NO_PROXY", "no_proxy"]).map(|(_, v)| v.to_string()),
            extra_ca: Vec::new(),
        };
        for variable in CA_FILE_VARIABLES {
            let Some((_, value)) = first_set(vars, &[variable]) else {
                continue;
            };
            let path = PathBuf::from(value);
            if settings.extra_ca.iter().any(|b| b.path == path) {
                continue;
            }
            settings.extra_ca.push(ca_bundle(variable, path)?);
        }
        for path in ca_files_in(local_ca_dir) {
            if !settings.extra_ca.iter().any(|b| b.path == path) {
                let variable = local_ca_dir.display().to_string();
                settings.extra_ca.push(ca_bundle(&variable, path)?);
            }
        }
        let replaces_system_store = settings
            .extra_ca
            .iter()
            .any(|b| b.variable == "SSL_CERT_FILE");
        if cfg!(target_os = "linux") && replaces_system_store {
            let system = SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file());
            if let Some(path) = system
                && !settings.extra_ca.iter().any(|b| b.path == path)
            {
                // Best effort: the system store is a convenience here, not a setting.
                if let Ok(bundle) = ca_bundle("system", path) {
                    settings.extra_ca.push(bundle);
                }
            }
        }
        Ok(settings)
    }

    /// Every extra trusted certificate.
    pub fn extra_certificates(&self) -> impl Iterator<Item = &reqwest::Certificate> {
        self.extra_ca.iter().flat_map(|b| b.certificates.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temporary directory.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "adoport-ca-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "port-ocean selfSignedCertificate",
        );
        params.self_signed(&key).expect("ca").pem()
    }

    #[test]
    fn certificates_in_the_local_ca_directory_are_trusted() {
        // As Port's chart mounts `selfSignedCertificate`: one `cert.crt` in the directory.
        let dir = scratch_dir("mounted");
        std::fs::write(dir.join("cert.crt"), ca_pem()).expect("write cert.crt");
        std::fs::write(dir.join("README"), "not a certificate").expect("write README");
        let settings = NetworkSettings::from_vars_and_ca_dir(&[], &dir).expect("valid");
        let files: Vec<&Path> = settings.extra_ca.iter().map(|b| b.path.as_path()).collect();
        assert_eq!(files, [dir.join("cert.crt").as_path()]);
        assert_eq!(settings.extra_certificates().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_file_in_the_local_ca_directory_stops_start_up_naming_it() {
        let dir = scratch_dir("broken");
        std::fs::write(dir.join("cert.crt"), "no certificate here").expect("write cert.crt");
        let error = NetworkSettings::from_vars_and_ca_dir(&[], &dir)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("cert.crt"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_local_ca_directory_adds_nothing() {
        let dir = std::env::temp_dir().join(format!("adoport-ca-none-{}", uuid::Uuid::new_v4()));
        let settings = NetworkSettings::from_vars_and_ca_dir(&[], &dir).expect("valid");
        assert!(settings.extra_ca.is_empty());
    }
}
