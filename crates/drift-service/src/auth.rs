//! Authentication, once for every transport: who a bearer credential names (an API key from
//! the key store, or a JWT), what it allows, and whether the compatibility headers agree.

use super::ServiceError;
use drift_bus::{Hub, Notice, Watch, Woke};
use drift_core::domain::{Caller, Scopes};
use drift_db::{Db, KeyRecord};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// API keys start with this, so a credential's kind is plain from its text.
const KEY_PREFIX: &str = "drift_";

/// The original API's headers. Still accepted, but they must agree with the credential.
#[derive(Debug, Default, Clone, Copy)]
pub struct Legacy<'a> {
    pub tenant: Option<&'a str>,
    pub client: Option<&'a str>,
    pub user: Option<&'a str>,
}

/// How callers prove who they are.
pub enum Mode {
    /// Every call needs a credential: an API key from `keys`, or a JWT `jwt` accepts.
    Required { keys: Option<Db>, jwt: Option<JwtVerifier> },
    /// No authentication (`--auth none`): the tenant headers are taken as sent, with every
    /// scope. For trusted networks and local experiments only.
    None,
}

pub struct Authenticator {
    mode: Mode,
    keys: Arc<KeyCache>,
}

/// API keys this gateway has looked up, so a call does not wait on the key store each time.
/// A revocation empties it on every gateway at once: `drift keys revoke` announces it over
/// Redis, and each gateway also checks the key store's revocations every few seconds (see
/// `watch_revocations`) in case the notice was missed; an entry lives `KEY_TTL` at most.
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Caller, Instant)>>,
    /// Bumped by every revocation: a lookup that began before one is not kept.
    generation: AtomicU64,
}

/// The longest a looked-up key is trusted without asking the key store again.
const KEY_TTL: Duration = Duration::from_secs(60);
/// Keys kept at once; a gateway with more callers than this looks the rest up each time.
const KEY_CACHE_CAPACITY: usize = 10_000;

impl KeyCache {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    fn get(&self, hash: &str) -> Option<Caller> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(c, _)| c.clone())
    }

    fn keep(&self, hash: String, caller: &Caller, looked_up_at: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock `forget_all` takes too, so a revocation cannot slip between.
        if self.generation.load(Ordering::Acquire) != looked_up_at {
            return;
        }
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < KEY_TTL);
            if entries.len() >= KEY_CACHE_CAPACITY {
                return;
            }
        }
        entries.insert(hash, (caller.clone(), Instant::now()));
    }

    /// A key was revoked somewhere: every key is looked up again from now on.
    pub fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// A new API key: the key (shown once), its public id and the hash that is stored.
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub hash: String,
}

pub fn hash_key(key: &str) -> String {
    drift_core::digest::sha256_hex(key)
}

/// 256 random bits, url-safe; the id is what lists and revocations name.
pub fn new_key() -> NewKey {
    use base64::Engine;
    let id: String = (0..4).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let key = format!(
        "{KEY_PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    NewKey {
        hash: hash_key(&key),
        id: format!("key_{id}"),
        key,
    }
}

fn unauthorized(why: &str) -> ServiceError {
    ServiceError::Unauthorized(why.to_string())
}

impl Authenticator {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            keys: Arc::new(KeyCache::new()),
        }
    }

    /// The API keys this gateway trusts without asking the key store (see `KeyCache`).
    pub fn key_cache(&self) -> Arc<KeyCache> {
        self.keys.clone()
    }

    /// The caller an API key names: from the cache, else from the key store (and then kept).
    async fn key_caller(&self, store: &Db, credential: &str) -> Result<Caller, ServiceError> {
        let hash = hash_key(credential);
        if let Some(c) = self.keys.get(&hash) {
            return Ok(c);
        }
        let generation = self.keys.generation.load(Ordering::Acquire);
        let rec = store
            .key_by_hash(&hash)
            .await
            .map_err(|e| ServiceError::Unavailable {
                dependency: "the key store",
                cause: e.to_string(),
            })?
            .ok_or_else(|| unauthorized("unknown or revoked API key"))?;
        let caller = caller_of_key(&rec)?;
        self.keys.keep(hash, &caller, generation);
        Ok(caller)
    }

    /// The caller a bearer credential names, with the compatibility headers checked against it.
    pub async fn authenticate(&self, bearer: Option<&str>, legacy: Legacy<'_>) -> Result<Caller, ServiceError> {
        let (keys, jwt) = match &self.mode {
            Mode::None => return headers_only(legacy),
            Mode::Required { keys, jwt } => (keys, jwt),
        };
        let credential =
            bearer.ok_or_else(|| unauthorized("an Authorization: Bearer credential (API key or JWT) is required"))?;
        let mut caller = if credential.starts_with(KEY_PREFIX) {
            let keys = keys
                .as_ref()
                .ok_or_else(|| unauthorized("API keys are not accepted here"))?;
            self.key_caller(keys, credential).await?
        } else if credential.matches('.').count() == 2 {
            let jwt = jwt.as_ref().ok_or_else(|| unauthorized("JWTs are not accepted here"))?;
            jwt.verify(credential)?
        } else if super::is_token(credential) {
            return Err(ServiceError::Forbidden(
                "a stream token only reads its own workflow; use an API key or a JWT for this".into(),
            ));
        } else {
            return Err(unauthorized("the credential is neither an API key nor a JWT"));
        };
        if legacy.tenant.is_some_and(|t| t != caller.tenant.as_str()) {
            return Err(ServiceError::Forbidden(
                "X_TENANT_ID does not match the credential's tenant".into(),
            ));
        }
        if legacy.client.is_some_and(|c| c != caller.client) {
            return Err(ServiceError::Forbidden(
                "X_CLIENT_ID does not match the credential's client".into(),
            ));
        }
        if let Some(user) = legacy.user {
            caller = Caller::new(caller.tenant.as_str(), &caller.client, Some(user), caller.scopes)?;
        }
        Ok(caller)
    }
}

/// Keeps a gateway's cached keys honest until `shutdown`: forgets them all on a revocation
/// notice over the hub (and on a resync, when one may have been missed), and whenever the key
/// store's revocations differ from the last check, every `poll`. Subscribes before it returns.
pub async fn watch_revocations(
    cache: Arc<KeyCache>,
    store: Db,
    hub: Hub,
    channel: String,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut watch = Watch::new(hub, channel, poll).await;
    let mut seen = store.revocations().await.ok();
    tokio::spawn(async move {
        while let Some(woke) = watch.next(&shutdown).await {
            match woke {
                Woke::Notice(Notice::KeysRevoked) | Woke::Resync => {
                    cache.forget_all();
                    tracing::debug!("a key was revoked (or a notice may have been missed): cached keys forgotten");
                }
                Woke::Notice(_) => {}
                Woke::Tick => match store.revocations().await {
                    Ok(now) if seen.as_ref() != Some(&now) => {
                        if seen.is_some() {
                            cache.forget_all();
                            tracing::debug!("the key store has a new revocation: cached keys forgotten");
                        }
                        seen = Some(now);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "checking the key store for revocations failed; retrying at the next check")
                    }
                },
            }
        }
    });
}

fn headers_only(legacy: Legacy<'_>) -> Result<Caller, ServiceError> {
    let tenant = legacy
        .tenant
        .ok_or_else(|| ServiceError::Invalid("missing header X_TENANT_ID".into()))?;
    let client = legacy
        .client
        .ok_or_else(|| ServiceError::Invalid("missing header X_CLIENT_ID".into()))?;
    Ok(Caller::new(tenant, client, legacy.user, Scopes::all())?)
}

fn caller_of_key(rec: &KeyRecord) -> Result<Caller, ServiceError> {
    let scopes = Scopes::parse(&rec.scopes).map_err(|e| ServiceError::Internal(format!("key {}: {e}", rec.id)))?;
    Caller::new(&rec.tenant, &rec.client, rec.user.as_deref(), scopes)
        .map_err(|e| ServiceError::Internal(format!("key {}: {e}", rec.id)))
}

/// What a Drift JWT carries.
#[derive(Deserialize)]
struct Claims {
    tenant: String,
    /// The client; `azp` or `sub` when absent.
    client: Option<String>,
    azp: Option<String>,
    sub: Option<String>,
    /// The acting user; `sub` when absent.
    user: Option<String>,
    /// OAuth style: space-separated.
    scope: Option<String>,
    scopes: Option<Vec<String>>,
}

/// Verifies JWTs: HS256 with a shared secret, RS256/ES256 with keys from a JWKS file. `exp`
/// is required; issuer and audience are checked when configured.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    jwks: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtVerifier {
    pub fn new(
        secret: Option<&str>,
        jwks_json: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, String> {
        let mut jwks = Vec::new();
        if let Some(json) = jwks_json {
            let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS document: {e}"))?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue, // symmetric keys never come from a published key set
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key: {e}"))?;
                jwks.push((jwk.common.key_id.clone(), alg, key));
            }
            if jwks.is_empty() {
                return Err("the JWKS document has no RSA or EC keys".into());
            }
        }
        Ok(Self {
            hs256: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks,
            issuer,
            audience,
        })
    }

    fn verify(&self, token: &str) -> Result<Caller, ServiceError> {
        let bad = |why: &str| unauthorized(&format!("invalid JWT: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 | Algorithm::ES256 => self
                .jwks
                .iter()
                .find(|(kid, alg, _)| *alg == header.alg && (header.kid.is_none() || *kid == header.kid))
                .map(|(_, _, k)| k),
            _ => None,
        }
        .ok_or_else(|| bad("no key for its algorithm"))?;
        let mut v = Validation::new(header.alg);
        v.set_required_spec_claims(&["exp"]);
        v.leeway = 30;
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| bad(&e.to_string()))?
            .claims;
        let scopes = match (&claims.scope, &claims.scopes) {
            (Some(s), _) => Scopes::parse(s),
            (None, Some(list)) => Scopes::parse(&list.join(" ")),
            (None, None) => Ok(Scopes::default()),
        }
        .map_err(|e| bad(&e.to_string()))?;
        let client = claims
            .client
            .or(claims.azp)
            .or(claims.sub.clone())
            .ok_or_else(|| bad("no client claim"))?;
        let user = claims.user.or(claims.sub);
        Caller::new(&claims.tenant, &client, user.as_deref(), scopes).map_err(|e| bad(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_cached_key_is_forgotten_on_revocation_and_a_lookup_begun_before_one_is_not_kept() {
        let cache = KeyCache::new();
        let caller = Caller::new("acme", "web", None, Scopes::all()).unwrap();
        let before = cache.generation.load(Ordering::Acquire);
        cache.forget_all();
        cache.keep("h".into(), &caller, before);
        assert_eq!(cache.get("h"), None, "looked up before the revocation");
        cache.keep("h".into(), &caller, cache.generation.load(Ordering::Acquire));
        assert_eq!(cache.get("h"), Some(caller));
        cache.forget_all();
        assert!(cache.is_empty());
    }

    #[test]
    fn jwts_are_checked_for_signature_expiry_and_claims() {
        let v = JwtVerifier::new(Some("s3cret"), None, None, None).unwrap();
        let sign = |claims: serde_json::Value, secret: &str| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let good =
            json!({"tenant": "acme", "client": "web", "sub": "ann", "scope": "workflows:read", "exp": now() + 60});
        let c = v.verify(&sign(good.clone(), "s3cret")).unwrap();
        assert_eq!(
            (c.tenant.as_str(), c.client.as_str(), c.user.as_deref()),
            ("acme", "web", Some("ann"))
        );
        assert!(c.may(drift_core::domain::Scope::Read) && !c.may(drift_core::domain::Scope::Drive));
        assert!(v.verify(&sign(good, "other")).is_err(), "wrong signature");
        let expired = json!({"tenant": "acme", "client": "web", "exp": now() - 3600});
        assert!(v.verify(&sign(expired, "s3cret")).is_err(), "expired");
        let no_exp = json!({"tenant": "acme", "client": "web"});
        assert!(v.verify(&sign(no_exp, "s3cret")).is_err(), "exp is required");
        let bad_tenant = json!({"tenant": "a/b", "client": "web", "exp": now() + 60});
        assert!(v.verify(&sign(bad_tenant, "s3cret")).is_err());
    }

    #[test]
    fn es256_jwts_verify_against_a_jwks_file_by_key_id() {
        // A key pair made for this test only.
        let jwks = include_str!("testdata/es256-test-jwks.json");
        let pem = include_bytes!("testdata/es256-test-key.pem");
        let v = JwtVerifier::new(
            None,
            Some(jwks),
            Some("https://idp.example".into()),
            Some("drift".into()),
        )
        .unwrap();
        let key = EncodingKey::from_ec_pem(pem).unwrap();
        let sign = |kid: &str, claims: serde_json::Value| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid.into());
            encode(&h, &claims, &key).unwrap()
        };
        let claims = json!({"tenant": "acme", "client": "svc", "scope": "workflows:start", "exp": now() + 60,
            "iss": "https://idp.example", "aud": "drift"});
        let c = v.verify(&sign("test-es256", claims.clone())).unwrap();
        assert_eq!((c.tenant.as_str(), c.client.as_str()), ("acme", "svc"));
        assert!(v.verify(&sign("another-key", claims.clone())).is_err(), "unknown kid");
        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = json!("someone-else");
        assert!(v.verify(&sign("test-es256", wrong_aud)).is_err(), "audience");
        let mut wrong_iss = claims;
        wrong_iss["iss"] = json!("https://evil.example");
        assert!(v.verify(&sign("test-es256", wrong_iss)).is_err(), "issuer");
        // Without an HS256 secret, an HS256 token is refused (no algorithm confusion).
        let hs = encode(
            &Header::default(),
            &json!({"tenant": "acme", "client": "x", "exp": now() + 60}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(v.verify(&hs).is_err());
    }

    #[test]
    fn new_keys_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(KEY_PREFIX) && a.key.len() > 50);
        assert_eq!(a.hash, hash_key(&a.key));
        assert!(!a.hash.contains(&a.key));
    }
}
