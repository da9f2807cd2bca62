//! `drift keys create|list|revoke`: API keys, on the key store (the gateways' database)
//! directly.

use anyhow::Context;
use clap::{Args, Subcommand};
use drift_bus::{Layout, Notice, RedisTarget, Store};
use drift_db::Db;
use drift_service::keys::create_key;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct KeysArgs {
    /// The key store (the gateways' database). Default: the SQLite file `drift dev` uses.
    #[arg(long, env = "DRIFT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Local data folder (where the default SQLite key store lives).
    #[arg(long, env = "DRIFT_DATA_DIR", default_value = ".drift")]
    pub data_dir: PathBuf,
    /// The gateways' Redis, on which `revoke` tells every gateway to forget its cached keys
    /// at once (without it they notice within --revocation-check-ms). Default: `drift dev`'s,
    /// from the data folder.
    #[arg(long, env = "DRIFT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// The gateways' Redis Cluster instead (host:port,…).
    #[arg(long, env = "DRIFT_REDIS_CLUSTER", value_delimiter = ',', hide_env_values = true)]
    pub redis_cluster: Vec<String>,
    /// The gateways' Redis key prefix. Default: `drift dev`'s, else "drift".
    #[arg(long, env = "DRIFT_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    #[command(subcommand)]
    pub action: KeysCmd,
}

#[derive(Subcommand, Debug, Clone)]
pub enum KeysCmd {
    /// Creates a key and prints it once; only its hash is stored.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client: String,
        /// The acting user recorded for calls with this key.
        #[arg(long)]
        user: Option<String>,
        /// Space- or comma-separated: workflows:start workflows:drive workflows:read
        /// definitions:write admin.
        #[arg(long, default_value = "workflows:start,workflows:drive,workflows:read")]
        scopes: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists keys (ids, tenants, scopes; never the keys).
    List,
    /// Revokes a key by id; calls with it are refused from then on.
    Revoke { id: String },
}

impl KeysArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| drift_server::config::default_database_url(&self.data_dir))
    }
}

pub async fn run(a: KeysArgs) -> anyhow::Result<()> {
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
    let dev = drift_server::client::dev_endpoints(&a.data_dir);
    let flags = RedisTarget::from_flags(a.redis_url.as_deref(), &a.redis_cluster).map_err(|e| anyhow::anyhow!(e))?;
    let Some(target) = flags.or_else(|| drift_server::client::dev_redis(&dev)) else {
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
