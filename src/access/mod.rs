//! Access: who the caller is and what they may see or do — one policy,
//! enforced in one place.
//!
//! * [`policy`]: the decisions, as pure functions.
//! * [`routes`]: every route with its access rule, and the middleware that
//!   applies the rule (sign-in, operator, cross-site, rate limit) before any
//!   handler runs. A route missing from the table answers no one.
//! * [`Caller`] (an extractor) and [`Visibility`] (the per-engagement filter
//!   of snapshots, live events and lists) carry the decisions into handlers,
//!   which never re-derive them.
//!
//! Never lives anywhere else: handlers ask here; they do not compare user or
//! account ids themselves.

pub mod origin;
pub mod policy;
pub mod routes;

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum_extra::extract::PrivateCookieJar;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

pub use policy::{Caller, Control, Owner, Scope, User};

use crate::engagements::Engagement;
use crate::error::AppError;
use crate::state::AppState;
use crate::status::{BusEvent, EngagementView, Snapshot, StatusBus, StatusEvent};
use crate::store::{ActiveIndex, Store};

/// Who is calling: the operator token, else the browser session, else
/// nobody (everyone is [`Caller::Demo`] in demo mode). A wrong or
/// unexpected `Authorization` header is a 401, never a fall-through.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        return match &state.config.access.admin_token {
            Some(token) if same_secret(presented, token.expose()) => Ok(Caller::Operator),
            _ => Err(AppError::Unauthorized(
                "the Authorization header does not carry the operator token".into(),
            )),
        };
    }
    if state.config.is_demo() {
        return Ok(Caller::Demo);
    }
    let jar = PrivateCookieJar::from_headers(headers, state.cookie_key.clone());
    let Some(session) = crate::http::session::read(&jar) else {
        return Ok(Caller::Anonymous);
    };
    // A user who removed the app: sessions issued before that are void.
    let Some(session) = crate::http::session::unless_revoked(state, session).await else {
        return Ok(Caller::Anonymous);
    };
    let supervisor = state
        .config
        .access
        .supervisor_user_ids
        .contains(&session.user_id)
        || match state.store.user_role(&session.user_id).await {
            Ok(role) => role.as_deref().is_some_and(policy::is_supervisor_role),
            Err(e) => {
                tracing::warn!(error = %e, "reading the caller's role; treating them as an agent");
                false
            }
        };
    Ok(Caller::User(User {
        user_id: session.user_id,
        account_id: session.account_id,
        supervisor,
    }))
}

/// Constant time over the digests, so neither content nor length leaks.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !presented.is_empty() && bool::from(a.ct_eq(&b))
}

/// The caller, as the access middleware resolved it (or resolved here on a
/// route that takes anyone). Never anonymous on a signed-in route: the
/// middleware answered 401 before the handler.
impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        resolve(state, &parts.headers).await
    }
}

fn owner_of_view(view: &EngagementView) -> Owner<'_> {
    Owner {
        account_id: view.account_id.as_deref(),
        agent_user_id: view.agent_user_id.as_deref(),
    }
}

pub fn owner_of(engagement: &Engagement) -> Owner<'_> {
    Owner {
        account_id: engagement.account_id.as_deref(),
        agent_user_id: engagement.agent_user_id.as_deref(),
    }
}

/// Active engagements the caller may list, from the index that fits them:
/// O(their own engagements), never a scan of all.
pub async fn active_engagements(
    store: &Store,
    caller: &Caller,
) -> Result<Vec<Engagement>, crate::store::StoreError> {
    let index = match caller.scope() {
        Scope::Everything => ActiveIndex::All,
        Scope::Account(account) => ActiveIndex::Account(account),
        Scope::Agent(user) => ActiveIndex::Agent(user),
        Scope::Nothing => return Ok(Vec::new()),
    };
    let mut list = store.active_engagements_in(index).await?;
    list.retain(|e| policy::may_see(caller, Some(&owner_of(e))));
    Ok(list)
}

/// Most decisions one [`Visibility`] remembers before starting afresh.
const MAX_REMEMBERED: usize = 4096;

/// One caller's view of the status bus: decides per engagement (once, then
/// remembered) whether its events may reach them. An engagement the app
/// does not know is invisible to everyone but the operator until its
/// `engagement` event makes it known.
pub struct Visibility {
    caller: Caller,
    bus: StatusBus,
    store: Store,
    decided: HashMap<String, bool>,
}

impl Visibility {
    pub fn new(caller: Caller, bus: StatusBus, store: Store) -> Self {
        Self {
            caller,
            bus,
            store,
            decided: HashMap::new(),
        }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    fn sees_all(&self) -> bool {
        matches!(self.caller.scope(), Scope::Everything)
    }

    fn remember(&mut self, id: &str, visible: bool) {
        if self.decided.len() >= MAX_REMEMBERED {
            self.decided.clear();
        }
        self.decided.insert(id.to_owned(), visible);
    }

    /// May the caller see this engagement's data?
    pub async fn sees(&mut self, engagement_id: &str) -> bool {
        if self.sees_all() {
            return true;
        }
        if let Some(known) = self.decided.get(engagement_id) {
            return *known;
        }
        let visible = match self.bus.engagement_view(engagement_id) {
            Some(view) => policy::may_see(&self.caller, Some(&owner_of_view(&view))),
            None => match self.store.load_engagement(engagement_id).await {
                Ok(found) => policy::may_see(&self.caller, found.as_ref().map(owner_of).as_ref()),
                Err(e) => {
                    tracing::warn!(error = %e, "reading an engagement's owner; hiding it");
                    false
                }
            },
        };
        self.remember(engagement_id, visible);
        visible
    }

    /// May this bus event reach the caller? An `engagement` event carries its
    /// owner, so it (re)decides that engagement.
    pub async fn sees_event(&mut self, event: &BusEvent) -> bool {
        if self.sees_all() {
            return true;
        }
        if let BusEvent::Engagement(view) = event {
            let visible = policy::may_see(&self.caller, Some(&owner_of_view(view)));
            self.remember(&view.engagement_id, visible);
            return visible;
        }
        match event.engagement_id() {
            Some(id) => self.sees(id).await,
            None => policy::may_see_unowned(&self.caller, event),
        }
    }

    async fn sees_line(&mut self, line: &StatusEvent) -> bool {
        match &line.engagement_id {
            Some(id) => self.sees(id).await,
            None => !self.caller.is_anonymous(),
        }
    }

    /// Status lines the caller may see, order kept.
    pub async fn lines(&mut self, lines: Vec<StatusEvent>) -> Vec<StatusEvent> {
        if self.sees_all() {
            return lines;
        }
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            if self.sees_line(&line).await {
                out.push(line);
            }
        }
        out
    }

    /// The part of a snapshot the caller may see.
    pub async fn snapshot(&mut self, snap: Snapshot) -> Snapshot {
        if self.sees_all() {
            return snap;
        }
        let mut out = Snapshot {
            status: self.lines(snap.status).await,
            ..Snapshot::default()
        };
        for view in snap.engagements {
            let visible = policy::may_see(&self.caller, Some(&owner_of_view(&view)));
            self.remember(&view.engagement_id, visible);
            if visible {
                out.engagements.push(view);
            }
        }
        for stream in snap.streams {
            if self.sees(&stream.engagement_id).await {
                out.streams.push(stream);
            }
        }
        for line in snap.transcripts {
            if self.sees(&line.engagement_id).await {
                out.transcripts.push(line);
            }
        }
        out
    }
}
