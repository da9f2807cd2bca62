//! Admin subcommands that work on the database directly: `drift keys create|list|revoke`.

use crate::bus::{Layout, Notice, RedisTarget, Store};
use crate::config::{KeysArgs, KeysCmd};
use crate::db::{Db, KeyRecord};
use crate::domain::{Caller, Scopes};
use anyhow::Context;

/// Creates an API key in `db` and returns it (the only time it is seen).
async fn create_key(
    db: &Db,
    tenant: &str,
    client: &str,
    user: Option<&str>,
    scopes: &str,
    description: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let scopes = Scopes::parse(scopes)?;
    let caller = Caller::new(tenant, client, user, scopes)?;
    let new = crate::service::new_key();
    let rec = KeyRecord {
        id: new.id.clone(),
        tenant: caller.tenant.to_string(),
        client: caller.client,
        user: caller.user,
        scopes: scopes.to_string(),
        description: description.map(str::to_string),
        created_at: chrono::Utc::now().to_rfc3339(),
        revoked_at: None,
    };
    db.insert_key(&rec, &new.hash).await?;
    Ok((new.id, new.key))
}

/// A key kept from an earlier run (`drift dev`'s, in its data folder) if the key store at
/// `database_url` still has it; else a new one for `tenant` with every scope. Returns the key,
/// and its id when it is new.
pub async fn key_to_keep(
    database_url: &str,
    kept: Option<&str>,
    tenant: &str,
    description: &str,
) -> anyhow::Result<(String, Option<String>)> {
    let db = Db::connect(database_url).await?;
    if let Some(k) = kept
        && db.key_by_hash(&crate::service::hash_key(k)).await?.is_some()
    {
        return Ok((k.to_string(), None));
    }
    let (id, key) = create_key(&db, tenant, "web-demo", None, "admin", Some(description)).await?;
    Ok((key, Some(id)))
}

pub async fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let url = a.database_url();
    if url.starts_with("sqlite://") {
        std::fs::create_dir_all(&a.data_dir).ok();
    }
    let db = Db::connect(&url).await.context("opening the key store")?;
    match a.action.clone() {
        KeysCmd::Create {
            tenant,
            client,
            user,
            scopes,
            description,
        } => {
            let (id, key) = create_key(&db, &tenant, &client, user.as_deref(), &scopes, description.as_deref()).await?;
            eprintln!("created {id} for tenant {tenant:?}, client {client:?}; the key is shown only now:");
            println!("{key}");
        }
        KeysCmd::List => {
            println!(
                "{:<14} {:<16} {:<16} {:<10} {:<26} scopes",
                "id", "tenant", "client", "state", "created"
            );
            for k in db.list_keys().await? {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!(
                    "{:<14} {:<16} {:<16} {:<10} {:<26} {}",
                    k.id, k.tenant, k.client, state, k.created_at, k.scopes
                );
            }
        }
        KeysCmd::Revoke { id } => {
            if !db.revoke_key(&id, &chrono::Utc::now().to_rfc3339()).await? {
                anyhow::bail!("no active key {id:?} (see `drift keys list`)");
            }
            eprintln!("revoked {id}");
            let later = "gateways refuse it within their next revocation check (--revocation-check-ms, 2 s by default)";
            match announce_revocation(&a).await {
                Ok(Some(redis)) => eprintln!("announced on {redis}: every gateway refuses it now"),
                Ok(None) => eprintln!("no Redis given (--redis-url or --redis-cluster): {later}"),
                Err(e) => eprintln!("could not announce the revocation over Redis ({e:#}): {later}"),
            }
        }
    }
    Ok(())
}

/// Tells every gateway on the deployment's Redis to forget its cached keys. Answers where, or
/// None when no Redis is known (neither flags nor `drift dev`'s endpoints.json).
async fn announce_revocation(a: &KeysArgs) -> anyhow::Result<Option<String>> {
    let dev = crate::client::dev_endpoints(&a.data_dir);
    let flags = RedisTarget::from_flags(a.redis_url.as_deref(), &a.redis_cluster).map_err(|e| anyhow::anyhow!(e))?;
    let Some(target) = flags.or_else(|| crate::client::dev_redis(&dev)) else {
        return Ok(None);
    };
    let prefix = a
        .key_prefix
        .clone()
        .or_else(|| dev["keyPrefix"].as_str().map(String::from))
        .unwrap_or_else(|| "drift".into());
    let channel = Layout::new(&prefix)
        .map_err(|e| anyhow::anyhow!("--key-prefix: {e}"))?
        .keys_channel();
    Store::announce(&target, &channel, Notice::KeysRevoked).await?;
    Ok(Some(target.describe()))
}
