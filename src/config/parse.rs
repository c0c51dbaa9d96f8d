//! One raw value into a typed one: a port, an http(s) URL, a number with a
//! minimum, a boolean, the token encryption key. Where a value may be unset,
//! blank counts as unset; a malformed value is a [`ConfigError`] naming its
//! variable.
//!
//! Pure: reads no environment and knows nothing of which flag holds what
//! (that is `Config::from_args`).

use url::Url;

use super::{ConfigError, DEFAULT_PORT};

pub(super) fn parse_port(raw: Option<&str>) -> Result<u16, ConfigError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(DEFAULT_PORT),
        Some(p) => p.parse::<u16>().map_err(|e| ConfigError::Malformed {
            var: "BACKEND_PORT",
            reason: format!("{p:?} is not a port number ({e})"),
        }),
    }
}

pub(super) fn opt_url(var: &'static str, raw: &Option<String>) -> Result<Option<Url>, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => {
            let url = Url::parse(s).map_err(|e| ConfigError::Malformed {
                var,
                reason: format!("{s:?} is not a URL ({e})"),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::Malformed {
                    var,
                    reason: format!("{s:?} must be an http or https URL"),
                });
            }
            Ok(Some(url))
        }
    }
}

/// A number no smaller than `min`, or None when the variable is unset or
/// blank; anything else names the variable and says what was expected.
pub(super) fn at_least<T: std::str::FromStr + PartialOrd>(
    var: &'static str,
    raw: Option<&str>,
    min: T,
    what: &str,
) -> Result<Option<T>, ConfigError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<T>()
            .ok()
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| ConfigError::Malformed {
                var,
                reason: format!("{s:?} is not {what}"),
            }),
    }
}

pub(super) fn parse_bool(raw: Option<&str>) -> bool {
    matches!(
        raw.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

pub(super) fn parse_key(raw: &str) -> Result<[u8; 32], ConfigError> {
    use base64::Engine as _;
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
            .ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| ConfigError::Malformed {
            var: "TOKEN_ENCRYPTION_KEY",
            reason: "must be 32 bytes as 64 hex characters or base64".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_key_accepts_hex_and_base64_and_rejects_short_keys() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(parse_key("short").is_err());
    }
}
