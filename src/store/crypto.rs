//! Sealing stored values: AES-256-GCM under the key from `TOKEN_ENCRYPTION_KEY`,
//! with the value's storage key as associated data, so a value copied under
//! another key (another account) is refused just like a tampered one.
//!
//! Also derives opaque key ids (HMAC-SHA256) so account and user ids, which
//! Zoom counts as personal data, never appear in key names.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

/// Format byte in front of every sealed value.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The 32-byte key that encrypts tokens at rest. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key (demo mode: nothing outlives the process anyway).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("stored value is too short or has an unknown format")]
    Format,
    #[error("stored value failed authentication (tampered, or sealed under another key)")]
    Tampered,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    id_key: [u8; 32],
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    pub fn new(key: &TokenKey) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key");
        mac.update(b"zcc-rtms key ids v1");
        let id_key: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
            id_key,
        }
    }

    /// Encrypt `plain`, binding it to `aad` (the storage key).
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypt a value made by [`Sealer::seal`] under the same `aad`.
    /// Any other input is an error, never a panic.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(SealError::Format);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Tampered)
    }

    /// An opaque, stable id for a tuple of identifiers (hex, 128 bits).
    pub fn key_id(&self, parts: &[&str]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.id_key).expect("HMAC takes any key");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_same_key_and_aad() {
        let s = Sealer::new(&TokenKey::new([7; 32]));
        let sealed = s.seal("k1", b"hello");
        assert_eq!(s.open("k1", &sealed).expect("opens"), b"hello");
        assert_eq!(s.open("k2", &sealed), Err(SealError::Tampered));
        let other = Sealer::new(&TokenKey::new([8; 32]));
        assert_eq!(other.open("k1", &sealed), Err(SealError::Tampered));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(s.open("k1", &flipped), Err(SealError::Tampered));
        assert_eq!(s.open("k1", b""), Err(SealError::Format));
        assert_eq!(s.open("k1", &sealed[..20]), Err(SealError::Format));
    }

    #[test]
    fn key_ids_are_stable_and_unambiguous() {
        let s = Sealer::new(&TokenKey::new([1; 32]));
        assert_eq!(s.key_id(&["a", "b"]), s.key_id(&["a", "b"]));
        assert_ne!(s.key_id(&["ab", ""]), s.key_id(&["a", "b"]));
        assert_eq!(s.key_id(&["a"]).len(), 32);
        assert!(!format!("{:?}", TokenKey::new([1; 32])).contains('1'));
    }
}
