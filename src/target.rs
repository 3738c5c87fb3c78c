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

/// A checked base URL: http(s), a host, no user info, no query or fragment,
/// no trailing `/`. Every destination of load requests is one; it is made
/// once from the flag, key or variable that named it ([`Target::parse`]) and
/// travels as this type from there on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
    /// The URL as text without a trailing `/`, the form paths are appended to.
    text: String,
}

impl Target {
    /// Parse and check a base URL. A trailing `/` is dropped.
    pub fn parse(raw: &str, source: Source) -> Result<Target, UserError> {
        let url = parse_base(raw, source)?;
        let text = url.as_str().trim_end_matches('/').to_string();
        Ok(Target { url, text })
    }

    /// The base as text without a trailing `/` (it has no user info).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The host without IPv6 brackets.
    pub fn host(&self) -> String {
        self.url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    }

    /// The port, the scheme's default when none is written.
    pub fn port(&self) -> u16 {
        // http(s) always has a known default.
        self.url.port_or_known_default().unwrap_or(80)
    }

    /// A request URL: this base and a rendered path. The path must start
    /// with one `/` (so it can never become user info or a host), and the
    /// result must keep the base's scheme, host and port.
    pub fn join(&self, path: &str) -> Result<Url, PathError> {
        if !path.starts_with('/') || path.starts_with("//") || path.contains('\\') {
            return Err(PathError::NotAbsolute);
        }
        let url =
            Url::parse(&format!("{}{path}", self.text)).map_err(|_| PathError::OtherOrigin)?;
        let same = url.scheme() == self.url.scheme()
            && url.host_str() == self.url.host_str()
            && url.port_or_known_default() == self.url.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none();
        if same {
            Ok(url)
        } else {
            Err(PathError::OtherOrigin)
        }
    }

    /// Refuse this destination when it is outside `allow_hosts` (empty
    /// allows any). `what` says which it is ("the target"); `origin` names
    /// the scenario.
    pub fn check_allowed(
        &self,
        allow_hosts: &[String],
        what: &'static str,
        origin: &str,
    ) -> Result<(), UserError> {
        check_allowed(allow_hosts, &self.url, what, origin)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parse and check a base URL: http(s), a host, no user info, no query or
/// fragment. A trailing `/` is dropped.
fn parse_base(raw: &str, source: Source) -> Result<Url, UserError> {
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

/// Refuse a URL outside `allow_hosts` (empty allows any): a target or a
/// server metrics endpoint. `what` says which URL it is ("the target");
/// `origin` names the scenario.
pub fn check_allowed(
    allow_hosts: &[String],
    url: &Url,
    what: &'static str,
    origin: &str,
) -> Result<(), UserError> {
    if allow_hosts.is_empty() {
        return Ok(());
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if allow_hosts.iter().any(|a| a.eq_ignore_ascii_case(host)) {
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
        let t = |raw| Target::parse(raw, T).map(|t| t.as_str().to_string());
        assert_eq!(
            t("http://127.0.0.1:8080/").expect("ok"),
            "http://127.0.0.1:8080"
        );
        let prefixed = t("https://api.example.test/prefix/").expect("ok");
        assert_eq!(prefixed, "https://api.example.test/prefix");
        for bad in ["ftp://x", "http://x/?q=1", "http://x/#f", "http:///path"] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert_eq!(
            t(" http://127.0.0.1:8080 ").expect("trimmed"),
            "http://127.0.0.1:8080"
        );
        let v6 = Target::parse("http://[::1]:8080", T).expect("ok");
        assert_eq!((v6.host().as_str(), v6.port()), ("::1", 8080));
        let https = Target::parse("https://h.test", T).expect("ok");
        assert_eq!(
            (https.port(), https.to_string().as_str()),
            (443, "https://h.test")
        );
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
        let base = Target::parse("http://127.0.0.1:8080/api", T).expect("ok");
        let ok = base.join("/v1/books?x=1").expect("joined");
        assert_eq!(ok.as_str(), "http://127.0.0.1:8080/api/v1/books?x=1");
        for bad in ["@evil:9/x", "evil/x", "//evil/x", "", "\\evil"] {
            assert_eq!(base.join(bad), Err(PathError::NotAbsolute), "{bad}");
        }
        let base = Target::parse("http://127.0.0.1:8080", T).expect("ok");
        assert!(base.join("/x").is_ok());
        // A port-less base followed by `:port` text would change the port.
        let base = Target::parse("http://127.0.0.1", T).expect("ok");
        assert!(base.join("/ok").is_ok());
    }

    #[test]
    fn allow_hosts_compares_hosts() {
        let u = Target::parse("http://[::1]:8080", T).expect("ok");
        assert!(u
            .check_allowed(&["::1".into()], "the target", "s.toml")
            .is_ok());
        assert!(u
            .check_allowed(&["127.0.0.1".into()], "the target", "s.toml")
            .is_err());
        assert!(u.check_allowed(&[], "the target", "s.toml").is_ok());
    }
}
