//! The alarm-centre webhook's HTTP client and its guards against server-side request forgery.
//!
//! The webhook URL is data a tenant admin types in, and what comes back is written to the
//! alarm's events, so the client must not become a way into the installation's own network:
//!
//! - https only ([`check_url`]); no redirects (a public host could send us on to an internal
//!   one); a connect timeout of [`CONNECT_TIMEOUT`];
//! - addresses are checked **when connecting**, by a DNS resolver that drops loopback, private,
//!   link-local (with the cloud metadata address 169.254.169.254), shared, multicast and other
//!   special-purpose addresses ([`is_public`]), so a name that resolves to an internal address,
//!   or is re-pointed there after the URL was saved (DNS rebinding), is refused. An IP literal in
//!   the URL never reaches a resolver and is checked by [`check_url`];
//! - an installation may allow named hosts (`TRYGG_WEBHOOK_ALLOW_HOSTS`: an alarm centre on the
//!   municipality's own network, or a test receiver on 127.0.0.1): those may resolve to any
//!   address and may use plain http.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest a connection to the alarm centre may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Hosts the installation allows beyond the public internet (lowercase names or IP literals).
#[derive(Debug, Clone, Default)]
pub struct AllowHosts(Arc<HashSet<String>>);

impl AllowHosts {
    /// From a comma-separated list, e.g. `TRYGG_WEBHOOK_ALLOW_HOSTS=127.0.0.1,larm.kommun.local`.
    pub fn parse(list: &str) -> Self {
        let hosts = list.split(',').map(|h| h.trim().trim_matches(['[', ']']).to_lowercase());
        Self(Arc::new(hosts.filter(|h| !h.is_empty()).collect()))
    }

    fn allows(&self, host: &str) -> bool {
        self.0.contains(&host.trim_matches(['[', ']']).to_lowercase())
    }
}

/// Why a webhook URL may not be called; `None` if it may.
pub fn check_url(url: &str, allow: &AllowHosts) -> Option<String> {
    let Ok(url) = reqwest::Url::parse(url) else { return Some("not a URL".to_owned()) };
    let Some(host) = url.host_str() else { return Some("no host".to_owned()) };
    if allow.allows(host) {
        return matches!(url.scheme(), "https" | "http").not_then("only https is allowed");
    }
    if url.scheme() != "https" {
        return Some("only https is allowed".to_owned());
    }
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Some(format!("address {ip} is not public")),
        _ => None,
    }
}

trait NotThen {
    fn not_then(self, why: &str) -> Option<String>;
}

impl NotThen for bool {
    fn not_then(self, why: &str) -> Option<String> {
        (!self).then(|| why.to_owned())
    }
}

/// The client the worker posts to alarm centres with.
///
/// # Panics
/// If the TLS backend cannot be initialised, like `reqwest::Client::new`.
pub fn client(allow: &AllowHosts) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(Arc::new(PublicOnly { allow: allow.clone() }))
        .build()
        .expect("the webhook HTTP client builds")
}

/// Resolves with the system resolver and keeps only public addresses (any, for allowed hosts).
#[derive(Debug)]
struct PublicOnly {
    allow: AllowHosts,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.allow.allows(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.into_iter().filter(|a| allowed || is_public(a.ip())).collect();
            if kept.is_empty() {
                let why = format!("{host} resolves to no public address");
                return Err(Box::<dyn std::error::Error + Send + Sync>::from(why));
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is an ordinary address on the public internet: not loopback, private, link-local
/// (cloud metadata), shared (CGNAT), unspecified, broadcast, multicast, documentation,
/// benchmarking or reserved; IPv4-mapped and -compatible IPv6 addresses are judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "193.10.1.1", "2a00:1450:4010::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time_unless_allowed() {
        let refuse = PublicOnly { allow: AllowHosts::default() };
        let error = refuse.resolve("localhost".parse().unwrap()).await.err().expect("refused");
        assert!(error.to_string().contains("no public address"), "{error}");
        let allow = PublicOnly { allow: AllowHosts::parse("localhost") };
        let addrs: Vec<SocketAddr> = allow.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
    }

    #[tokio::test]
    async fn the_client_follows_no_redirect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                conn.readable().await.unwrap();
                let mut buf = [0u8; 4096];
                if let Ok(n) = conn.try_read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            let answer = "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data\r\ncontent-length: 0\r\n\r\n";
            conn.writable().await.unwrap();
            conn.try_write(answer.as_bytes()).unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        });
        let client = client(&AllowHosts::parse("127.0.0.1"));
        let answer = client.post(format!("http://127.0.0.1:{port}/hook")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 302, "the redirect is the answer, not followed");
    }

    #[test]
    fn only_public_https_urls_pass_unless_the_host_is_allowed() {
        let none = AllowHosts::default();
        assert_eq!(check_url("https://larm.example.se/hook", &none), None);
        for bad in [
            "http://larm.example.se/hook",
            "https://127.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://10.0.0.5/",
            "ftp://x/",
        ] {
            assert!(check_url(bad, &none).is_some(), "{bad}");
        }
        let local = AllowHosts::parse("127.0.0.1, Larm.Kommun.Local");
        assert_eq!(check_url("http://127.0.0.1:9000/hook", &local), None);
        assert_eq!(check_url("https://larm.kommun.local/hook", &local), None);
        assert!(check_url("https://10.0.0.5/", &local).is_some());
    }
}
