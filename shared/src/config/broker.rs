//! Where the broker is and how long the bus waits for it (`ADOPORT__BROKER__URL`, the
//! `…_TIMEOUT_…` and `…__HEARTBEAT_SECS` settings), checked once at start-up.
//!
//! The URL is parsed here, not by lapin alone: lapin's parser takes the host only when it is a
//! domain name (an IP address silently becomes `localhost`), so the bus connects to the host
//! and port read here and gives lapin the rest (credentials, vhost, query parameters).

use std::fmt;
use std::time::Duration;

use lapin::uri::AMQPUri;

use super::{BrokerSettings, ConfigError, Secret, check_ranges};

/// How long the bus waits for the broker. See the README's configuration table and
/// docs/design.md ("When the broker goes away").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerTimeouts {
    /// TCP connect plus the AMQP handshake.
    pub connect: Duration,
    /// The heartbeat interval asked of the broker (whole seconds, as AMQP negotiates it).
    pub heartbeat: Duration,
    /// One broker operation: channel open, declare, qos, consume, get, ack, close.
    pub operation: Duration,
    /// The confirms of one publish.
    pub confirm: Duration,
    /// A publish that must answer at once (webhooks): the whole publish, confirms included.
    pub fail_fast: Duration,
}

impl Default for BrokerTimeouts {
    fn default() -> Self {
        BrokerSettings::default().timeouts()
    }
}

impl BrokerSettings {
    /// The timeouts these settings ask for.
    pub fn timeouts(&self) -> BrokerTimeouts {
        BrokerTimeouts {
            connect: Duration::from_secs(self.connect_timeout_secs),
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            operation: Duration::from_secs(self.operation_timeout_secs),
            confirm: Duration::from_secs(self.confirm_timeout_secs),
            fail_fast: Duration::from_millis(self.webhook_publish_timeout_ms),
        }
    }

    /// Checks the URL (when set) and every timeout against its range.
    pub(super) fn validate_connection(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            BrokerEndpoint::parse(url).map_err(|problem| ConfigError::Invalid {
                setting: "ADOPORT__BROKER__URL".into(),
                problem,
            })?;
        }
        check_ranges(self.timeout_ranges())
    }

    /// Each timeout with its variable and allowed range.
    fn timeout_ranges(&self) -> [(&'static str, u64, std::ops::RangeInclusive<u64>); 5] {
        [
            (
                "ADOPORT__BROKER__CONNECT_TIMEOUT_SECS",
                self.connect_timeout_secs,
                1..=300,
            ),
            // Heartbeats cannot be turned off: they are how a broker that stops answering is
            // noticed on a quiet connection.
            (
                "ADOPORT__BROKER__HEARTBEAT_SECS",
                self.heartbeat_secs,
                1..=600,
            ),
            (
                "ADOPORT__BROKER__OPERATION_TIMEOUT_SECS",
                self.operation_timeout_secs,
                1..=300,
            ),
            (
                "ADOPORT__BROKER__CONFIRM_TIMEOUT_SECS",
                self.confirm_timeout_secs,
                1..=3600,
            ),
            // Well below the webhook handler's own 20 s deadline.
            (
                "ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS",
                self.webhook_publish_timeout_ms,
                50..=15_000,
            ),
        ]
    }
}

/// Where the broker is, read from `ADOPORT__BROKER__URL`. `Debug` never prints credentials.
#[derive(Clone)]
pub struct BrokerEndpoint {
    /// What lapin needs besides the address: credentials, vhost, query parameters.
    pub uri: AMQPUri,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `amqps://`.
    pub tls: bool,
    /// `scheme://host:port/vhost`, without credentials or query: for logs and errors.
    pub redacted: String,
}

impl BrokerEndpoint {
    /// Parses an AMQP URL. The error never repeats the URL (it holds the password).
    pub fn parse(url: &Secret) -> Result<Self, String> {
        let parsed = url::Url::parse(url.expose())
            .map_err(|e| format!("not a URL ({e}); use amqp://user:password@host:5672/%2f"))?;
        let tls = match parsed.scheme() {
            "amqp" => false,
            "amqps" => true,
            _ => {
                return Err("must start with amqp:// or amqps:// (for example amqp://guest:guest@127.0.0.1:5672/%2f)".into());
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) if !name.is_empty() => name.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err("names no host; use amqp://user:password@host:5672/%2f".into()),
        };
        let port = parsed.port().unwrap_or(if tls { 5671 } else { 5672 });
        let uri: AMQPUri = url.expose().parse().map_err(|_: String| {
            "is not an AMQP URL lapin can read (check the credentials' escaping, the vhost and the ?query parameters)".to_string()
        })?;
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let vhost = parsed.path().trim_start_matches('/');
        let redacted = format!("{}://{shown_host}:{port}/{vhost}", parsed.scheme());
        Ok(Self {
            uri,
            host,
            port,
            tls,
            redacted,
        })
    }
}

impl fmt::Debug for BrokerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_their_real_host_and_printed_without_credentials() {
        let cases = [
            (
                "amqp://guest:s3cret@127.0.0.1:5673/%2f",
                "127.0.0.1",
                5673,
                "amqp://127.0.0.1:5673/%2f",
            ),
            (
                "amqps://u:p@rabbit.example:5671/prod?heartbeat=5",
                "rabbit.example",
                5671,
                "amqps://rabbit.example:5671/prod",
            ),
            ("amqp://[::1]/", "::1", 5672, "amqp://[::1]:5672/"),
        ];
        for (url, host, port, redacted) in cases {
            let endpoint = BrokerEndpoint::parse(&Secret::new(url)).expect(url);
            assert_eq!(
                (endpoint.host.as_str(), endpoint.port),
                (host, port),
                "{url}"
            );
            assert_eq!(endpoint.redacted, redacted);
            assert_eq!(format!("{endpoint:?}"), redacted);
        }
        let endpoint =
            BrokerEndpoint::parse(&Secret::new("amqp://u:p@h/%2f?heartbeat=5")).expect("valid");
        assert_eq!(endpoint.uri.query.heartbeat, Some(5));
        assert_eq!(endpoint.uri.authority.userinfo.password, "p");
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "http://guest:s3cret@host",
            "amqp://guest:s3cret@",
            "guest:s3cret",
            "amqp://guest:s3cret@host/%2f?heartbeat=often",
        ] {
            let problem = BrokerEndpoint::parse(&Secret::new(url)).expect_err(url);
            assert!(!problem.contains("s3cret"), "{url}: {problem}");
        }
    }
}
