//! The guard against server-side request forgery: unless a connection sets
//! `allow_private_network: true`, its requests may not reach loopback, private, link-local,
//! carrier-grade NAT, cloud-metadata or other non-public addresses.
//!
//! The address is checked where it becomes known: an IP literal in the URL (which the URL parser
//! has already turned from decimal, octal or hexadecimal forms into a plain address), every name
//! the resolver looks up (so a public name that resolves to a private address is refused, and the
//! connection goes to the address that was checked), and every redirect. A refusal is a
//! [`Refused`] error somewhere in the error's sources, which the connector reports as a fatal step
//! error: trying again would not change the address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4 carried in IPv6 (mapped, compatible, NAT64) is judged as that IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            let low_v4 = || {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                Ipv4Addr::new(a, b, c, d)
            };
            if v6.is_loopback() {
                return Some("loopback");
            }
            if s[0..4] == [0, 0, 0, 0] {
                // ::/64 holds IPv4 in its low 32 bits: mapped (::ffff:a.b.c.d), translated
                // (::ffff:0:a.b.c.d, RFC 2765) and the deprecated compatible form (::a.b.c.d);
                // nothing else in it is routable.
                return match s[4..6] {
                    [0xffff, 0] | [0, 0xffff] => non_public_v4(low_v4()),
                    _ => non_public_v4(low_v4()).or(Some("reserved")),
                };
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return non_public_v4(low_v4());
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return Some("private (local NAT64)");
            }
            if s[0] == 0x2002 {
                // 6to4 carries the IPv4 address in the next 32 bits.
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return non_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            if s[0] == 0x2001 && s[1] == 0 {
                return Some("reserved (Teredo)");
            }
            if s[0] & 0xffc0 == 0xfec0 {
                return Some("private (site-local)");
            }
            if s[0] == 0x100 && s[1..4] == [0, 0, 0] {
                return Some("reserved (discard)");
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                // Unique local addresses; AWS's metadata service is fd00:ec2::254.
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast()
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
    {
        Some("reserved")
    } else {
        None
    }
}

fn refusal(what: &str, ip: IpAddr, kind: &str) -> Refused {
    Refused(format!(
        "refused to send a request to {what} ({ip}, a {kind} address): the connection may reach only public addresses unless it sets `allow_private_network: true`"
    ))
}

/// Checks the host of `url` when it is an IP address (names are checked when they are resolved).
pub fn check_url(url: &Url) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    match non_public(ip) {
        Some(kind) => Err(refusal(url.as_str(), ip, kind)),
        None => Ok(()),
    }
}

/// A resolver that answers only with public addresses: a name that resolves to nothing else is
/// refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| non_public(a.ip()).is_none())
                .collect();
            if public.is_empty()
                && let Some(first) = found.first()
            {
                let kind = non_public(first.ip()).unwrap_or("non-public");
                return Err(Box::new(refusal(&host, first.ip(), kind)) as _);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The redirect policy of a connection's client: at most 10 redirects; with `public_only`, none to
/// a non-public IP address (names are checked by [`PublicOnly`] when they are resolved); with
/// `keep_origin`, none from a request that carried the connection's credentials to an origin they
/// may not go to (the redirect is then the answer).
pub fn redirects(
    public_only: bool,
    keep_origin: Option<super::config::HttpConfig>,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("more than 10 redirects");
        }
        if let Some(config) = &keep_origin
            && attempt
                .previous()
                .first()
                .is_some_and(|first| config.credentials_go_to(first))
            && !config.credentials_go_to(attempt.url())
        {
            return attempt.stop();
        }
        if public_only && let Err(refused) = check_url(attempt.url()) {
            return attempt.error(refused);
        }
        attempt.follow()
    })
}

/// The refusal behind an error, if the guard caused it.
pub fn refused_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(url: &str) -> Option<String> {
        check_url(&Url::parse(url).unwrap()).err().map(|r| r.0)
    }

    #[test]
    fn private_addresses_in_every_spelling_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://017700000001/",
            "http://0x7f.0.0.1/",
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.1.1/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://[::127.0.0.1]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://255.255.255.255/",
            "http://192.0.0.192/",
            "http://[2002:7f00:1::]/",
            "http://[2001:0:4136:e378::1]/",
            "http://[fec0::1]/",
            "http://[64:ff9b:1::a00:1]/",
            // IPv4-translated (RFC 2765), which the hardening issue found let through.
            "http://[::ffff:0:127.0.0.1]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[::ffff:0:10.0.0.1]/",
            "http://[::1:0:0:1]/",
        ] {
            let refused = kind(url);
            assert!(refused.is_some(), "{url} must be refused");
            assert!(
                refused.unwrap().contains("allow_private_network"),
                "{url}: the message says how to allow it"
            );
        }
        assert!(
            kind("http://169.254.169.254/")
                .unwrap()
                .contains("cloud metadata")
        );
        assert!(
            kind("http://2130706433/")
                .unwrap()
                .contains("127.0.0.1, a loopback")
        );
    }

    #[test]
    fn public_addresses_and_names_pass_the_url_check() {
        for url in [
            "https://93.184.215.14/",
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
            "https://shop.example.com/api",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
        ] {
            assert_eq!(kind(url), None, "{url}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused() {
        let err = match PublicOnly.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e,
        };
        let refused = refused_in(err.as_ref()).expect("a refusal");
        assert!(refused.0.contains("localhost"), "{refused}");
        assert!(refused.0.contains("loopback"), "{refused}");
    }
}
