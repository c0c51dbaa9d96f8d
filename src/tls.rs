//! TLS client configuration shared by the Zoom HTTP client and the RTMS
//! WebSocket client: the public web roots, plus an optional extra root (a
//! simulator's CA) from `ZOOM_CA_CERT`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Install ring as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client_config(extra_root: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_root {
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA certificate {}", path.display()))?
        {
            let cert =
                cert.with_context(|| format!("parsing CA certificate {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("adding CA certificate {}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client for Zoom calls: our TLS roots, timeouts on every call.
pub fn http_client(tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls((**tls).clone())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("zcc-rtms/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}
