//! A real `redis-server` for tests, the one place that spawns it: on a unix
//! socket in its own temp dir (no port race), optionally with AOF; or
//! listening with TLS only (`--port 0 --tls-port N`) with a certificate
//! signed by a CA made here (`ca()` names it). Stopped by PID when dropped
//! (`kill_on_drop`), or killed with SIGKILL on request and restarted on the
//! same socket and data dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio::process::{Child, Command};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Longest wait for the server to answer after it is spawned.
const READY: Duration = Duration::from_secs(20);

/// How the server listens.
enum Listen {
    /// `redis.sock` in the data dir.
    Unix,
    /// TLS only, on 127.0.0.1 at this port; `ca.pem`, `server.pem`,
    /// `server.key` in the data dir.
    Tls { port: u16 },
}

pub struct RedisServer {
    dir: tempfile::TempDir,
    aof: bool,
    listen: Listen,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a server without persistence.
    pub async fn start() -> RedisServer {
        Self::start_with(false).await
    }

    /// Start a server with the append-only file on (default fsync policy).
    pub async fn start_with_aof() -> RedisServer {
        Self::start_with(true).await
    }

    async fn start_with(aof: bool) -> RedisServer {
        let mut server = RedisServer {
            dir: data_dir(),
            aof,
            listen: Listen::Unix,
            child: None,
        };
        server.launch().await;
        server
    }

    /// Start a server that speaks TLS only, on a free loopback port, with a
    /// certificate for `localhost` and 127.0.0.1 signed by its own CA.
    pub async fn start_tls() -> RedisServer {
        let dir = data_dir();
        write_certificates(dir.path());
        let mut server = RedisServer {
            dir,
            aof: false,
            listen: Listen::Tls { port: free_port() },
            child: None,
        };
        server.launch().await;
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL to reach the server: `redis+unix://…` or `rediss://…`.
    pub fn url(&self) -> String {
        match self.listen {
            Listen::Unix => format!("redis+unix://{}?protocol=resp3", self.socket().display()),
            Listen::Tls { port } => format!("rediss://127.0.0.1:{port}/"),
        }
    }

    /// The TLS port (None on a unix socket).
    pub fn tls_port(&self) -> Option<u16> {
        match self.listen {
            Listen::Unix => None,
            Listen::Tls { port } => Some(port),
        }
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        assert!(self.tls_port().is_some(), "only a TLS server has a CA");
        self.dir.path().join("ca.pem")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Spawn the server and wait until it answers. A TLS port taken by
    /// someone else between `free_port` and the spawn makes the server exit:
    /// then another port is tried (a bounded number of times).
    async fn launch(&mut self) {
        for _ in 0..5 {
            let mut child = self.command().spawn().expect("spawn redis-server");
            if self.wait_ready(&mut child).await {
                self.child = Some(child);
                return;
            }
            match self.listen {
                Listen::Tls { .. } => self.listen = Listen::Tls { port: free_port() },
                Listen::Unix => panic!("redis-server exited at start"),
            }
        }
        panic!("redis-server found no free TLS port in 5 tries");
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(REDIS_SERVER);
        match self.listen {
            Listen::Unix => {
                cmd.args(["--port", "0", "--unixsocket"])
                    .arg(self.socket())
                    .args(["--unixsocketperm", "700"]);
            }
            Listen::Tls { port } => {
                cmd.args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
                    .arg(port.to_string())
                    .arg("--tls-cert-file")
                    .arg(dir.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        cmd.args(["--save", "", "--appendonly"])
            .arg(if self.aof { "yes" } else { "no" })
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Whether `child` came up: a unix-socket server answers PING; a TLS
    /// server accepts a TCP connection (the handshake is the tests'
    /// business). False when it exited first.
    async fn wait_ready(&self, child: &mut Child) -> bool {
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if child.try_wait().expect("redis-server status").is_some() {
                return false;
            }
            let ready = match self.listen {
                Listen::Unix => ping(&self.url()).await,
                Listen::Tls { port } => tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok(),
            };
            if ready {
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server not ready within {READY:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL the server (no shutdown save) and wait for it to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill redis-server");
            tokio::time::timeout(READY, child.wait())
                .await
                .expect("redis-server exits after SIGKILL")
                .expect("wait");
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Start again on the same socket and data dir (AOF is replayed).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill9 first");
        self.launch().await;
    }
}

async fn ping(url: &str) -> bool {
    let client = redis::Client::open(url).expect("redis url");
    match client.get_multiplexed_async_connection().await {
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

fn data_dir() -> tempfile::TempDir {
    assert!(
        Path::new(REDIS_SERVER).exists(),
        "{REDIS_SERVER} is missing: apt-get install -y redis-server"
    );
    tempfile::tempdir().expect("tempdir")
}

/// A free port from the kernel, handed to redis-server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `ca.pem`, and `server.pem`/`server.key` for `localhost` and 127.0.0.1
/// signed by that CA, into `dir`.
fn write_certificates(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "redis test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&key, &ca).expect("leaf");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.join("server.pem"), leaf.pem()).expect("server.pem");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("key");
}
