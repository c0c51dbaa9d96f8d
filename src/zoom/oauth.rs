//! OAuth helpers with no IO: PKCE verifiers and challenges, and the signed,
//! short-lived `state` parameter.
//!
//! `state` is `{nonce}.{expires_at_secs}.{signature}`: the signature is
//! HMAC-SHA256 (key derived from `SESSION_SECRET`) over nonce and expiry, so
//! it cannot be forged or extended. The nonce names the PKCE verifier kept in
//! the store, which is taken once: a replayed `state` finds nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::util::random_b64;

/// How long an install may take between `/install` and `/callback`.
pub const STATE_TTL_SECS: i64 = 10 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    S256,
    Plain,
}

impl PkceMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PkceMethod::S256 => "S256",
            PkceMethod::Plain => "plain",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "S256" | "s256" => Some(PkceMethod::S256),
            "plain" => Some(PkceMethod::Plain),
            _ => None,
        }
    }
}

/// A PKCE code verifier: 43 characters from the unreserved set (RFC 7636).
pub fn new_verifier() -> String {
    random_b64(32)
}

pub fn challenge(verifier: &str, method: PkceMethod) -> String {
    match method {
        PkceMethod::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        PkceMethod::Plain => verifier.to_owned(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the state parameter is malformed")]
    Malformed,
    #[error("the state parameter was not issued by this app")]
    BadSignature,
    #[error("the install took too long; start again")]
    Expired,
}

#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
}

impl StateSigner {
    pub fn new(session_secret: &str) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_secret.as_bytes())
            .expect("HMAC takes any key");
        mac.update(b"zcc-rtms oauth state v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn sign(&self, nonce: &str, exp: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC key");
        mac.update(nonce.as_bytes());
        mac.update(b".");
        mac.update(exp.to_string().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new state and its nonce.
    pub fn issue(&self, now_secs: i64) -> (String, String) {
        let nonce = random_b64(16);
        let exp = now_secs + STATE_TTL_SECS;
        let state = format!("{nonce}.{exp}.{}", self.sign(&nonce, exp));
        (state, nonce)
    }

    /// Check a state; returns its nonce.
    pub fn verify(&self, state: &str, now_secs: i64) -> Result<String, StateError> {
        if state.len() > 256 {
            return Err(StateError::Malformed);
        }
        let mut parts = state.splitn(3, '.');
        let (Some(nonce), Some(exp), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StateError::Malformed);
        };
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StateError::Malformed);
        }
        let exp: i64 = exp.parse().map_err(|_| StateError::Malformed)?;
        let expected = self.sign(nonce, exp);
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return Err(StateError::BadSignature);
        }
        if exp < now_secs {
            return Err(StateError::Expired);
        }
        Ok(nonce.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenge_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge(verifier, PkceMethod::S256),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(challenge(verifier, PkceMethod::Plain), verifier);
        assert_eq!(new_verifier().len(), 43);
    }

    #[test]
    fn state_round_trips_and_rejects_forgery_expiry_and_garbage() {
        let s = StateSigner::new("a-session-secret-of-32-characters!!");
        let (state, nonce) = s.issue(1000);
        assert_eq!(s.verify(&state, 1000), Ok(nonce.clone()));
        assert_eq!(
            s.verify(&state, 1000 + STATE_TTL_SECS + 1),
            Err(StateError::Expired)
        );
        let other = StateSigner::new("another-session-secret-of-32-chars!!");
        assert_eq!(other.verify(&state, 1000), Err(StateError::BadSignature));
        let extended = format!(
            "{nonce}.99999999999.{}",
            state.rsplit('.').next().unwrap_or("")
        );
        assert_eq!(s.verify(&extended, 1000), Err(StateError::BadSignature));
        for bad in ["", "abc", "a.b.c", "..", "a b.1.x", &"x".repeat(300)] {
            assert!(s.verify(bad, 1000).is_err(), "{bad:?}");
        }
    }
}
