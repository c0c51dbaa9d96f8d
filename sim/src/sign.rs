//! The simulator's own Zoom signatures: webhook `x-zm-signature`, URL
//! validation tokens and the RTMS handshake signature.
//!
//! Deliberately independent of `zcc_rtms::webhook` (the app's verifier): the two
//! sides are separate implementations checked against the same test vectors
//! (`docs/zoom-platform.md` §4.6, `docs/rtms-protocol.md` §3), so a shared bug cannot hide.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `x-zm-signature` for a webhook: `v0=` + hex HMAC-SHA256(secret token,
/// `v0:{timestamp}:{body}`).
pub fn webhook_signature(secret_token: &str, timestamp_secs: i64, body: &[u8]) -> String {
    webhook_signature_at(secret_token, &timestamp_secs.to_string(), body)
}

/// The same over the `x-zm-request-timestamp` header's text as sent, for
/// callers that sign a malformed timestamp on purpose (tests).
pub fn webhook_signature_at(secret_token: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hmac_hex(secret_token, &[b"v0:", timestamp.as_bytes(), b":", body])
    )
}

/// `encryptedToken` of an `endpoint.url_validation` answer.
pub fn url_validation_token(secret_token: &str, plain_token: &str) -> String {
    hmac_hex(secret_token, &[plain_token.as_bytes()])
}

/// RTMS handshake signature: hex HMAC-SHA256(client secret,
/// `client_id,instance_id,stream_id`).
pub fn rtms_signature(
    client_id: &str,
    client_secret: &str,
    instance_id: &str,
    stream_id: &str,
) -> String {
    hmac_hex(
        client_secret,
        &[
            client_id.as_bytes(),
            b",",
            instance_id.as_bytes(),
            b",",
            stream_id.as_bytes(),
        ],
    )
}

/// Constant-time equality of two ASCII signatures.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signature_matches_the_platform_doc_vector() {
        let body = r#"{"event":"contact_center.voice_rtms_started","event_ts":1700000000123,"payload":{"engagement_id":"ENG123","rtms_stream_id":"abc123stream","server_urls":"wss://rtms.example.invalid/signal"}}"#;
        assert_eq!(
            webhook_signature("test_webhook_secret", 1_700_000_000, body.as_bytes()),
            "v0=bb37124150b028b0e3cbdb4df230c2924d25441f23f86d62a251b6dec811319f"
        );
    }

    #[test]
    fn url_validation_token_matches_the_platform_doc_vector() {
        assert_eq!(
            url_validation_token("test_webhook_secret", "qgg8vlvZRS6UYooatFL8Aw"),
            "09359a50e99d4458b0fa2a1b6c26843806f7f13c24f49feafcff9b5d52427f91"
        );
    }

    #[test]
    fn rtms_signature_matches_the_protocol_doc_vectors() {
        assert_eq!(
            rtms_signature(
                "probe_client_id",
                "probe_client_secret",
                "EngProbe-1234567890abcdef",
                "0123456789abcdef0123456789abcdef"
            ),
            "05d10536b86b33f7fc0434060e82a529f95b7f0b9d41ceb14f3f966e895eb23f"
        );
        assert_eq!(
            rtms_signature(
                "probe_client_id",
                "probe_client_secret",
                "abcDEF+/xyz==",
                "0123456789abcdef0123456789abcdef"
            ),
            "4941e1fd5f141864e6c12e7b582cdd871f6bb643aa6de2981514a4d5527d5ded"
        );
        assert_eq!(
            rtms_signature(
                "TESTCLIENTID",
                "test_client_secret_123",
                "ENG123",
                "abc123stream"
            ),
            "745a592a99c6a4a6ff80e7f935de600ba53e0227bbe6367004d452284d89a567"
        );
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
