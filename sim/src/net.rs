//! The simulator's network ends: its listener, plain TCP or TLS (a CA and a
//! server certificate made at start), each connection wrapped so a fault can
//! abort it with a TCP reset instead of a WebSocket close; and the HTTP client
//! its webhooks go out with. TLS is rustls with ring only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection control shared with the handlers.
#[derive(Debug)]
pub struct ConnCtl {
    pub id: u64,
    abort: AtomicBool,
}

impl ConnCtl {
    fn new() -> Arc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            abort: AtomicBool::new(false),
        })
    }

    /// When the connection is dropped, reset it (RST) instead of closing (FIN).
    pub fn abort_on_drop(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that resets on drop once [`ConnCtl::abort_on_drop`] was called.
pub struct SimIo {
    tcp: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for SimIo {
    fn drop(&mut self) {
        if self.ctl.abort.load(Ordering::SeqCst) {
            // SO_LINGER 0 makes close() send RST. A zero linger never blocks.
            #[allow(deprecated)]
            let _ = self.tcp.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

pub enum SimStream {
    Plain(SimIo),
    Tls(Box<tokio_rustls::server::TlsStream<SimIo>>),
}

impl SimStream {
    pub fn ctl(&self) -> &Arc<ConnCtl> {
        match self {
            SimStream::Plain(io) => &io.ctl,
            SimStream::Tls(tls) => &tls.get_ref().0.ctl,
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            SimStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SimStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            SimStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(io) => Pin::new(io).poll_flush(cx),
            SimStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            SimStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Feeds accepted (and, with TLS, handshaken) connections to axum.
pub struct SimListener {
    rx: mpsc::Receiver<(SimStream, SocketAddr)>,
    local: SocketAddr,
}

impl SimListener {
    /// Start accepting on `listener`; handshakes run in their own tasks so a
    /// slow client never stalls the accept loop.
    pub fn start(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let acceptor = tls.map(TlsAcceptor::from);
        let inner_tracker = tracker.clone();
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => r,
                };
                let (tcp, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let io = SimIo {
                    tcp,
                    ctl: ConnCtl::new(),
                };
                match &acceptor {
                    None => {
                        if tx.send((SimStream::Plain(io), addr)).await.is_err() {
                            break;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        inner_tracker.spawn(async move {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io))
                                .await
                            {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send((SimStream::Tls(Box::new(tls)), addr)).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %addr, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What a handler learns about its connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub ctl: Arc<ConnCtl>,
    pub remote: SocketAddr,
}

impl Connected<IncomingStream<'_, SimListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        ConnInfo {
            ctl: stream.io().ctl().clone(),
            remote: *stream.remote_addr(),
        }
    }
}

/// The host name URLs use for a listen address.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V6(v6) if v6.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A CA written to disk and a server config whose certificate it signed.
pub struct Certs {
    pub server: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    dir: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Make a CA and a server certificate for `localhost`, `127.0.0.1` (as an IP
/// and, for the official SDK that matches host names as DNS names, as a DNS
/// name), `::1` and the listen address.
pub fn make_certs(listen_ip: IpAddr) -> anyhow::Result<Certs> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "zcc-rtms simulator CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let leaf_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::DnsName("127.0.0.1".try_into()?));
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !listen_ip.is_unspecified() && !ips.contains(&listen_ip) {
        ips.push(listen_ip);
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&leaf_key, &ca)?;

    install_crypto_provider();
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .context("server certificate")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];

    let dir = std::env::temp_dir().join(format!("zcc-rtms-sim-{}", crate::util::random_hex(6)));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_pem = ca.pem();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).with_context(|| format!("writing {}", ca_path.display()))?;
    Ok(Certs {
        server: Arc::new(server),
        ca_pem,
        ca_path,
        dir,
    })
}

/// Install ring as the process-wide rustls provider (idempotent; the app
/// installs the same one).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client webhooks go out with: the public web roots, timeouts on every
/// call, no redirects followed.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the simulator's HTTP client")
}

impl Certs {
    pub fn path(&self) -> &Path {
        &self.ca_path
    }
}
