//! Every route with its access rule, and the middleware that enforces the
//! rule before the handler runs.
//!
//! The table is the single list of what is public: a route not in it
//! answers 401 to everyone, so a new route cannot become public by accident.
//! The README's route table says the same (a test keeps them in step).

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Caller;
use super::origin::{self, Headers};
use crate::error::AppError;
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone, signed in or not.
    Anyone,
    /// A signed-in agent or supervisor, or the operator; what they receive
    /// is filtered to what they may see.
    SignedIn,
    /// Only the operator token (anyone in demo mode).
    Operator,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub who: Who,
    /// State-changing: same origin or a Zoom client origin only.
    pub same_origin: bool,
    /// Takes a JSON body: `Content-Type: application/json` only.
    pub json: bool,
    /// Anonymous and writes to the store: rate-limited per client.
    pub rate_limited: bool,
    /// The access rule in words (the README's route table).
    pub rule: &'static str,
}

const fn route(method: &'static str, path: &'static str, who: Who, rule: &'static str) -> Route {
    Route {
        method,
        path,
        who,
        same_origin: false,
        json: false,
        rate_limited: false,
        rule,
    }
}

impl Route {
    const fn same_origin(mut self) -> Self {
        self.same_origin = true;
        self
    }
    const fn json(mut self) -> Self {
        self.json = true;
        self
    }
    const fn rate_limited(mut self) -> Self {
        self.rate_limited = true;
        self
    }
}

use Who::{Anyone, Operator, SignedIn};

/// Every route the app serves.
pub const ROUTES: &[Route] = &[
    route("GET", "/", Anyone, "anyone"),
    route("GET", "/static/{*path}", Anyone, "anyone"),
    route("GET", "/health", Anyone, "anyone"),
    route("GET", "/ready", Anyone, "anyone"),
    route(
        "POST",
        "/api/webhooks/zoom",
        Anyone,
        "anyone with a valid Zoom signature",
    ),
    route(
        "GET",
        "/api/auth/install",
        Anyone,
        "anyone; rate-limited per client",
    )
    .rate_limited(),
    route(
        "GET",
        "/api/auth/callback",
        Anyone,
        "anyone; signs in only the browser that started the install; rate-limited per client",
    )
    .rate_limited(),
    route(
        "GET",
        "/api/auth/status",
        Anyone,
        "anyone; answers about the caller's own session only",
    ),
    route(
        "GET",
        "/api/auth/challenge",
        Anyone,
        "anyone, same origin or Zoom client; rate-limited per client",
    )
    .same_origin()
    .rate_limited(),
    route(
        "POST",
        "/api/auth/exchange",
        Anyone,
        "anyone, same origin or Zoom client, JSON body; rate-limited per client",
    )
    .same_origin()
    .json()
    .rate_limited(),
    route(
        "GET",
        "/api/context",
        Anyone,
        "anyone, same origin or Zoom client; rate-limited per client",
    )
    .same_origin()
    .rate_limited(),
    route(
        "GET",
        "/api/events",
        SignedIn,
        "signed in; only engagements the caller may see",
    ),
    route(
        "GET",
        "/api/webhooks/events",
        SignedIn,
        "signed in; only engagements the caller may see",
    ),
    route(
        "GET",
        "/api/engagement/active",
        SignedIn,
        "signed in; only engagements the caller may see",
    ),
    route(
        "POST",
        "/api/zoom/rtms/control",
        SignedIn,
        "the engagement's own agent, same origin or Zoom client, JSON body",
    )
    .same_origin()
    .json(),
    route(
        "GET",
        "/api/recordings",
        SignedIn,
        "signed in; only engagements the caller may see (404 otherwise)",
    ),
    route(
        "GET",
        "/api/recordings/{engagement_id}/{file}",
        SignedIn,
        "signed in; only engagements the caller may see (404 otherwise)",
    ),
    route("GET", "/api/stats", Operator, "operator token"),
    route("GET", "/metrics", Operator, "operator token"),
];

/// The rule for a request, by method (HEAD as GET) and route template.
pub fn lookup(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The access middleware (a route layer: it sees the matched template).
pub async fn enforce(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(path) = matched.as_ref().map(MatchedPath::as_str) else {
        return next.run(req).await;
    };
    let Some(route) = lookup(req.method(), path) else {
        return AppError::Unauthorized(format!("{} {path} has no access rule", req.method()))
            .into_response();
    };
    match check(&state, route, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal,
    }
}

async fn check(state: &AppState, route: &Route, req: &mut Request) -> Result<(), Response> {
    if route.rate_limited {
        let client = crate::http::edge::client_ip(
            req.extensions().get::<ConnectInfo<std::net::SocketAddr>>(),
        );
        state
            .edge
            .check_rate(client)
            .map_err(IntoResponse::into_response)?;
    }
    let headers = req.headers();
    let seen = Headers {
        origin: header(headers, header::ORIGIN),
        sec_fetch_site: header(headers, "sec-fetch-site"),
        host: header(headers, header::HOST),
        content_type: header(headers, header::CONTENT_TYPE),
    };
    if route.same_origin {
        let own = state
            .config
            .public_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization());
        origin::check_origin(&seen, own.as_deref(), &state.config.access.client_origins)
            .map_err(|reason| AppError::Forbidden(reason).into_response())?;
    }
    if route.json {
        origin::check_json(&seen).map_err(|reason| AppError::Forbidden(reason).into_response())?;
    }
    if route.who == Anyone {
        return Ok(());
    }
    let caller = super::resolve(state, req.headers())
        .await
        .map_err(IntoResponse::into_response)?;
    match (route.who, &caller) {
        (_, Caller::Anonymous) => {
            return Err(AppError::Unauthorized(
                "sign in first: open the app inside Zoom (or install it), or pass the operator token"
                    .into(),
            )
            .into_response());
        }
        (Operator, Caller::User(_)) => {
            return Err(
                AppError::Forbidden("this route is for the operator token".into()).into_response(),
            );
        }
        _ => {}
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_rule_and_the_anonymous_list_is_short() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[i + 1..]
                    .iter()
                    .all(|b| (a.method, a.path) != (b.method, b.path)),
                "{} {} listed twice",
                a.method,
                a.path
            );
            assert!(!a.rule.is_empty());
            if a.json || a.method == "POST" && a.who != Anyone {
                assert!(a.same_origin, "{} {} writes: same origin", a.method, a.path);
            }
        }
        let anonymous: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.who == Anyone)
            .map(|r| r.path)
            .collect();
        assert_eq!(
            anonymous,
            [
                "/",
                "/static/{*path}",
                "/health",
                "/ready",
                "/api/webhooks/zoom",
                "/api/auth/install",
                "/api/auth/callback",
                "/api/auth/status",
                "/api/auth/challenge",
                "/api/auth/exchange",
                "/api/context",
            ]
        );
        assert_eq!(
            lookup(&Method::HEAD, "/api/events").map(|r| r.who),
            Some(SignedIn)
        );
        assert!(lookup(&Method::DELETE, "/api/events").is_none());
    }

    #[test]
    fn the_readme_route_table_states_every_rule() {
        let readme = include_str!("../../README.md");
        for r in ROUTES {
            let needle = format!("`{} {}`", r.method, r.path);
            let row = readme
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&needle))
                .unwrap_or_else(|| panic!("README lists no {needle}"));
            assert!(
                row.contains(r.rule),
                "README row for {needle} lacks {:?}",
                r.rule
            );
        }
    }
}
