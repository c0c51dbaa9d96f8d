//! A real `redis-server` for tests, on a unix socket in its own temp dir (no
//! port race), optionally with AOF. Stopped by PID when dropped
//! (`kill_on_drop`), or killed with SIGKILL on request and restarted on the
//! same socket and data dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    aof: bool,
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
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: apt-get install -y redis-server"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            dir,
            aof,
            child: None,
        };
        server.launch().await;
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}?protocol=resp3", self.socket().display())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn launch(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly"])
            .arg(if self.aof { "yes" } else { "no" })
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let client = redis::Client::open(self.url()).expect("redis url");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server not ready within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL the server (no shutdown save) and wait for it to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill redis-server");
            tokio::time::timeout(Duration::from_secs(10), child.wait())
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
