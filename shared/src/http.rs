//! The one place HTTP clients are built: every client that leaves the process (Azure DevOps,
//! Port, the identity endpoint) starts from [`client_builder`], so proxies and trusted CAs
//! cannot differ between them.
//!
//! TLS is rustls (reqwest's default, with aws-lc-rs) verifying through the platform verifier,
//! plus the extra certificates of [`NetworkSettings`]. The environment is never read here:
//! reqwest's own reading of the proxy variables is switched off and the proxies of the settings
//! are set explicitly, so what [`crate::config::Settings`] reports is what the clients do.

use reqwest::{ClientBuilder, NoProxy, Proxy};

use crate::config::{ConfigError, NetworkSettings, ProxySetting};

fn proxy(
    setting: &ProxySetting,
    make: fn(&str) -> reqwest::Result<Proxy>,
    no_proxy: Option<&str>,
) -> Result<Proxy, ConfigError> {
    let proxy = make(&setting.url).map_err(|e| ConfigError::Invalid {
        setting: setting.variable.clone(),
        problem: format!("\"{}\" is not a usable proxy: {e}", setting.url),
    })?;
    Ok(proxy.no_proxy(no_proxy.and_then(NoProxy::from_string)))
}

/// A client builder with the proxies and extra CA certificates of `network`; callers add
/// their timeouts, headers and user agent.
///
/// `HTTP_PROXY` applies to `http://` URLs, `HTTPS_PROXY` to `https://` URLs (tunnelled with
/// `CONNECT`), `ALL_PROXY` to both where the specific one is unset; `NO_PROXY` exempts hosts
/// from all three. Without any proxy setting, requests go direct.
pub fn client_builder(network: &NetworkSettings) -> Result<ClientBuilder, ConfigError> {
    // Forget what reqwest would read from the environment by itself.
    let mut builder = reqwest::Client::builder().no_proxy();
    let no_proxy = network.no_proxy.as_deref();
    // The specific proxies first: reqwest uses the first proxy that matches a URL.
    if let Some(setting) = &network.http_proxy {
        builder = builder.proxy(proxy(setting, |u| Proxy::http(u), no_proxy)?);
    }
    if let Some(setting) = &network.https_proxy {
        builder = builder.proxy(proxy(setting, |u| Proxy::https(u), no_proxy)?);
    }
    if let Some(setting) = &network.all_proxy {
        builder = builder.proxy(proxy(setting, |u| Proxy::all(u), no_proxy)?);
    }
    let extra: Vec<reqwest::Certificate> = network.extra_certificates().cloned().collect();
    if !extra.is_empty() {
        builder = builder.tls_certs_merge(extra);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn upper_case_wins_and_lower_case_is_read() {
        let network = NetworkSettings::from_vars(&vars(&[
            ("http_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:2"),
            ("https_proxy", "proxy.corp:3128"),
            ("all_proxy", "http://all:9"),
            ("no_proxy", "localhost,.corp.example"),
        ]))
        .expect("settings");
        let http = network.http_proxy.as_ref().expect("http");
        assert_eq!(
            (http.variable.as_str(), http.url.as_str()),
            ("HTTP_PROXY", "http://upper:2")
        );
        let https = network.https_proxy.as_ref().expect("https");
        assert_eq!(
            (https.variable.as_str(), https.url.as_str()),
            ("https_proxy", "http://proxy.corp:3128")
        );
        assert_eq!(network.all_proxy.as_ref().expect("all").url, "http://all:9");
        assert_eq!(network.no_proxy.as_deref(), Some("localhost,.corp.example"));
        client_builder(&network)
            .expect("builder")
            .build()
            .expect("client");
    }

    #[test]
    fn nothing_set_means_no_proxy_and_no_extra_roots() {
        // No local CA directory either (the machine's own is read by `from_vars`).
        let no_local_cas =
            std::env::temp_dir().join(format!("adoport-no-cas-{}", std::process::id()));
        let network =
            NetworkSettings::from_vars_and_ca_dir(&vars(&[("PATH", "/bin")]), &no_local_cas)
                .expect("settings");
        assert!(network.http_proxy.is_none() && network.https_proxy.is_none());
        assert!(network.all_proxy.is_none() && network.no_proxy.is_none());
        assert!(network.extra_ca.is_empty());
        client_builder(&network)
            .expect("builder")
            .build()
            .expect("client");
    }

    #[test]
    fn bad_proxies_and_ca_files_name_the_variable() {
        let cases = [
            (vec![("HTTPS_PROXY", "socks5://proxy:1080")], "HTTPS_PROXY"),
            (vec![("http_proxy", "http://")], "http_proxy"),
            (
                vec![("SSL_CERT_FILE", "/nonexistent/ca.pem")],
                "SSL_CERT_FILE",
            ),
            (
                vec![("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")],
                "REQUESTS_CA_BUNDLE",
            ),
        ];
        for (list, variable) in cases {
            let err = NetworkSettings::from_vars(&vars(&list)).expect_err(variable);
            let text = err.to_string();
            assert!(text.starts_with(variable), "{variable}: {text}");
        }
        let dir = std::env::temp_dir().join(format!("adoport-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = NetworkSettings::from_vars(&vars(&[(
            "REQUESTS_CA_BUNDLE",
            empty.to_str().expect("utf-8"),
        )]))
        .expect_err("no certificate");
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
