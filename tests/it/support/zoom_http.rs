//! The simulator's Zoom HTTP side called the way the app calls Zoom: the
//! OAuth authorize page and token endpoint, `users/me`, the RTMS app status
//! call, and an app context opened by hand. For the simulator's own tests.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

use super::sim::TestSim;

/// What the authorize page redirected to the app with.
pub struct Authorized {
    pub code: String,
    pub state: Option<String>,
}

pub async fn authorize(sim: &TestSim, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &sim.cfg.client_id),
        ("redirect_uri", "http://127.0.0.1:9/api/auth/callback"),
    ];
    q.extend_from_slice(extra);
    sim.http()
        .get(format!("{}/oauth/authorize", sim.base_url))
        .query(&q)
        .send()
        .await
        .expect("authorize")
}

pub async fn authorized(sim: &TestSim, extra: &[(&str, &str)]) -> Authorized {
    let r = authorize(sim, extra).await;
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().expect("ascii")).expect("url");
    assert!(
        loc.as_str()
            .starts_with("http://127.0.0.1:9/api/auth/callback?")
    );
    let get = |k: &str| {
        loc.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_string())
    };
    Authorized {
        code: get("code").expect("code"),
        state: get("state"),
    }
}

pub async fn token(sim: &TestSim, form: &[(&str, &str)], secret: Option<&str>) -> (u16, Value) {
    let r = sim
        .http()
        .post(format!("{}/oauth/token", sim.base_url))
        .basic_auth(
            &sim.cfg.client_id,
            Some(secret.unwrap_or(sim.cfg.client_secret.expose())),
        )
        .form(form)
        .send()
        .await
        .expect("token");
    (r.status().as_u16(), r.json().await.expect("json"))
}

pub async fn exchange(sim: &TestSim, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:9/api/auth/callback"),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    token(sim, &form, None).await
}

pub async fn me(sim: &TestSim, access: &str) -> (u16, Value) {
    let r = sim
        .http()
        .get(format!("{}/v2/users/me", sim.base_url))
        .bearer_auth(access)
        .send()
        .await
        .expect("me");
    (r.status().as_u16(), r.json().await.expect("json"))
}

pub async fn rtms_status(
    sim: &TestSim,
    access: &str,
    engagement: &str,
    body: Value,
) -> (u16, Option<Value>) {
    let r = sim
        .http()
        .put(format!(
            "{}/v2/contact_center/{engagement}/rtms_app/status",
            sim.base_url
        ))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("put");
    let status = r.status().as_u16();
    (status, r.json().await.ok())
}

/// Zoom's app context (`x-zoom-app-context`) opened with the client secret,
/// written apart from the app's own decoder.
pub fn decrypt_context(secret: &str, ctx: &str) -> Result<Value, String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(ctx)
        .map_err(|e| e.to_string())?;
    let iv_len = raw[0] as usize;
    let iv = &raw[1..1 + iv_len];
    let aad_len = u16::from_le_bytes([raw[1 + iv_len], raw[2 + iv_len]]) as usize;
    let aad = &raw[3 + iv_len..3 + iv_len + aad_len];
    let p = 3 + iv_len + aad_len;
    let ct_len = u32::from_le_bytes(raw[p..p + 4].try_into().map_err(|_| "len")?) as usize;
    let ct = &raw[p + 4..p + 4 + ct_len];
    let tag = &raw[p + 4 + ct_len..];
    if tag.len() != 16 {
        return Err("tag".into());
    }
    let key = sha2::Sha256::digest(secret.as_bytes());
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
    let sealed = [ct, tag].concat();
    let plain = cipher
        .decrypt(
            aes_gcm::Nonce::from_slice(iv),
            Payload { msg: &sealed, aad },
        )
        .map_err(|_| "decrypt".to_string())?;
    serde_json::from_slice(&plain).map_err(|e| e.to_string())
}
