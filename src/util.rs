//! Small utilities with no home of their own: random identifiers and secrets.
//! Owns no state and never reads the environment or the clock (`time` does).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes as base64url without padding.
pub fn random_b64(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_alphabets() {
        let h = random_hex(8);
        assert_eq!(h.len(), 16);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        let b = random_b64(32);
        assert_eq!(b.len(), 43);
        assert!(
            b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(random_hex(16), random_hex(16));
    }
}
