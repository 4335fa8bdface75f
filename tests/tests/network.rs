//! Every way out of the process: proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`) and extra
//! trusted CAs (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) for the Azure DevOps and Port clients.
//!
//! A tiny proxy written here (absolute-form forwarding for `http://`, `CONNECT` tunnels for
//! `https://`) records what passes through it; a TLS front end with a certificate from a test
//! CA (made with rcgen) serves the Azure DevOps simulator over `https://`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_ingest::ado::AdoClient;
use adoport_publish::client::PortClient;
use adoport_shared::config::{AzureDevopsAccess, NetworkSettings, PortAccess, Secret};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// What the proxy saw: one line per request, e.g. `GET http://127.0.0.1:1/x` or
/// `CONNECT localhost:443`.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// Starts the proxy on 127.0.0.1; returns its URL and what it saw. It serves until the test's
/// runtime ends.
async fn start_proxy() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let _ = proxy_connection(client, record).await;
            });
        }
    });
    (url, seen)
}

/// One client connection: reads the request head, connects to the target, and relays bytes.
async fn proxy_connection(client: TcpStream, seen: Seen) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = head[0].trim_end().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    seen.0
        .lock()
        .expect("lock")
        .push(format!("{method} {target}"));
    let authority = if method == "CONNECT" {
        target.clone()
    } else {
        let rest = target.split_once("://").map_or(target.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or_default().to_string()
    };
    let mut upstream = TcpStream::connect(authority.as_str()).await?;
    if method == "CONNECT" {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
    } else {
        // Origin servers accept the absolute form; pass the head on unchanged.
        upstream.write_all(head.concat().as_bytes()).await?;
    }
    let buffered = reader.buffer().to_vec();
    upstream.write_all(&buffered).await?;
    let mut client = reader.into_inner();
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// A test CA and a server certificate for `localhost` signed by it.
struct TestCa {
    ca_pem: String,
    server: rustls::ServerConfig,
}

fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "adoport test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
    TestCa {
        ca_pem: ca.pem(),
        server,
    }
}

/// Serves TLS on 127.0.0.1 and relays the plain bytes to `upstream`; returns the port.
async fn start_tls_front(config: rustls::ServerConfig, upstream: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tls");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A refused handshake (the client does not trust the CA) ends here.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(upstream.as_str()).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ado_client(organization_url: String, network: NetworkSettings) -> AdoClient {
    let access = AzureDevopsAccess {
        organization_url,
        personal_access_token: Secret::new("sim-pat"),
        timeout_secs: 10,
        network,
    };
    AdoClient::new(&access, 4, CancellationToken::new()).expect("ado client")
}

fn port_client(base_url: String, network: NetworkSettings) -> PortClient {
    let access = PortAccess {
        base_url,
        client_id: "sim-client".into(),
        client_secret: Secret::new("sim-secret"),
        integration_identifier: "azure-devops".into(),
        integration_type: "azure-devops".into(),
        timeout_secs: 10,
        network,
    };
    PortClient::new(&access, "adoport-test".into()).expect("port client")
}

/// `host:port` of a `http://host:port` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn azure_devops_and_port_traffic_goes_through_http_proxy_unless_no_proxy() {
    let ado = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("ado sim");
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("port sim");
    let (proxy, seen) = start_proxy().await;
    let network = NetworkSettings::from_vars(&vars(&[("http_proxy", &proxy)])).expect("network");

    let page = tokio::time::timeout(
        WAIT,
        ado_client(ado.organization_url(), network.clone()).projects_page(None),
    )
    .await
    .expect("in time")
    .expect("projects through the proxy");
    assert!(!page.items.is_empty());
    let exists = tokio::time::timeout(
        WAIT,
        port_client(port.base_url(), network).integration_exists("azure-devops"),
    )
    .await
    .expect("in time")
    .expect("Port through the proxy");
    assert!(!exists);

    let lines = seen.lines();
    let ado_host = authority(&ado.base_url());
    let port_host = authority(&port.base_url());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("GET http://{ado_host}/"))
                && l.contains("_apis/projects")),
        "the proxy saw no Azure DevOps request: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("http://{port_host}/v1/auth/access_token"))),
        "the proxy saw no Port sign-in: {lines:?}"
    );

    // NO_PROXY exempts the simulators' host: the proxy sees nothing more.
    let before = seen.lines().len();
    let direct = NetworkSettings::from_vars(&vars(&[
        ("HTTP_PROXY", &proxy),
        ("NO_PROXY", "example.org,127.0.0.1"),
    ]))
    .expect("network");
    tokio::time::timeout(
        WAIT,
        ado_client(ado.organization_url(), direct).projects_page(None),
    )
    .await
    .expect("in time")
    .expect("projects direct");
    assert_eq!(
        seen.lines().len(),
        before,
        "NO_PROXY was not honoured: {:?}",
        seen.lines()
    );
}

#[tokio::test]
async fn tls_with_a_private_ca_is_refused_without_the_ca_file_and_accepted_with_it() {
    let ado = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("ado sim");
    let ca = test_ca();
    let tls_port = start_tls_front(ca.server.clone(), authority(&ado.base_url())).await;
    let organization = ado
        .organization_url()
        .rsplit('/')
        .next()
        .expect("org")
        .to_string();
    let https_url = format!("https://localhost:{tls_port}/{organization}");

    // Without the CA: the handshake fails on the certificate.
    let plain = adoport_shared::http::client_builder(&NetworkSettings::default())
        .expect("builder")
        .build()
        .expect("client");
    let refused = tokio::time::timeout(
        WAIT,
        plain.get(format!("{https_url}/_apis/projects")).send(),
    )
    .await
    .expect("in time")
    .expect_err("an unknown CA must be refused");
    let mut chain = refused.to_string();
    let mut source = std::error::Error::source(&refused);
    while let Some(e) = source {
        chain.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");

    // Ingest's client fails at once (no retries: a certificate does not heal) and says what to set.
    let client = ado_client(https_url.clone(), NetworkSettings::default());
    let refused = tokio::time::timeout(WAIT, client.projects_page(None))
        .await
        .expect("in time")
        .expect_err("an unknown CA must be refused");
    assert!(
        matches!(
            refused,
            adoport_ingest::ado::AdoError::UntrustedCertificate { .. }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("REQUESTS_CA_BUNDLE"),
        "{refused}"
    );
    assert_eq!(
        client
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "not retried"
    );

    // With the CA file named by REQUESTS_CA_BUNDLE (and by SSL_CERT_FILE): accepted.
    let dir = std::env::temp_dir().join(format!("adoport-network-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_file = dir.join("corp-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("write CA");
    let ca_path = ca_file.to_str().expect("utf-8 path");
    for variable in ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"] {
        let network = NetworkSettings::from_vars(&vars(&[(variable, ca_path)])).expect("network");
        let page = tokio::time::timeout(
            WAIT,
            ado_client(https_url.clone(), network).projects_page(None),
        )
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("accepted with {variable}: {e}"));
        assert!(!page.items.is_empty());
    }

    // Through an HTTPS proxy: the client tunnels with CONNECT, and TLS still verifies.
    let (proxy, seen) = start_proxy().await;
    let network = NetworkSettings::from_vars(&vars(&[
        ("HTTPS_PROXY", &proxy),
        ("REQUESTS_CA_BUNDLE", ca_path),
    ]))
    .expect("network");
    tokio::time::timeout(
        WAIT,
        ado_client(https_url.clone(), network).projects_page(None),
    )
    .await
    .expect("in time")
    .expect("projects through the CONNECT tunnel");
    let lines = seen.lines();
    assert!(
        lines.contains(&format!("CONNECT localhost:{tls_port}")),
        "the proxy saw no CONNECT: {lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
