//! Stream tokens: signed, expiring, bound to one tenant and one workflow. Browsers pass them
//! as `?token=` because `EventSource` cannot set headers.

use crate::domain::{TenantId, WorkflowId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Serialize, Deserialize)]
struct Claims {
    t: String,
    w: String,
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

    pub fn issue(&self, tenant: &TenantId, id: &WorkflowId) -> String {
        self.issue_until(tenant, id, now() + self.ttl.as_secs())
    }

    pub fn issue_until(&self, tenant: &TenantId, id: &WorkflowId, exp: u64) -> String {
        let claims = Claims {
            t: tenant.as_str().into(),
            w: id.as_str().into(),
            e: exp,
        };
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let sig = B64.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The tenant a token grants, if it is valid for `id`.
    pub fn verify(&self, token: &str, id: &WorkflowId) -> Result<TenantId, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims.e < now() {
            return Err(TokenError::Expired);
        }
        if claims.w != id.as_str() {
            return Err(TokenError::OtherWorkflow);
        }
        TenantId::parse(&claims.t).map_err(|_| TokenError::Malformed)
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
}
