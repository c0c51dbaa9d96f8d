//! The page: static files embedded in the binary (no build step), served at
//! `/` and `/static/*`.
//!
//! `index.html` carries three values the page needs before it can ask anything
//! (the Apps SDK URL, which follows `ZOOM_APPS_SDK_URL`, demo/zoom mode, and
//! whether calls are recorded)
//! in `<meta>` tags filled in here: no inline script, nothing for the CSP to
//! allow. Everything else is served as is.

use std::borrow::Cow;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/static/{*path}", get(file))
}

async fn index(State(state): State<AppState>) -> Response {
    let Some(content) = Assets::get("index.html") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let html = String::from_utf8_lossy(&content.data);
    let mode = state.config.mode.as_str();
    let html = html
        .replace(
            "{{APPS_SDK_URL}}",
            &escape_attr(state.config.apps_sdk_url.as_str()),
        )
        .replace("{{MODE}}", mode)
        .replace(
            "{{RECORDINGS}}",
            if state.config.recordings.is_some() {
                "on"
            } else {
                "off"
            },
        );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        html,
    )
        .into_response()
}

async fn file(Path(path): Path<String>) -> Response {
    if path == "index.html" {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match Assets::get(&path) {
        Some(content) => {
            let mime = content.metadata.mimetype().to_owned();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    // Short: a new binary must not be stuck behind old modules.
                    (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
                ],
                content.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn escape_attr(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['&', '"', '<', '>', '\'']) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(
        raw.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_escaped() {
        assert_eq!(escape_attr("https://a/b?x=1"), "https://a/b?x=1");
        assert_eq!(escape_attr("a\"><b"), "a&quot;&gt;&lt;b");
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        for name in Assets::iter() {
            if !name.ends_with(".html") {
                continue;
            }
            let file = Assets::get(&name).expect("listed file");
            let html = String::from_utf8_lossy(&file.data);
            assert!(!html.contains("style="), "{name} has a style attribute");
            assert!(!html.contains("<style"), "{name} has a style element");
            assert!(!html.contains(" on"), "{name} may have an inline handler");
            for (i, _) in html.match_indices("<script") {
                let tag = &html[i..html[i..].find('>').map_or(html.len(), |e| i + e)];
                assert!(tag.contains("src="), "{name} has an inline script: {tag}");
            }
        }
    }
}
