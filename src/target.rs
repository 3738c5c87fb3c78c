//! Where requests may go: every URL flora-gate takes (`--target`, the
//! scenario's `base_url`, `--baseline-target`, `GITHUB_API_URL`) is checked
//! here, and every load request URL is built here from a checked base and a
//! path that cannot leave its origin.
//!
//! Credentials never travel in URLs: a URL with a user name or password is
//! refused (it would be written to results, reports and PR comments, and sent
//! as a `Basic` header beside the bearer token). Error messages redact any
//! user info they would otherwise echo.

use reqwest::Url;

use crate::error::UserError;

/// Where a URL came from, for errors: a flag, a scenario key, an env variable.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The flag or key named in the error (`--target`, `GITHUB_API_URL`).
    pub name: &'static str,
}

/// Replace the user info of every `scheme://user:pass@host` in `text` with
/// `***`, so a URL that slipped through can be printed without its secret.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Parse and check a base URL: http(s), a host, no user info, no query or
/// fragment. A trailing `/` is dropped.
pub fn parse_base(raw: &str, source: Source) -> Result<Url, UserError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let shown = redact_userinfo(trimmed);
    let url = Url::parse(trimmed)
        .map_err(|e| UserError::flag(source.name, format!("`{shown}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UserError::flag(
            source.name,
            format!("`{shown}` must start with http:// or https://"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UserError::flag(
            source.name,
            "the URL carries a user name or password; credentials are never taken from URLs",
        )
        .with_hint(
            "remove `user:password@` from the URL: load-test tokens go in the `--tokens` CSV and the scenario's `[auth]` table says how they are sent; the GitHub token comes from `GITHUB_TOKEN`",
        ));
    }
    // `http:///x` parses with `x` as the host: refuse what was surely a typo.
    let after_scheme = trimmed.split_once("://").map_or("", |(_, rest)| rest);
    if url.host_str().is_none_or(str::is_empty) || after_scheme.starts_with('/') {
        return Err(UserError::flag(
            source.name,
            format!("`{shown}` has no host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UserError::flag(
            source.name,
            format!(
                "`{shown}` has a query or fragment; give only scheme, host, port and path prefix"
            ),
        ));
    }
    Ok(url)
}

/// The base as text without a trailing `/`, the form requests are built from.
pub fn base_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// The host of a URL without IPv6 brackets.
pub fn host(url: &Url) -> String {
    url.host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Why a rendered path cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with exactly one `/`.
    #[error("the path must start with a single `/`")]
    NotAbsolute,
    /// It would reach another scheme, host or port.
    #[error("the path leaves the target's origin")]
    OtherOrigin,
}

/// Build a request URL from a checked base and a rendered path. The path
/// must start with one `/` (so it can never become user info or a host),
/// and the result must keep the base's scheme, host and port.
pub fn join(base: &str, base_url: &Url, path: &str) -> Result<Url, PathError> {
    if !path.starts_with('/') || path.starts_with("//") || path.contains('\\') {
        return Err(PathError::NotAbsolute);
    }
    let url = Url::parse(&format!("{base}{path}")).map_err(|_| PathError::OtherOrigin)?;
    let same = url.scheme() == base_url.scheme()
        && url.host_str() == base_url.host_str()
        && url.port_or_known_default() == base_url.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if same {
        Ok(url)
    } else {
        Err(PathError::OtherOrigin)
    }
}

/// Refuse a destination outside `allow_hosts` (empty allows any). `what`
/// says which URL it is ("the target"); `origin` names the scenario.
pub fn check_allowed(
    allow_hosts: &[String],
    url: &Url,
    what: &'static str,
    origin: &str,
) -> Result<(), UserError> {
    if allow_hosts.is_empty() {
        return Ok(());
    }
    let host = host(url);
    if allow_hosts.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        return Ok(());
    }
    Err(UserError::Environment {
        message: format!(
            "{what}'s host `{host}` is not in the scenario's `safety.allow_hosts` ({})",
            allow_hosts.join(", ")
        ),
        hint: Some(format!(
            "add it to `allow_hosts` in {origin} if it is meant to be load-tested"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Source = Source { name: "--target" };

    #[test]
    fn credentials_in_urls_are_refused_without_echo() {
        for raw in [
            "http://admin:secret@127.0.0.1:8080",
            "https://secret@example.test/api",
            "http://admin:secret@bad host",
        ] {
            let e = parse_base(raw, T).expect_err("refused");
            let text = format!("{e} {}", e.hint().unwrap_or_default());
            assert!(!text.contains("secret"), "{text}");
        }
        let e = parse_base("http://admin:secret@127.0.0.1:8080", T).expect_err("refused");
        assert!(e.hint().unwrap_or_default().contains("[auth]"));
    }

    #[test]
    fn good_bases_pass() {
        let u = parse_base("http://127.0.0.1:8080/", T).expect("ok");
        assert_eq!(base_text(&u), "http://127.0.0.1:8080");
        let u = parse_base("https://api.example.test/prefix/", T).expect("ok");
        assert_eq!(base_text(&u), "https://api.example.test/prefix");
        assert!(parse_base("ftp://x", T).is_err());
        assert!(parse_base("http://x/?q=1", T).is_err());
        assert!(parse_base("http://x/#f", T).is_err());
        assert!(parse_base("http:///path", T).is_err());
        let u = parse_base(" http://127.0.0.1:8080 ", T).expect("trimmed");
        assert_eq!(base_text(&u), "http://127.0.0.1:8080");
    }

    #[test]
    fn redaction_keeps_everything_but_the_user_info() {
        assert_eq!(
            redact_userinfo("see http://a:b@h:1/x and https://c@d?e"),
            "see http://***@h:1/x and https://***@d?e"
        );
        assert_eq!(redact_userinfo("http://h/p@q"), "http://h/p@q");
        assert_eq!(redact_userinfo("no url"), "no url");
    }

    #[test]
    fn paths_cannot_leave_the_origin() {
        let base = parse_base("http://127.0.0.1:8080/api", T).expect("ok");
        let text = base_text(&base);
        let ok = join(&text, &base, "/v1/books?x=1").expect("joined");
        assert_eq!(ok.as_str(), "http://127.0.0.1:8080/api/v1/books?x=1");
        for bad in ["@evil:9/x", "evil/x", "//evil/x", "", "\\evil"] {
            assert_eq!(
                join(&text, &base, bad),
                Err(PathError::NotAbsolute),
                "{bad}"
            );
        }
        let base = parse_base("http://127.0.0.1:8080", T).expect("ok");
        let text = base_text(&base);
        assert!(join(&text, &base, "/x").is_ok());
        // A port-less base followed by `:port` text would change the port.
        let base = parse_base("http://127.0.0.1", T).expect("ok");
        let text = base_text(&base);
        assert!(join(&text, &base, "/ok").is_ok());
    }

    #[test]
    fn allow_hosts_compares_hosts() {
        let u = parse_base("http://[::1]:8080", T).expect("ok");
        assert!(check_allowed(&["::1".into()], &u, "the target", "s.toml").is_ok());
        assert!(check_allowed(&["127.0.0.1".into()], &u, "the target", "s.toml").is_err());
        assert!(check_allowed(&[], &u, "the target", "s.toml").is_ok());
    }
}
