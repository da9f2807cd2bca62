//! Short-lived signed tokens for browsers, which cannot set headers on `EventSource` or
//! `WebSocket`: stream tokens (read-only, bound to one tenant and one workflow, passed as
//! `?token=`) and socket tickets (a minute long, naming a caller, passed once as `?ticket=` to
//! open a WebSocket) — so no long-lived secret ever sits in a URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use drift_core::domain::{Caller, Scopes, TenantId, WorkflowId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a socket ticket may wait before it opens its socket.
const TICKET_TTL: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, PartialEq)]
enum Kind {
    #[serde(rename = "s")]
    Stream,
    #[serde(rename = "t")]
    Ticket,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    k: Kind,
    t: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// A ticket's nonce: two tickets issued to one caller in one second are two tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    e: u64,
}

pub struct Tokens {
    key: Vec<u8>,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token is for another workflow")]
    OtherWorkflow,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Whether a bearer value is one of these tokens rather than an API key or a JWT.
pub fn is_token(s: &str) -> bool {
    s.matches('.').count() == 1
}

impl Tokens {
    /// Replicas must share `secret`; without one a random key is used (tokens then only work
    /// on this process).
    pub fn new(secret: Option<&str>, ttl: Duration) -> Self {
        let key = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => (0..32).map(|_| rand::random::<u8>()).collect(),
        };
        Self { key, ttl }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key");
        m.update(payload.as_bytes());
        m
    }

    fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let sig = B64.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    fn open(&self, token: &str, kind: Kind) -> Result<Claims, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims.k != kind {
            return Err(TokenError::Malformed);
        }
        if claims.e < now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    pub fn issue(&self, tenant: &TenantId, id: &WorkflowId) -> String {
        self.issue_until(tenant, id, now() + self.ttl.as_secs())
    }

    pub fn issue_until(&self, tenant: &TenantId, id: &WorkflowId, exp: u64) -> String {
        self.sign(&Claims {
            k: Kind::Stream,
            t: tenant.as_str().into(),
            w: Some(id.as_str().into()),
            c: None,
            u: None,
            s: None,
            n: None,
            e: exp,
        })
    }

    /// The tenant a stream token grants, if it is valid for `id`.
    pub fn verify(&self, token: &str, id: &WorkflowId) -> Result<TenantId, TokenError> {
        let claims = self.open(token, Kind::Stream)?;
        if claims.w.as_deref() != Some(id.as_str()) {
            return Err(TokenError::OtherWorkflow);
        }
        TenantId::parse(&claims.t).map_err(|_| TokenError::Malformed)
    }

    /// A ticket to open one WebSocket as `caller`, valid for a minute.
    pub fn issue_ticket(&self, caller: &Caller) -> (String, Duration) {
        let token = self.sign(&Claims {
            k: Kind::Ticket,
            t: caller.tenant.as_str().into(),
            w: None,
            c: Some(caller.client.clone()),
            u: caller.user.clone(),
            s: Some(caller.scopes.to_string()),
            n: Some(B64.encode(rand::random::<[u8; 12]>())),
            e: now() + TICKET_TTL.as_secs(),
        });
        (token, TICKET_TTL)
    }

    /// The caller a socket ticket names, and how long the ticket stays valid (how long its
    /// use must be remembered).
    pub fn verify_ticket(&self, ticket: &str) -> Result<(Caller, Duration), TokenError> {
        let c = self.open(ticket, Kind::Ticket)?;
        let scopes = Scopes::parse(c.s.as_deref().unwrap_or_default()).map_err(|_| TokenError::Malformed)?;
        let caller = Caller::new(&c.t, c.c.as_deref().unwrap_or_default(), c.u.as_deref(), scopes)
            .map_err(|_| TokenError::Malformed)?;
        Ok((caller, Duration::from_secs(c.e.saturating_sub(now()) + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_workflow_signature_and_time() {
        let t = Tokens::new(Some("s3cret"), Duration::from_secs(60));
        let (tenant, id) = (TenantId::parse("acme").unwrap(), WorkflowId::parse("wf-1").unwrap());
        let tok = t.issue(&tenant, &id);
        assert_eq!(t.verify(&tok, &id), Ok(tenant.clone()));
        assert_eq!(
            t.verify(&tok, &WorkflowId::parse("wf-2").unwrap()),
            Err(TokenError::OtherWorkflow)
        );
        assert_eq!(t.verify(&t.issue_until(&tenant, &id, 1), &id), Err(TokenError::Expired));
        let other = Tokens::new(Some("other"), Duration::from_secs(60));
        assert_eq!(other.verify(&tok, &id), Err(TokenError::Signature));
        assert_eq!(t.verify("garbage", &id), Err(TokenError::Malformed));
    }

    #[test]
    fn tickets_name_their_caller_and_are_not_stream_tokens() {
        let t = Tokens::new(Some("s3cret"), Duration::from_secs(60));
        let caller = Caller::new("acme", "web", Some("ann"), Scopes::parse("workflows:read").unwrap()).unwrap();
        let (ticket, _) = t.issue_ticket(&caller);
        assert_eq!(t.verify_ticket(&ticket).map(|(c, _)| c), Ok(caller.clone()));
        assert_ne!(ticket, t.issue_ticket(&caller).0, "every ticket is its own");
        let id = WorkflowId::parse("wf-1").unwrap();
        assert_eq!(
            t.verify(&ticket, &id),
            Err(TokenError::Malformed),
            "a ticket is no stream token"
        );
        let stream = t.issue(&caller.tenant, &id);
        assert!(t.verify_ticket(&stream).is_err(), "a stream token opens no socket");
        assert!(is_token(&ticket) && is_token(&stream));
    }
}
