//! `x-zm-signature` verification: `v0=` + hex HMAC-SHA256 of `v0:{ts}:{body}`
//! keyed with the webhook secret token, compared in constant time, with the
//! request timestamp within a window of the current time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Accepted clock difference between Zoom's timestamp and ours.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing x-zm-request-timestamp header")]
    MissingTimestamp,
    #[error("missing x-zm-signature header")]
    MissingSignature,
    #[error("x-zm-request-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("x-zm-request-timestamp is more than 300 s away from now")]
    StaleTimestamp,
    #[error("x-zm-signature does not match")]
    BadSignature,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
}

/// The header value Zoom sends for `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(b"v0:");
    m.update(timestamp.as_bytes());
    m.update(b":");
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// The `encryptedToken` answering an `endpoint.url_validation` challenge.
pub fn url_validation_token(secret: &str, plain_token: &str) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(plain_token.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let timestamp = timestamp.ok_or(VerifyError::MissingTimestamp)?.trim();
    let signature = signature.ok_or(VerifyError::MissingSignature)?.trim();
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if !within_window(now_secs, ts) {
        return Err(VerifyError::StaleTimestamp);
    }
    let expected = sign(secret, timestamp, body);
    if expected.as_bytes().ct_eq(signature.as_bytes()).into() {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Whether `ts` is at most [`MAX_SKEW_SECS`] away from `now_secs`, for any
/// two `i64`s (the difference is taken without overflow).
fn within_window(now_secs: i64, ts: i64) -> bool {
    now_secs.abs_diff(ts) <= MAX_SKEW_SECS.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"event":"contact_center.voice_rtms_started","event_ts":1700000000123,"payload":{"engagement_id":"ENG123","rtms_stream_id":"abc123stream","server_urls":"wss://rtms.example.invalid/signal"}}"#;

    #[test]
    fn matches_the_documented_vector() {
        assert_eq!(
            sign("test_webhook_secret", "1700000000", BODY.as_bytes()),
            "v0=bb37124150b028b0e3cbdb4df230c2924d25441f23f86d62a251b6dec811319f"
        );
        assert_eq!(
            url_validation_token("test_webhook_secret", "qgg8vlvZRS6UYooatFL8Aw"),
            "09359a50e99d4458b0fa2a1b6c26843806f7f13c24f49feafcff9b5d52427f91"
        );
    }

    #[test]
    fn accepts_good_and_rejects_bad_stale_and_missing() {
        let sig = sign("s", "1000", b"{}");
        assert_eq!(verify("s", Some("1000"), Some(&sig), b"{}", 1100), Ok(()));
        assert_eq!(
            verify("s", Some("1000"), Some(&sig), b"{ }", 1100),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify("other", Some("1000"), Some(&sig), b"{}", 1100),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify("s", Some("1000"), Some(&sig), b"{}", 1301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            verify("s", None, Some(&sig), b"{}", 1000),
            Err(VerifyError::MissingTimestamp)
        );
        assert_eq!(
            verify("s", Some("1000"), None, b"{}", 1000),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            verify("s", Some("soon"), Some(&sig), b"{}", 1000),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let now = 1_700_000_000;
        for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let t = ts.to_string();
            let sig = sign("s", &t, b"{}");
            assert_eq!(
                verify("s", Some(&t), Some(&sig), b"{}", now),
                Err(VerifyError::StaleTimestamp),
                "{ts}"
            );
        }
        assert!(within_window(i64::MAX, i64::MAX));
        assert!(!within_window(i64::MIN, i64::MAX));
        assert!(!within_window(i64::MAX, i64::MIN));
        assert!(within_window(now, now - MAX_SKEW_SECS));
        assert!(!within_window(now, now + MAX_SKEW_SECS + 1));
    }
}
