//! The Zoom app context: decrypt and check the token the Zoom client hands the
//! page (`zoomSdk.getAppContext()`, or the `X-Zoom-App-Context` header of the
//! desktop client), `docs/zoom-platform.md` §2.
//!
//! Layout after base64 (either alphabet, padding optional): `iv_len` (u8), IV,
//! `aad_len` (u16 LE), AAD, `ct_len` (u32 LE), ciphertext, then exactly 16
//! bytes of GCM tag. AES-256-GCM with key = SHA-256(client secret). The tag
//! length is enforced: a truncated tag would let a forger brute-force it.
//! The claims are then checked: `exp` (ms) in the future, `aud` = our client
//! id, `iss` = `marketplace.zoom.us`, a user id present.
//!
//! Pure: no IO, no clock (the caller passes `now_ms`). It does not bind
//! sessions; `http::context` does.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The issuer every genuine context carries.
pub const ISSUER: &str = "marketplace.zoom.us";
/// Longer tokens are refused before any work (real ones are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
const TAG_LEN: usize = 16;

/// Why a context was refused. The text is safe to show to the user: it says
/// what is wrong, never anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("app context is empty")]
    Empty,
    #[error("app context is too long")]
    TooLong,
    #[error("app context is not base64")]
    NotBase64,
    #[error("app context is truncated ({0})")]
    Truncated(&'static str),
    #[error("app context has a {0}-byte authentication tag; exactly 16 are required")]
    BadTagLength(usize),
    #[error("app context uses an unsupported {0}-byte IV")]
    UnsupportedIv(usize),
    #[error("app context failed authentication (tampered, forged or for another app)")]
    Decrypt,
    #[error("app context content is not the expected JSON")]
    NotJson,
    #[error("app context has expired")]
    Expired,
    #[error("app context has no expiry")]
    NoExpiry,
    #[error("app context is for another app")]
    WrongAudience,
    #[error("app context was not issued by Zoom Marketplace")]
    WrongIssuer,
    #[error("app context carries no user id (guest mode?)")]
    NoUser,
}

/// The decrypted claims we use; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppContext {
    /// Where the app was opened (`panel`, `meeting`, …).
    pub typ: Option<String>,
    /// Zoom user id; absent in guest mode.
    pub uid: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    /// Creation time, ms since the epoch.
    pub ts: Option<i64>,
    /// Expiry, ms since the epoch.
    pub exp: Option<i64>,
    /// Meeting UUID (meetings only).
    pub mid: Option<String>,
}

impl AppContext {
    /// The user id, present once [`verify`] has accepted the context.
    pub fn user_id(&self) -> &str {
        self.uid.as_deref().unwrap_or_default()
    }

    pub fn expires_at_ms(&self) -> i64 {
        self.exp.unwrap_or_default()
    }
}

/// Decrypt `token` and check its claims for the app `client_id` at `now_ms`.
pub fn verify(
    token: &str,
    client_id: &str,
    client_secret: &str,
    now_ms: i64,
) -> Result<AppContext, ContextError> {
    let plain = decrypt(token, client_secret)?;
    let ctx: AppContext = serde_json::from_slice(&plain).map_err(|_| ContextError::NotJson)?;
    match ctx.exp {
        None => return Err(ContextError::NoExpiry),
        Some(exp) if exp <= now_ms => return Err(ContextError::Expired),
        Some(_) => {}
    }
    if ctx.aud.as_deref() != Some(client_id) {
        return Err(ContextError::WrongAudience);
    }
    if ctx.iss.as_deref() != Some(ISSUER) {
        return Err(ContextError::WrongIssuer);
    }
    if ctx.uid.as_deref().is_none_or(str::is_empty) {
        return Err(ContextError::NoUser);
    }
    Ok(ctx)
}

/// Decrypt `token` to its plaintext bytes (no claim checks).
pub fn decrypt(token: &str, client_secret: &str) -> Result<Vec<u8>, ContextError> {
    let blob = decode_base64(token)?;
    let parts = Parts::parse(&blob)?;
    let key = Sha256::digest(client_secret.as_bytes());
    let mut sealed = Vec::with_capacity(parts.ciphertext.len() + TAG_LEN);
    sealed.extend_from_slice(parts.ciphertext);
    sealed.extend_from_slice(parts.tag);
    let payload = Payload {
        msg: &sealed,
        aad: parts.aad,
    };
    match parts.iv.len() {
        12 => AesGcm::<Aes256, U12>::new(&key)
            .decrypt(Nonce::<U12>::from_slice(parts.iv), payload)
            .map_err(|_| ContextError::Decrypt),
        16 => AesGcm::<Aes256, U16>::new(&key)
            .decrypt(Nonce::<U16>::from_slice(parts.iv), payload)
            .map_err(|_| ContextError::Decrypt),
        n => Err(ContextError::UnsupportedIv(n)),
    }
}

/// Standard or URL-safe alphabet, padding optional, surrounding space ignored.
fn decode_base64(token: &str) -> Result<Vec<u8>, ContextError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let token = token.trim();
    if token.is_empty() {
        return Err(ContextError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ContextError::TooLong);
    }
    let normalized: String = token
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    LENIENT
        .decode(normalized)
        .map_err(|_| ContextError::NotBase64)
}

struct Parts<'a> {
    iv: &'a [u8],
    aad: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(blob: &'a [u8]) -> Result<Self, ContextError> {
        let mut r = Reader(blob);
        let iv_len = usize::from(r.take(1, "IV length")?[0]);
        let iv = r.take(iv_len, "IV")?;
        let aad_len = usize::from(u16::from_le_bytes(
            r.take(2, "AAD length")?.try_into().unwrap_or_default(),
        ));
        let aad = r.take(aad_len, "AAD")?;
        let ct_len = u32::from_le_bytes(
            r.take(4, "ciphertext length")?
                .try_into()
                .unwrap_or_default(),
        );
        let ciphertext = r.take(ct_len as usize, "ciphertext")?;
        let tag = r.0;
        if tag.len() != TAG_LEN {
            return Err(ContextError::BadTagLength(tag.len()));
        }
        Ok(Parts {
            iv,
            aad,
            ciphertext,
            tag,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ContextError> {
        if self.0.len() < n {
            return Err(ContextError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInPlace;

    /// `docs/zoom-platform.md` §2.4, the worked example (base64url, no padding).
    const DOC_TOKEN: &str = "DAABAgMEBQYHCAkKCwAAmAAAAKidwJpti63zlSGT64lnFIP-cIBjfLbDHLBjL6Fry_Xho0Q2fAn59r7A4tj-pgFD2qhtKShTvCDr2VG-DoEav0rjF7aTglFDUnYpzwBwgBK5mhYLe6jppoXa26uuYxhHrXdLMZrDDJxlcv0A7wp4zAYZzXnHD5Mjm1_kaOSLDxLu_XtMJ3aQPU3XZRwgXUwPsWXZ0SPUD02lOQXaoFklEctYMvQTtbWKWg";
    const DOC_SECRET: &str = "test_client_secret_123";
    const DOC_CLIENT: &str = "TESTCLIENTID";
    const DOC_PLAIN: &str = r#"{"typ":"panel","uid":"AbCdEfGhIjKlMnOpQrStUv","aud":"TESTCLIENTID","iss":"marketplace.zoom.us","ts":1700000000000,"exp":1700000120000,"entitlements":[]}"#;
    const DOC_NOW: i64 = 1_700_000_060_000;

    fn b64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn b64std(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn raw(token: &str) -> Vec<u8> {
        decode_base64(token).expect("valid base64")
    }

    /// A hand-made encoder, independent of the simulator's.
    fn seal(secret: &str, iv: &[u8; 12], aad: &[u8], plain: &str) -> Vec<u8> {
        let key = Sha256::digest(secret.as_bytes());
        let cipher = AesGcm::<Aes256, U12>::new(&key);
        let mut buf = plain.as_bytes().to_vec();
        let tag = cipher
            .encrypt_in_place_detached(Nonce::<U12>::from_slice(iv), aad, &mut buf)
            .expect("encrypt");
        let mut out = vec![12u8];
        out.extend_from_slice(iv);
        out.extend_from_slice(&(aad.len() as u16).to_le_bytes());
        out.extend_from_slice(aad);
        out.extend_from_slice(&(buf.len() as u32).to_le_bytes());
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
        out
    }

    fn claims(exp: i64, aud: &str, iss: &str, uid: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "typ": "panel", "aud": aud, "iss": iss, "ts": exp - 120_000, "exp": exp,
        });
        if let Some(uid) = uid {
            v["uid"] = uid.into();
        }
        v.to_string()
    }

    #[test]
    fn the_documented_example_decrypts_to_its_plaintext() {
        let plain = decrypt(DOC_TOKEN, DOC_SECRET).expect("decrypts");
        assert_eq!(String::from_utf8(plain).expect("utf8"), DOC_PLAIN);
        let ctx = verify(DOC_TOKEN, DOC_CLIENT, DOC_SECRET, DOC_NOW).expect("valid");
        assert_eq!(ctx.user_id(), "AbCdEfGhIjKlMnOpQrStUv");
        assert_eq!(ctx.typ.as_deref(), Some("panel"));
        assert_eq!(ctx.expires_at_ms(), 1_700_000_120_000);
    }

    #[test]
    fn both_base64_alphabets_with_and_without_padding_are_accepted() {
        let bytes = raw(DOC_TOKEN);
        let std = b64std(&bytes);
        assert!(
            std.contains('+') || std.contains('/'),
            "vector exercises the alphabet"
        );
        for token in [
            std.clone(),
            std.trim_end_matches('=').to_owned(),
            b64url(&bytes),
            format!("{}==", b64url(&bytes)),
            format!("  {std}\n"),
        ] {
            verify(&token, DOC_CLIENT, DOC_SECRET, DOC_NOW)
                .unwrap_or_else(|e| panic!("{token}: {e}"));
        }
    }

    #[test]
    fn an_expired_context_is_refused() {
        let err = verify(DOC_TOKEN, DOC_CLIENT, DOC_SECRET, 1_700_000_120_000).expect_err("late");
        assert_eq!(err, ContextError::Expired);
    }

    #[test]
    fn a_context_for_another_app_is_refused() {
        let err = verify(DOC_TOKEN, "OTHERCLIENT", DOC_SECRET, DOC_NOW).expect_err("aud");
        assert_eq!(err, ContextError::WrongAudience);
        // Another app's secret gives another key: authentication fails.
        let err = verify(DOC_TOKEN, DOC_CLIENT, "other_secret", DOC_NOW).expect_err("key");
        assert_eq!(err, ContextError::Decrypt);
    }

    #[test]
    fn a_flipped_bit_anywhere_after_the_header_is_refused() {
        let bytes = raw(DOC_TOKEN);
        // Header: iv_len(1) + iv(12) + aad_len(2) + ct_len(4) = 19 bytes.
        for i in 1..bytes.len() {
            if (13..19).contains(&i) {
                continue; // length fields: covered by the truncation test
            }
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let err = verify(&b64url(&t), DOC_CLIENT, DOC_SECRET, DOC_NOW)
                .expect_err("tampered byte must be refused");
            assert_eq!(err, ContextError::Decrypt, "byte {i}");
        }
    }

    #[test]
    fn a_truncated_or_extended_tag_is_refused() {
        let bytes = raw(DOC_TOKEN);
        for cut in [1, 4, 12, 15, 16] {
            let t = &bytes[..bytes.len() - cut];
            let err = verify(&b64url(t), DOC_CLIENT, DOC_SECRET, DOC_NOW).expect_err("cut");
            assert_eq!(err, ContextError::BadTagLength(16 - cut), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        let err = verify(&b64url(&long), DOC_CLIENT, DOC_SECRET, DOC_NOW).expect_err("long");
        assert_eq!(err, ContextError::BadTagLength(17));
    }

    #[test]
    fn a_truncated_blob_is_refused_at_every_length() {
        let bytes = raw(DOC_TOKEN);
        for len in 1..bytes.len() - TAG_LEN {
            let err = verify(&b64url(&bytes[..len]), DOC_CLIENT, DOC_SECRET, DOC_NOW)
                .expect_err("truncated");
            assert!(
                matches!(
                    err,
                    ContextError::Truncated(_) | ContextError::BadTagLength(_)
                ),
                "len {len}: {err:?}"
            );
        }
    }

    #[test]
    fn lying_length_fields_are_refused_without_panicking() {
        let bytes = raw(DOC_TOKEN);
        let mut huge_ct = bytes.clone();
        huge_ct[15..19].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decrypt(&b64url(&huge_ct), DOC_SECRET),
            Err(ContextError::Truncated("ciphertext"))
        ));
        let mut huge_aad = bytes.clone();
        huge_aad[13..15].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            decrypt(&b64url(&huge_aad), DOC_SECRET),
            Err(ContextError::Truncated("AAD"))
        ));
        let mut odd_iv = bytes.clone();
        odd_iv[0] = 8;
        assert!(decrypt(&b64url(&odd_iv), DOC_SECRET).is_err());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(decrypt("", DOC_SECRET), Err(ContextError::Empty));
        assert_eq!(
            decrypt("not base64!", DOC_SECRET),
            Err(ContextError::NotBase64)
        );
        assert_eq!(
            decrypt(&"A".repeat(MAX_TOKEN_LEN + 4), DOC_SECRET),
            Err(ContextError::TooLong)
        );
        assert!(matches!(
            decrypt("AA", DOC_SECRET),
            Err(ContextError::Truncated(_))
        ));
    }

    #[test]
    fn hand_made_contexts_with_aad_and_bad_claims_are_checked() {
        let now = 1_800_000_000_000;
        let iv = [7u8; 12];
        let aad = b"zoom-aad";
        let good = seal(
            "s3cret",
            &iv,
            aad,
            &claims(now + 1, "cid", ISSUER, Some("u1")),
        );
        let ctx = verify(&b64std(&good), "cid", "s3cret", now).expect("good");
        assert_eq!(ctx.user_id(), "u1");

        // The AAD is authenticated too.
        let mut bad_aad = good.clone();
        bad_aad[15] ^= 0x20;
        assert_eq!(
            verify(&b64std(&bad_aad), "cid", "s3cret", now),
            Err(ContextError::Decrypt)
        );

        let cases = [
            (
                claims(now, "cid", ISSUER, Some("u1")),
                ContextError::Expired,
            ),
            (
                claims(now + 1000, "cid", "evil.example", Some("u1")),
                ContextError::WrongIssuer,
            ),
            (
                claims(now + 1000, "cid", ISSUER, None),
                ContextError::NoUser,
            ),
            (
                r#"{"uid":"u1","aud":"cid","iss":"marketplace.zoom.us"}"#.to_owned(),
                ContextError::NoExpiry,
            ),
            ("not json".to_owned(), ContextError::NotJson),
        ];
        for (plain, want) in cases {
            let token = b64url(&seal("s3cret", &iv, b"", &plain));
            assert_eq!(verify(&token, "cid", "s3cret", now), Err(want), "{plain}");
        }
    }

    #[tokio::test]
    async fn vectors_from_the_simulator_decrypt_and_its_tampered_ones_do_not() {
        let cfg = zoom_sim::SimConfig::generated();
        let (id, secret) = (cfg.client_id.clone(), cfg.client_secret.expose().to_owned());
        let sim = zoom_sim::Simulator::build(cfg).await.expect("simulator");
        let handle = sim.handle();
        let user = handle.default_user().user_id;
        let now = crate::time::now_ms();
        for _ in 0..20 {
            let token = handle.app_context(&user);
            let ctx = verify(&token, &id, &secret, now).expect("a simulator context");
            assert_eq!(ctx.user_id(), user);
            let tampered = zoom_sim::client::tamper(&token);
            assert_eq!(
                verify(&tampered, &id, &secret, now),
                Err(ContextError::Decrypt)
            );
            assert_eq!(
                verify(&token, &id, &secret, ctx.expires_at_ms()),
                Err(ContextError::Expired)
            );
        }
    }

    #[test]
    fn the_simulators_web_client_tampering_makes_the_doc_vector_undecryptable() {
        let t = zoom_sim::client::tamper(DOC_TOKEN);
        let err = decrypt(&t, DOC_SECRET).expect_err("tampered");
        assert_eq!(err, ContextError::Decrypt);
    }

    #[test]
    fn reasons_never_echo_the_token_or_secret() {
        let err = verify(DOC_TOKEN, DOC_CLIENT, "other_secret", DOC_NOW).expect_err("key");
        let text = err.to_string();
        assert!(!text.contains("other_secret") && !text.contains(&DOC_TOKEN[..20]));
    }
}
