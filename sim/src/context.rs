//! The Zoom app context, encrypted as Zoom does (`docs/zoom-platform.md` §2.2):
//! AES-256-GCM with key SHA-256(client secret), packed as
//! `iv_len | iv | aad_len (LE16) | aad | ct_len (LE32) | ct | tag16`, then
//! base64url without padding.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// How long a context lives: Zoom's are about two minutes.
pub const CONTEXT_TTL_MS: i64 = 120_000;

/// The decrypted JSON, in Zoom's field order.
#[derive(Debug, Clone, Serialize)]
pub struct AppContextClaims {
    pub typ: String,
    pub uid: String,
    pub aud: String,
    pub iss: String,
    pub ts: i64,
    pub exp: i64,
    pub entitlements: Vec<String>,
}

impl AppContextClaims {
    pub fn panel(uid: &str, client_id: &str, now_ms: i64) -> Self {
        Self {
            typ: "panel".into(),
            uid: uid.into(),
            aud: client_id.into(),
            iss: "marketplace.zoom.us".into(),
            ts: now_ms,
            exp: now_ms + CONTEXT_TTL_MS,
            entitlements: Vec::new(),
        }
    }
}

/// Encrypt `plaintext` with a given 12-byte IV and AAD.
pub fn encrypt_with(client_secret: &str, iv: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> String {
    let key = Sha256::digest(client_secret.as_bytes());
    let cipher = Aes256Gcm::new_from_slice(&key).expect("SHA-256 gives a 32-byte key");
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer does not fail");
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    let mut out = Vec::with_capacity(1 + iv.len() + 2 + aad.len() + 4 + sealed.len());
    out.push(iv.len() as u8);
    out.extend_from_slice(iv);
    out.extend_from_slice(&(aad.len() as u16).to_le_bytes());
    out.extend_from_slice(aad);
    out.extend_from_slice(&(ct.len() as u32).to_le_bytes());
    out.extend_from_slice(ct);
    out.extend_from_slice(tag);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

/// Encrypt claims with a fresh random IV and no AAD.
pub fn encrypt(client_secret: &str, claims: &AppContextClaims) -> String {
    use rand::RngCore as _;
    let mut iv = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut iv);
    let json = serde_json::to_vec(claims).expect("claims serialize");
    encrypt_with(client_secret, &iv, &[], &json)
}

/// Flip one bit of the ciphertext so the tag no longer verifies (fault).
pub fn tamper(context: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match engine.decode(context) {
        Ok(mut bytes) if bytes.len() > 20 => {
            let i = bytes.len() - 20;
            bytes[i] ^= 0x01;
            engine.encode(bytes)
        }
        _ => format!("{context}x"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_reproduces_the_platform_doc_worked_example() {
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        let plaintext = r#"{"typ":"panel","uid":"AbCdEfGhIjKlMnOpQrStUv","aud":"TESTCLIENTID","iss":"marketplace.zoom.us","ts":1700000000000,"exp":1700000120000,"entitlements":[]}"#;
        let expected = "DAABAgMEBQYHCAkKCwAAmAAAAKidwJpti63zlSGT64lnFIP-cIBjfLbDHLBjL6Fry_Xho0Q2fAn59r7A4tj-pgFD2qhtKShTvCDr2VG-DoEav0rjF7aTglFDUnYpzwBwgBK5mhYLe6jppoXa26uuYxhHrXdLMZrDDJxlcv0A7wp4zAYZzXnHD5Mjm1_kaOSLDxLu_XtMJ3aQPU3XZRwgXUwPsWXZ0SPUD02lOQXaoFklEctYMvQTtbWKWg";
        assert_eq!(
            encrypt_with("test_client_secret_123", &iv, &[], plaintext.as_bytes()),
            expected
        );
    }

    #[test]
    fn claims_serialize_in_zoom_field_order() {
        let c =
            AppContextClaims::panel("AbCdEfGhIjKlMnOpQrStUv", "TESTCLIENTID", 1_700_000_000_000);
        assert_eq!(
            serde_json::to_string(&c).expect("json"),
            r#"{"typ":"panel","uid":"AbCdEfGhIjKlMnOpQrStUv","aud":"TESTCLIENTID","iss":"marketplace.zoom.us","ts":1700000000000,"exp":1700000120000,"entitlements":[]}"#
        );
    }

    #[test]
    fn tampered_context_differs_but_keeps_its_length() {
        let c = encrypt("s", &AppContextClaims::panel("u", "c", 0));
        let t = tamper(&c);
        assert_ne!(c, t);
        assert_eq!(c.len(), t.len());
    }
}
