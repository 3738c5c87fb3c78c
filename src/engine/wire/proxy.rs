//! Which proxy a request goes through: `HTTP_PROXY`, `HTTPS_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (either case, upper case first), read once per
//! client with the rules curl and reqwest follow.

use std::net::IpAddr;

use base64::Engine as _;

/// A proxy from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// An `http://` proxy: plain requests in absolute form, TLS through `CONNECT`.
    Http {
        /// Where the proxy listens.
        host: String,
        /// Its port (8080 when the URL names none).
        port: u16,
        /// `Proxy-Authorization` value, from the URL's user and password.
        auth: Option<String>,
    },
    /// A proxy this client does not speak (`https://`, `socks5://`): such
    /// requests go through the general-purpose client.
    Other,
}

/// The proxies for plain and TLS targets, and the hosts that bypass them.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Vec<NoProxy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxy {
    All,
    Ip(IpAddr),
    Net(IpAddr, u8),
    Domain(String),
}

impl Proxies {
    /// Read the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read variables through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| names.iter().find_map(|n| get(n)).unwrap_or_default();
        // A CGI program's HTTP_PROXY can be set by the caller's `Proxy:` header.
        if get("REQUEST_METHOD").is_some() {
            return Self::default();
        }
        let all = parse(&first(["ALL_PROXY", "all_proxy"]));
        Self {
            http: parse(&first(["HTTP_PROXY", "http_proxy"])).or_else(|| all.clone()),
            https: parse(&first(["HTTPS_PROXY", "https_proxy"])).or(all),
            no_proxy: first(["NO_PROXY", "no_proxy"])
                .split(',')
                .filter_map(no_proxy_entry)
                .collect(),
        }
    }

    /// The proxy for a target, or none when there is none or the host bypasses it.
    pub fn for_target(&self, https: bool, host: &str) -> Option<&Proxy> {
        let proxy = if https { &self.https } else { &self.http };
        let proxy = proxy.as_ref()?;
        (!self.bypassed(host)).then_some(proxy)
    }

    fn bypassed(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<IpAddr>().ok();
        self.no_proxy.iter().any(|entry| match (entry, ip) {
            (NoProxy::All, _) => true,
            (NoProxy::Ip(a), Some(ip)) => *a == ip,
            (NoProxy::Net(net, bits), Some(ip)) => in_net(ip, *net, *bits),
            (NoProxy::Domain(d), None) => {
                let d = d.strip_prefix('.').unwrap_or(d);
                let host = host.to_ascii_lowercase();
                host == *d || host.ends_with(&format!(".{d}"))
            }
            _ => false,
        })
    }
}

fn no_proxy_entry(raw: &str) -> Option<NoProxy> {
    let part = raw.trim();
    if part.is_empty() {
        return None;
    }
    if part == "*" {
        return Some(NoProxy::All);
    }
    if let Some((addr, bits)) = part.split_once('/') {
        if let (Ok(addr), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if bits <= max {
                return Some(NoProxy::Net(addr, bits));
            }
        }
    }
    let bare = part.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Some(NoProxy::Ip(ip)),
        Err(_) => Some(NoProxy::Domain(part.to_ascii_lowercase())),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            u128::from(u32::from(a)) << 96,
            u128::from(u32::from(b)) << 96,
            32,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits.min(width));
    if bits == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - bits);
    a & mask == b & mask
}

/// A proxy URL as the variables hold it (`host:port` means `http://`).
fn parse(raw: &str) -> Option<Proxy> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = reqwest::Url::parse(&with_scheme).ok()?;
    if url.scheme() != "http" {
        return Some(Proxy::Other);
    }
    let host = url.host_str()?.to_string();
    let auth = (!url.username().is_empty()).then(|| {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {token}")
    });
    Some(Proxy::Http {
        host,
        port: url.port().unwrap_or(8080),
        auth,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        Proxies::from_lookup(|k| map.get(k).cloned())
    }

    fn http(host: &str, port: u16) -> Proxy {
        Proxy::Http {
            host: host.into(),
            port,
            auth: None,
        }
    }

    #[test]
    fn each_scheme_takes_its_variable_and_all_proxy_fills_in() {
        let p = proxies(&[
            ("http_proxy", "proxy.local:3128"),
            ("ALL_PROXY", "http://all.local:9"),
        ]);
        assert_eq!(
            p.for_target(false, "api.example"),
            Some(&http("proxy.local", 3128))
        );
        assert_eq!(
            p.for_target(true, "api.example"),
            Some(&http("all.local", 9))
        );
        // Upper case wins over lower case, as in curl and reqwest.
        let p = proxies(&[("HTTPS_PROXY", "http://a:1"), ("https_proxy", "http://b:2")]);
        assert_eq!(p.for_target(true, "x"), Some(&http("a", 1)));
        assert_eq!(p.for_target(false, "x"), None);
        assert_eq!(
            proxies(&[("HTTP_PROXY", "socks5://s:1")]).for_target(false, "x"),
            Some(&Proxy::Other)
        );
        assert_eq!(proxies(&[]).for_target(false, "x"), None);
        // A CGI program never takes a proxy from the environment.
        assert_eq!(
            proxies(&[("HTTP_PROXY", "http://a:1"), ("REQUEST_METHOD", "GET")])
                .for_target(false, "x"),
            None
        );
    }

    #[test]
    fn no_proxy_matches_domains_ips_and_networks() {
        let p = proxies(&[
            ("HTTP_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "example.com, .corp.test,10.0.0.0/8, ::1 ,127.0.0.1",
            ),
        ]);
        for bypassed in [
            "example.com",
            "api.example.com",
            "EXAMPLE.com",
            "x.corp.test",
            "10.2.3.4",
            "[::1]",
            "127.0.0.1",
        ] {
            assert_eq!(p.for_target(false, bypassed), None, "{bypassed}");
        }
        for proxied in [
            "notexample.com",
            "corp.testing",
            "11.0.0.1",
            "127.0.0.2",
            "[::2]",
        ] {
            assert!(p.for_target(false, proxied).is_some(), "{proxied}");
        }
        assert_eq!(
            proxies(&[("HTTP_PROXY", "http://p:1"), ("no_proxy", "*")]).for_target(false, "a"),
            None
        );
    }

    #[test]
    fn credentials_in_the_proxy_url_become_basic_auth() {
        let p = proxies(&[("HTTP_PROXY", "http://us%40er:p%3Ass@p:1")]);
        let Some(Proxy::Http {
            auth: Some(auth), ..
        }) = p.for_target(false, "x")
        else {
            panic!("no proxy auth");
        };
        let token = auth.strip_prefix("Basic ").expect("basic");
        let plain = base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("base64");
        assert_eq!(plain, b"us@er:p:ss");
    }
}
