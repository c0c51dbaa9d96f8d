//! `zcc-rtms doctor`: checks the configuration and what it points at, and
//! says plainly what is wrong, one line per check; and `zcc-rtms
//! healthcheck`, the container's probe of a running app. Changes nothing.

use std::time::Duration;

use crate::config::Config;
use crate::store::{Backend, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    pub what: &'static str,
    pub detail: String,
}

impl Check {
    fn new(verdict: Verdict, what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            verdict,
            what,
            detail: detail.into(),
        }
    }

    pub fn line(&self) -> String {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        format!("{tag}  {:<12} {}", self.what, self.detail)
    }
}

/// Run every check (network calls time out after 5 s).
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks = vec![Check::new(
        Verdict::Ok,
        "config",
        format!(
            "valid; mode {}{}; listening on {}",
            config.mode.as_str(),
            if config.is_demo() {
                " (built-in simulator)"
            } else {
                ""
            },
            config.listen
        ),
    )];
    checks.push(store(config).await);
    if config.is_demo() {
        checks.push(Check::new(
            Verdict::Ok,
            "zoom",
            "demo mode: the built-in simulator stands in for Zoom",
        ));
        return checks;
    }
    checks.push(public_url(config));
    match crate::tls::client_config(config.zoom.ca_cert.as_deref())
        .and_then(|tls| crate::tls::http_client(&tls))
    {
        Ok(http) => {
            checks.push(reachable(&http, "zoom host", config.zoom.host.as_str()).await);
            let me = format!(
                "{}/users/me",
                config.zoom.api_url.as_str().trim_end_matches('/')
            );
            checks.push(reachable(&http, "zoom api", &me).await);
        }
        Err(e) => checks.push(Check::new(Verdict::Fail, "tls", format!("{e:#}"))),
    }
    checks.push(Check::new(
        Verdict::Ok,
        "apps sdk",
        format!(
            "{} (CSP script-src {})",
            config.apps_sdk_url,
            config.apps_sdk_origin()
        ),
    ));
    checks
}

async fn store(config: &Config) -> Check {
    let (backend, name) = match &config.redis_url {
        Some(url) => (
            Backend::Redis {
                url: url.clone(),
                ca_cert: config.redis_ca_cert.clone(),
            },
            "redis".to_owned(),
        ),
        None => (
            Backend::Embedded {
                dir: config.data_dir.clone(),
            },
            format!("embedded ({})", config.data_dir.display()),
        ),
    };
    let opened = tokio::time::timeout(
        Duration::from_secs(15),
        Store::open(&backend, &config.token_encryption_key, &config.store_prefix),
    )
    .await;
    match opened {
        Err(_) => Check::new(Verdict::Fail, "store", format!("{name}: no answer in 15 s")),
        Ok(Err(e)) => Check::new(Verdict::Fail, "store", format!("{name}: {e}")),
        Ok(Ok(store)) => match store.ping().await {
            Ok(()) => Check::new(
                Verdict::Ok,
                "store",
                format!("{name}: opened and answering"),
            ),
            Err(e) => Check::new(Verdict::Fail, "store", format!("{name}: {e}")),
        },
    }
}

fn public_url(config: &Config) -> Check {
    match &config.public_url {
        Some(url) if url.scheme() == "https" => Check::new(
            Verdict::Ok,
            "public url",
            format!("{url} (webhooks: {url}api/webhooks/zoom)"),
        ),
        Some(url) => Check::new(
            Verdict::Warn,
            "public url",
            format!("{url} is not https: Zoom sends webhooks and opens apps only over https"),
        ),
        None => Check::new(
            Verdict::Warn,
            "public url",
            "PUBLIC_URL is not set: Zoom cannot reach webhooks or the OAuth redirect",
        ),
    }
}

/// Any HTTP answer means the host is reachable (no token is sent, so the API
/// answers 401).
async fn reachable(http: &reqwest::Client, what: &'static str, url: &str) -> Check {
    let sent = http.get(url).timeout(Duration::from_secs(5)).send().await;
    match sent {
        Ok(resp) => Check::new(
            Verdict::Ok,
            what,
            format!("{url} answers (HTTP {})", resp.status().as_u16()),
        ),
        Err(e) => Check::new(Verdict::Fail, what, format!("{url}: cannot reach: {e}")),
    }
}

/// The container health check: `GET /health` of the app on this host's
/// `port` answers 200 with `"status":"ok"` within 4 s. The answer or the
/// reason it is unhealthy, in one line.
pub async fn probe_health(port: u16) -> Result<String, String> {
    let url = format!("http://127.0.0.1:{port}{}", crate::http::HEALTH_PATH);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: no answer: {e}"))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("{url}: HTTP {status}, unreadable body: {e}"))?;
    let ok = serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["status"] == "ok");
    if status.is_success() && ok {
        Ok(format!("healthy: {url} answered {body}"))
    } else {
        Err(format!("unhealthy: {url} answered HTTP {status}"))
    }
}
