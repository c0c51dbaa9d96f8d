//! Cross-site protection for state-changing routes, as pure checks over
//! request headers: the request must come from the app's own origin or a
//! trusted Zoom client origin, and carry JSON where it has a body.
//!
//! The session cookie is `SameSite=None` (the Zoom web client frames the
//! app), so the browser would attach it to a request made by any page; these
//! checks are what stops another site from acting with it.

/// What the checks read from a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headers<'a> {
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub host: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

/// The authority (`host[:port]`) of an origin, when it is one.
fn authority(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    (!rest.is_empty() && !rest.contains('/')).then_some((scheme, rest))
}

/// Does `origin` match a trusted pattern (`https://*.zoom.us` matches every
/// subdomain, not the apex)?
pub fn matches_pattern(origin: &str, pattern: &str) -> bool {
    let (Some((scheme, host)), Some((p_scheme, p_host))) = (authority(origin), authority(pattern))
    else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(p_scheme) {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let p_host = p_host.to_ascii_lowercase();
    match p_host.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == p_host,
    }
}

/// Same-origin or trusted, else the reason for a 403.
///
/// A browser names the request's origin in `Sec-Fetch-Site` (`same-origin`,
/// or `none` for one the user typed) and, on writes, in `Origin`; a request
/// with neither does not come from a browser page, so no other site's page
/// can have sent it.
pub fn check_origin(
    h: &Headers<'_>,
    own_origin: Option<&str>,
    trusted: &[String],
) -> Result<(), String> {
    if matches!(h.sec_fetch_site, Some("same-origin" | "none")) {
        return Ok(());
    }
    match h.origin {
        Some(origin) => {
            let same = own_origin.is_some_and(|own| own.eq_ignore_ascii_case(origin))
                || authority(origin)
                    .zip(h.host)
                    .is_some_and(|((_, auth), host)| auth.eq_ignore_ascii_case(host));
            if same || trusted.iter().any(|p| matches_pattern(origin, p)) {
                Ok(())
            } else {
                Err(format!(
                    "cross-site request refused: origin {origin:?} is neither this app nor a Zoom client"
                ))
            }
        }
        None => match h.sec_fetch_site {
            Some(site) => Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            )),
            None => Ok(()),
        },
    }
}

/// `Content-Type: application/json` (parameters allowed): a form or
/// `text/plain` body is what a cross-site page can send without asking.
pub fn check_json(h: &Headers<'_>) -> Result<(), String> {
    let essence = h
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(|s| s.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(format!(
            "Content-Type must be application/json, not {other}"
        )),
        None => Err("Content-Type must be application/json".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<String> {
        crate::config::AccessConfig::default().client_origins
    }

    fn check(origin: Option<&str>, site: Option<&str>) -> Result<(), String> {
        check_origin(
            &Headers {
                origin,
                sec_fetch_site: site,
                host: Some("app.example:8443"),
                content_type: None,
            },
            Some("https://app.example:8443"),
            &trusted(),
        )
    }

    #[test]
    fn same_origin_and_zoom_clients_pass_other_sites_do_not() {
        assert!(check(None, Some("same-origin")).is_ok());
        assert!(check(None, Some("none")).is_ok());
        assert!(check(None, None).is_ok(), "not a browser");
        assert!(check(Some("https://app.example:8443"), Some("same-origin")).is_ok());
        assert!(
            check(Some("http://app.example:8443"), None).is_ok(),
            "host match"
        );
        assert!(check(Some("https://us05web.zoom.us"), Some("cross-site")).is_ok());
        assert!(check(Some("https://zoom.us"), Some("cross-site")).is_ok());
        for (origin, site) in [
            (Some("https://evil.example"), Some("cross-site")),
            (Some("https://evil.example"), None),
            (Some("https://evilzoom.us"), Some("cross-site")),
            (Some("https://zoom.us.evil.example"), Some("cross-site")),
            (Some("http://x.zoom.us"), Some("cross-site")),
            (Some("null"), Some("cross-site")),
            (None, Some("cross-site")),
            (None, Some("same-site")),
        ] {
            let err = check(origin, site).expect_err("refused");
            assert!(err.contains("cross-site"), "{err}");
        }
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(matches_pattern("https://a.b.zoom.us", "https://*.zoom.us"));
        assert!(!matches_pattern("https://zoom.us", "https://*.zoom.us"));
        assert!(!matches_pattern("https://.zoom.us", "https://*.zoom.us"));
        assert!(matches_pattern("https://ZOOM.us", "https://zoom.us"));
        assert!(!matches_pattern("https://zoom.us:444", "https://zoom.us"));
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let h = |ct| Headers {
            content_type: ct,
            ..Headers::default()
        };
        assert!(check_json(&h(Some("application/json"))).is_ok());
        assert!(check_json(&h(Some("Application/JSON; charset=utf-8"))).is_ok());
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            assert!(check_json(&h(ct)).is_err(), "{ct:?}");
        }
    }
}
