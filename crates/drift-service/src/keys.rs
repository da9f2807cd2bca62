//! Issuing API keys outside any request: `drift keys create` and `drift dev`'s own key. Only
//! the key's hash is stored; the key is handed back once.

use crate::{hash_key, new_key};
use drift_core::domain::{Caller, Scopes};
use drift_db::{Db, KeyRecord};

/// Creates an API key in `db` and returns it (the only time it is seen).
pub async fn create_key(
    db: &Db,
    tenant: &str,
    client: &str,
    user: Option<&str>,
    scopes: &str,
    description: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let scopes = Scopes::parse(scopes)?;
    let caller = Caller::new(tenant, client, user, scopes)?;
    let new = new_key();
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
        && db.key_by_hash(&hash_key(k)).await?.is_some()
    {
        return Ok((k.to_string(), None));
    }
    let (id, key) = create_key(&db, tenant, "web-demo", None, "admin", Some(description)).await?;
    Ok((key, Some(id)))
}
