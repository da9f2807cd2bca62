//! Answer-link tokens, pure: what a link says (tenant, workflow, screen seq, assignee, the
//! workflow's link generation, expiry), signed with a secret every gateway and worker shares.
//! Here so the gateway (links made on request, their pages) and the worker (links made for
//! screens whose node says `answerLink`, put in published states and webhooks) sign alike.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token's signature covers before its payload: it signs nothing else.
const SIGNED: &[u8] = b"drift answer link\n";

/// The longest a link may live.
pub const MAX_LINK_TTL_SECS: u64 = 30 * 24 * 3600;

/// What a token is: a link (opens the page) or its page's short-lived form token (answers).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    #[serde(rename = "a")]
    Link,
    #[serde(rename = "f")]
    Form,
}

/// What a link (or its page's form token) says, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub k: Kind,
    /// Tenant.
    pub t: String,
    /// Workflow id.
    pub w: String,
    /// The screen's seq.
    pub q: u64,
    /// The link's id: its answer's request id (`link-{i}`), and what a form token is bound to.
    pub i: String,
    /// Who it is for (shown on the page, recorded with the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// The workflow's link generation when it was made: a revocation raises it, closing every
    /// link made before.
    pub g: u64,
    /// Expires (s since epoch).
    pub e: u64,
}

/// A link the worker makes for a screen whose node says `answerLink`: the state `seq` it is
/// for and when it expires. The workflow decides both (its clock, the node's ttl); the secret
/// stays with the worker, which signs the link into the published state and the webhook.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LinkDue {
    pub seq: u64,
    /// Expires (ms since epoch, the workflow's clock).
    pub expires_ms: u64,
}

/// The key links are signed with, and where their pages are served.
#[derive(Clone)]
pub struct LinkKeys {
    key: Vec<u8>,
    /// Where pages are served from, e.g. `https://drift.example.com` (no trailing slash).
    public_url: String,
}

impl std::fmt::Debug for LinkKeys {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl LinkKeys {
    pub fn new(secret: &str, public_url: &str) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
            public_url: public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The page a token opens.
    pub fn url(&self, token: &str) -> String {
        format!("{}/answer/{token}", self.public_url)
    }

    fn mac(&self, domain: &[u8], payload: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key");
        m.update(domain);
        m.update(payload.as_bytes());
        m
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let sig = B64.encode(self.mac(SIGNED, &payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The claims of a token of `kind` with a good signature (expiry is the caller's to judge).
    pub fn open(&self, token: &str, kind: Kind) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let (payload, sig) = token.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        self.mac(SIGNED, payload).verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (claims.k == kind).then_some(claims)
    }

    /// The link the worker makes for `due` on `tenant`'s `workflow`, in generation `g`: the
    /// same every time it is made (a retried publish, the webhook of the same state), so its
    /// id, and with it its answer's request id, is one per screen.
    pub fn screen_link(&self, tenant: &str, workflow: &str, due: LinkDue, g: u64) -> String {
        let id = self.mac(b"drift answer link id\n", &format!("{tenant}/{workflow}/{}", due.seq));
        let id = B64.encode(&id.finalize().into_bytes()[..12]);
        let claims = Claims {
            k: Kind::Link,
            t: tenant.into(),
            w: workflow.into(),
            q: due.seq,
            i: id,
            a: None,
            g,
            e: due.expires_ms.div_ceil(1000),
        };
        self.url(&self.sign(&claims))
    }
}

/// A link's lifetime as a definition writes it: a number and a unit (`s`, `m`, `h`, `d`),
/// or several (`1h30m`), from 1 second to 30 days.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration like \"72h\", \"30m\" or \"1d12h\"");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() || total == 0 && s.trim().is_empty() {
        return Err(bad());
    }
    if total == 0 || total > MAX_LINK_TTL_SECS {
        return Err(format!("{s:?} is out of range: an answer link lives 1s to 30d"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_reads_units_and_their_sums_within_a_second_to_thirty_days() {
        assert_eq!(parse_ttl("72h"), Ok(72 * 3600));
        assert_eq!(parse_ttl("1d12h"), Ok(36 * 3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30d"), Ok(MAX_LINK_TTL_SECS));
        for bad in ["", "72", "h", "3 h", "1w", "-1h", "0s", "31d", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn a_screen_link_is_the_same_each_time_it_is_made_and_opens_to_its_claims() {
        let keys = LinkKeys::new("a secret", "https://drift.test/");
        let due = LinkDue {
            seq: 3,
            expires_ms: 1_800_000_000_500,
        };
        let a = keys.screen_link("acme", "order-1", due, 0);
        assert_eq!(a, keys.screen_link("acme", "order-1", due, 0));
        assert_ne!(a, keys.screen_link("acme", "order-1", LinkDue { seq: 4, ..due }, 0));
        let token = a
            .strip_prefix("https://drift.test/answer/")
            .expect("under the public url");
        let claims = keys.open(token, Kind::Link).expect("opens");
        assert_eq!(
            (claims.t.as_str(), claims.w.as_str(), claims.q, claims.e),
            ("acme", "order-1", 3, 1_800_000_001)
        );
        assert!(keys.open(token, Kind::Form).is_none(), "a link is no form token");
        assert!(
            LinkKeys::new("another", "https://drift.test")
                .open(token, Kind::Link)
                .is_none()
        );
    }
}
