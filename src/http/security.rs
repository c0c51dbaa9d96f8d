//! Security headers on every response: the seed's CSP (with `script-src`
//! following the Apps SDK origin), HSTS, nosniff, Referrer-Policy, CORP and
//! COEP for the PWA iframe. No X-Frame-Options: the Zoom web client frames us.

use axum::http::{HeaderName, HeaderValue, header};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;

pub fn content_security_policy(config: &Config) -> String {
    format!(
        "default-src 'none'; object-src 'none'; worker-src 'none'; connect-src 'self'; \
         script-src 'self' {}; font-src 'self'; img-src 'self'; style-src 'self'; \
         base-uri 'self'; form-action 'self'",
        config.apps_sdk_origin()
    )
}

type H = SetResponseHeaderLayer<HeaderValue>;

pub type SecurityLayers =
    ServiceBuilder<Stack<H, Stack<H, Stack<H, Stack<H, Stack<H, Stack<H, Identity>>>>>>>;

pub fn layer(config: &Config) -> SecurityLayers {
    let csp = HeaderValue::from_str(&content_security_policy(config))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-embedder-policy"),
            HeaderValue::from_static("require-corp"),
        ))
}
