//! Async mode: signed (Standard Webhooks), retried, ordered callbacks. The URL allowlist is
//! checked by the gateway at start; delivery runs in the worker as activities of a per-workflow
//! delivery workflow, so it never holds the workflow back and finishes after it ends.

mod deliver;
mod resend;

pub use deliver::{Attempted, Delivery, DeliveryOutcome, attempt, webhook_id_in_run_of};
pub use resend::{Resender, Resent};

use std::collections::BTreeMap;
use std::time::Duration;

/// Where callbacks may go: `scheme://host[:port]` patterns, `*` matching any host label run or
/// any port (`https://*`, `https://*.example.com`, `http://127.0.0.1:*`).
#[derive(Debug, Clone)]
pub struct Allowlist {
    patterns: Vec<(String, String, Option<String>)>,
}

impl Allowlist {
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let (scheme, rest) = p
                .split_once("://")
                .ok_or_else(|| format!("callback pattern {p:?} needs a scheme, like https://*"))?;
            let rest = rest.trim_end_matches('/');
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && !h.ends_with(']') || port == "*" => {
                    (h.to_string(), Some(port.to_string()))
                }
                _ => (rest.to_string(), None),
            };
            out.push((scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), port));
        }
        Ok(Self { patterns: out })
    }

    /// Whether `url` may be called back. A bare `*` host never matches loopback, private or
    /// link-local addresses, by name or literal: those need a pattern that names them. The
    /// answer says whether a bare `*` matched, in which case the caller must also check what the
    /// name resolves to.
    pub fn check(&self, url: &str) -> Result<Checked, String> {
        let u = url::Url::parse(url).map_err(|e| format!("callbackUrl is not a URL: {e}"))?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err("callbackUrl must not carry credentials".into());
        }
        let host = u
            .host_str()
            .ok_or("callbackUrl has no host")?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = u.port_or_known_default().map(|p| p.to_string());
        let internal = match u.host() {
            Some(url::Host::Ipv4(ip)) => crate::egress::is_internal(ip.into()),
            Some(url::Host::Ipv6(ip)) => crate::egress::is_internal(ip.into()),
            _ => crate::egress::is_internal_name(&host),
        };
        let matched = self.patterns.iter().find(|(scheme, h, p)| {
            scheme == u.scheme()
                && glob(h, &host)
                && !(h == "*" && internal)
                && p.as_ref().is_none_or(|p| p == "*" || Some(p) == port.as_ref())
        });
        match matched {
            Some((_, h, _)) => Ok(Checked {
                resolve_check: h == "*" && matches!(u.host(), Some(url::Host::Domain(_))),
                host,
                port: u.port_or_known_default().unwrap_or(443),
            }),
            None => Err(format!("callbackUrl {url:?} is not allowed by the callback allowlist")),
        }
    }
}

/// A callback URL the allowlist matched.
#[derive(Debug)]
pub struct Checked {
    /// A bare `*` matched a name: what it resolves to must be public too.
    pub resolve_check: bool,
    pub host: String,
    pub port: u16,
}

fn glob(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        _ if pattern == "*" => true,
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// Signing secrets (`whsec_…`) per client, with a default; during a rotation, the previous ones
/// too, until the overlap ends.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub default: Option<String>,
    pub per_client: BTreeMap<String, String>,
    /// The rotation's old secrets: each request is signed with the current secret and, until
    /// `previous_until`, with the previous one of the same level (the client's own, or the
    /// default), so receivers can move to the new secret at their pace (Standard Webhooks lists
    /// several signatures in one header).
    pub previous_default: Option<String>,
    pub previous_per_client: BTreeMap<String, String>,
    /// When the overlap ends (None: while the previous secrets are configured).
    pub previous_until: Option<std::time::SystemTime>,
}

impl Secrets {
    /// The secrets a request to `client` is signed with at `now`: the current one first.
    /// Empty: none configured.
    pub fn for_client(&self, client: &str, now: std::time::SystemTime) -> Vec<&str> {
        let (current, previous) = match self.per_client.get(client) {
            Some(own) => (Some(own), self.previous_per_client.get(client)),
            None => (self.default.as_ref(), self.previous_default.as_ref()),
        };
        let overlapping = self.previous_until.is_none_or(|until| now < until);
        let previous = previous.filter(|p| overlapping && Some(*p) != current);
        current.into_iter().chain(previous).map(String::as_str).collect()
    }

    /// Every configured secret with whose it is (for checking them at start).
    pub fn all(&self) -> impl Iterator<Item = (String, &str)> {
        let defaults = [
            ("(default)", &self.default),
            ("(previous default)", &self.previous_default),
        ]
        .into_iter()
        .filter_map(|(who, s)| Some((who.to_string(), s.as_deref()?)));
        let clients = self.per_client.iter().map(|(c, s)| (c.clone(), s.as_str()));
        let previous = self
            .previous_per_client
            .iter()
            .map(|(c, s)| (format!("{c} (previous)"), s.as_str()));
        defaults.chain(clients).chain(previous)
    }
}

/// Delivery settings for the worker.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub secrets: Secrets,
    /// Wait before retry n (1-based) — jittered ±20%. After the last, delivery gives up.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
}

/// Parses `5s,1m,2h` style durations.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (num, unit) = p.split_at(p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len()));
            let n: u64 = num.parse().map_err(|_| format!("bad duration {p:?}"))?;
            Ok(match unit {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(format!("bad duration unit in {p:?} (use ms, s, m or h)")),
            })
        })
        .collect()
}

/// The delay before the next attempt after failed attempt `attempt` (1-based), or None to give up.
pub fn next_delay(schedule: &[Duration], attempt: u32) -> Option<Duration> {
    let base = *schedule.get(attempt.checked_sub(1)? as usize)?;
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    Some(base.mul_f64(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn during_a_rotation_each_level_signs_with_its_current_and_previous_secret_until_the_overlap_ends() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::now();
        let s = Secrets {
            default: Some("new".into()),
            per_client: [("alice".to_string(), "alice-new".to_string())].into(),
            previous_default: Some("old".into()),
            previous_per_client: [("bob".to_string(), "bob-old".to_string())].into(),
            previous_until: Some(now + Duration::from_secs(60)),
        };
        assert_eq!(s.for_client("anyone", now), ["new", "old"]);
        // Alice has her own secret: the default's old one is not hers to sign with.
        assert_eq!(s.for_client("alice", now), ["alice-new"]);
        // A previous secret without a current one at its level is not used alone.
        assert_eq!(s.for_client("bob", now), ["new", "old"]);
        assert_eq!(s.for_client("anyone", now + Duration::from_secs(61)), ["new"]);
        let open_ended = Secrets {
            previous_until: None,
            ..s.clone()
        };
        assert_eq!(
            open_ended.for_client("anyone", now + Duration::from_secs(3600)),
            ["new", "old"]
        );
        assert!(Secrets::default().for_client("anyone", now).is_empty());
        assert_eq!(s.all().count(), 4);
    }

    #[test]
    fn allowlist_matches_scheme_host_and_port_and_keeps_internal_addresses_out() {
        let a = Allowlist::parse(&[
            "https://*".into(),
            "http://127.0.0.1:*".into(),
            "https://*.example.com:8443".into(),
        ])
        .unwrap();
        assert!(a.check("https://hooks.acme.io/x").is_ok());
        assert!(a.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(a.check("https://a.example.com:8443/").is_ok());
        assert!(a.check("http://hooks.acme.io/x").is_err(), "scheme");
        assert!(a.check("https://10.0.0.8/x").is_err(), "private address under a bare *");
        assert!(a.check("https://localhost/x").is_err());
        assert!(a.check("https://user:pw@hooks.acme.io/").is_err());
        assert!(a.check("not a url").is_err());
        for disguised in [
            "https://[::ffff:127.0.0.1]:8443/h",
            "https://localhost./h",
            "https://metadata.google.internal./h",
            "https://169.254.169.254/latest",
            "https://[fd00::1]/h",
        ] {
            assert!(a.check(disguised).is_err(), "{disguised}");
        }
        assert!(
            a.check("https://127.0.0.1.nip.io/h").unwrap().resolve_check,
            "names under * are resolved"
        );
        assert!(!a.check("http://127.0.0.1:9000/hook").unwrap().resolve_check);
    }

    #[test]
    fn schedule_parses_and_gives_up_after_the_last_step() {
        let s = parse_schedule("100ms, 2s,1m").unwrap();
        assert_eq!(
            s,
            vec![
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        let d = next_delay(&s, 2).unwrap();
        assert!(d >= Duration::from_millis(1600) && d <= Duration::from_millis(2400));
        assert!(next_delay(&s, 4).is_none());
    }
}
