//! Where outbound requests (webhook callbacks and HTTP nodes) may go. Internal addresses —
//! loopback, private, link-local (cloud metadata), CGNAT, unique-local, v4-mapped and
//! unspecified — are refused unless the operator allows their network. Names are checked after
//! resolution, at connection time, by the resolver the HTTP clients use, so a name that
//! resolves (or re-resolves, as in DNS rebinding) to an internal address cannot slip through.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Internal networks the operator allows anyway (`drift dev`: loopback).
    allowed: Vec<IpNet>,
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF 192.0.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry a v4 address inside.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return internal_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return internal_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0 && s[1..6] == [0; 5]) // v4-compatible and other ::/80 forms
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
}

/// Whether an address is one outbound requests must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

/// Names that only ever mean something inside a network.
pub fn is_internal_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || [".localhost", ".internal", ".local", ".localdomain", ".home.arpa"]
            .iter()
            .any(|suffix| h.ends_with(suffix))
}

impl Egress {
    /// `loopback`, `private` (RFC 1918 and unique-local), or CIDRs such as `10.1.0.0/16`.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            match item {
                "loopback" => allowed.extend(["127.0.0.0/8", "::1/128"].map(|n| n.parse::<IpNet>().expect("valid"))),
                "private" => allowed.extend(
                    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
                        .map(|n| n.parse::<IpNet>().expect("valid")),
                ),
                cidr => allowed.push(
                    cidr.parse::<IpNet>()
                        .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("{cidr:?} is not loopback, private or a CIDR like 10.1.0.0/16"))?,
                ),
            }
        }
        Ok(Self { allowed })
    }

    /// Whether a request may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        !is_internal(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// Checks a URL whose host is an address (those never reach the resolver).
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(EgressError::NoHost),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(EgressError::Internal(ip))
        }
    }

    /// Resolves `host` and keeps the addresses requests may reach; an error when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let host = host.trim_end_matches('.');
        let found = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| EgressError::ResolveTimedOut(host.into()))?
            .map_err(|e| EgressError::DoesNotResolve(host.into(), e))?
            .collect::<Vec<_>>();
        let permitted: Vec<SocketAddr> = found.iter().copied().filter(|a| self.permits(a.ip())).collect();
        if permitted.is_empty() {
            return Err(EgressError::OnlyInternal(host.into()));
        }
        Ok(permitted)
    }

    /// A resolver for reqwest that applies this policy at connection time.
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver(self.clone()))
    }
}

/// Why a connection may not be made. It travels inside reqwest's errors (from the resolver
/// and the redirect policy), where callers find it by type, not by message.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is an internal address")]
    Internal(IpAddr),
    #[error("{0} resolves only to internal addresses")]
    OnlyInternal(String),
    #[error("resolving {0} timed out")]
    ResolveTimedOut(String),
    #[error("{0} does not resolve: {1}")]
    DoesNotResolve(String, #[source] std::io::Error),
}

impl EgressError {
    /// A request refused by this policy (not a network failure a retry might mend).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Internal(_) | Self::OnlyInternal(_) | Self::NoHost)
    }

    /// The policy's refusal somewhere in `e`'s chain of causes, if that is why it failed.
    pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(found) = c.downcast_ref::<EgressError>() {
                return found.is_refusal().then_some(found);
            }
            cause = c.source();
        }
        None
    }
}

pub struct Resolver(Egress);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0.clone();
        Box::pin(async move {
            let addrs = egress
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_is_found_by_type_inside_reqwest_s_error() {
        let client = reqwest::Client::builder()
            .dns_resolver(Egress::default().resolver())
            .build()
            .unwrap();
        let e = client.get("http://localhost:9/").send().await.unwrap_err();
        let found = EgressError::refusal_in(&e);
        assert!(
            matches!(found, Some(EgressError::OnlyInternal(h)) if h == "localhost"),
            "{e:?}"
        );
        let unreachable = reqwest::Client::new()
            .get("http://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert!(EgressError::refusal_in(&unreachable).is_none(), "{unreachable:?}");
    }

    #[test]
    fn internal_addresses_in_every_disguise_are_refused_unless_allowed() {
        let e = Egress::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!e.permits(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(e.permits(ip.parse().unwrap()), "{ip} is public");
        }
        let dev = Egress::parse(&["loopback".into()]).unwrap();
        assert!(dev.permits("127.0.0.1".parse().unwrap()) && dev.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!dev.permits("10.0.0.1".parse().unwrap()));
        assert!(Egress::parse(&["nonsense".into()]).is_err());
        assert!(is_internal_name("localhost.") && is_internal_name("metadata.google.internal."));
        assert!(!is_internal_name("hooks.example.com"));
    }
}
