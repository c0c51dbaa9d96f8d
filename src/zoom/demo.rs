//! Demo mode's install: a real OAuth install against the in-process
//! simulator (authorize → code → token exchange → users/me → store), so the
//! demo exercises exactly the path a real Zoom install takes.

use anyhow::Context as _;

use super::Caller;
use super::oauth::{self, PkceMethod};
use crate::state::AppState;
use zoom_sim::SimHandle;

/// Install the app for the simulator's default user and make that user the
/// caller of requests without a session.
pub async fn auto_install(state: &AppState, sim: &SimHandle) -> anyhow::Result<()> {
    let user = sim.default_user();
    let verifier = oauth::new_verifier();
    let challenge = oauth::challenge(&verifier, PkceMethod::S256);
    let url = state.zoom.authorize_url(
        None,
        Some((&challenge, PkceMethod::S256)),
        &[("sim_user", &user.user_id)],
    );
    // The shared client follows no redirects: read Zoom's answer ourselves.
    let resp = state
        .http
        .get(url)
        .timeout(super::CALL_TIMEOUT)
        .send()
        .await
        .context("asking the simulator to authorize the demo user")?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("authorize answered {} without a redirect", resp.status()))?;
    let location = url::Url::parse(location).context("authorize redirect is not a URL")?;
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("authorize redirect carries no code")?;
    let redirect = state.zoom.config().redirect_url.to_string();
    let record = state
        .zoom
        .install(&code, &redirect, Some(&verifier))
        .await
        .context("exchanging the demo install's code")?;
    state.zoom.set_default_caller(Caller {
        account_id: record.account_id,
        user_id: Some(record.user_id),
    });
    tracing::info!("demo: installed the app for the simulated agent");
    Ok(())
}
