//! The HTTP agent of our own clients (hosted models, Lamini): a timeout,
//! and the proxy the environment names, read as curl reads it:
//! `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http, `ALL_PROXY` for
//! either (each in either case), unless `NO_PROXY` covers the host. ureq
//! reads the proxy variables itself but not `NO_PROXY`, hence this.

use std::time::Duration;

use crate::error::{Error, Result};

/// An agent for requests to `url`, through the proxy the environment names
/// for it (none when `NO_PROXY` covers its host).
pub fn agent(url: &str, timeout: Duration) -> Result<ureq::Agent> {
    let mut builder = ureq::AgentBuilder::new().timeout(timeout);
    if let Some((var, proxy)) = proxy_for(url, |name| std::env::var(name).ok()) {
        let proxy = ureq::Proxy::new(&proxy)
            .map_err(|e| Error::invalid(var, format!("{proxy:?} is not a proxy URL: {e}")))?;
        builder = builder.proxy(proxy);
    }
    Ok(builder.build())
}

/// The proxy variable and URL for `url`, given how to read a variable.
fn proxy_for(url: &str, var: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let host = host_of(rest);
    let no_proxy = var("NO_PROXY")
        .or_else(|| var("no_proxy"))
        .unwrap_or_default();
    if no_proxy_covers(&host, &no_proxy) {
        return None;
    }
    let names: &[&'static str] = if scheme.eq_ignore_ascii_case("https") {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    names.iter().find_map(|name| {
        var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*name, v.trim().to_string()))
    })
}

/// The host of `authority/path…`: without user, port or brackets, lowercase.
fn host_of(rest: &str) -> String {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    host.to_ascii_lowercase()
}

/// Whether a `NO_PROXY` list (`host,.domain,*`; ports ignored) covers
/// `host`: `*`, the host itself, or a domain it is under.
fn no_proxy_covers(host: &str, list: &str) -> bool {
    list.split(',')
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = host_of(&entry);
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_proxy_follows_the_scheme_and_no_proxy_covers_hosts_and_domains() {
        let vars = [
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("http_proxy", "http://plain:8080"),
            ("NO_PROXY", "localhost,.internal.example, 10.0.0.7:8000"),
        ];
        let got = |url: &str| proxy_for(url, env(&vars)).map(|(_, p)| p);
        assert_eq!(
            got("https://api.lamini.ai/v1/train").as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            got("http://example.com/v1").as_deref(),
            Some("http://plain:8080")
        );
        assert_eq!(got("http://localhost:8080/v1"), None);
        assert_eq!(got("https://llm.internal.example/v1"), None);
        assert_eq!(got("https://internal.example/v1"), None);
        assert_eq!(got("http://10.0.0.7:9000/v1"), None);
        assert_eq!(
            got("https://notinternal.example/v1").as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            got("https://user:pw@API.Lamini.ai:443/x").as_deref(),
            Some("http://proxy:3128")
        );
    }

    #[test]
    fn all_proxy_is_the_fallback_and_a_star_turns_proxies_off() {
        let all = [("all_proxy", "socks5://s:1080")];
        assert_eq!(
            proxy_for("https://a.b/", env(&all)),
            Some(("all_proxy", "socks5://s:1080".to_string()))
        );
        let star = [("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")];
        assert_eq!(proxy_for("https://a.b/", env(&star)), None);
        assert_eq!(proxy_for("https://a.b/", env(&[])), None);
        assert_eq!(host_of("[::1]:8080/v1"), "::1");
    }
}
