//! The database adapter: SQLite in the data folder by default, PostgreSQL for several
//! gateways, through sqlx with migrations embedded in the binary. It holds what must outlive
//! any one process and be shared by every gateway: API keys and definitions.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write lost a race with another gateway's (same version number); retry it.
    #[error("a concurrent change got there first")]
    Conflict,
}

mod definitions;

pub use definitions::{Kind, Stored};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "api keys", include_str!("../migrations/0001_api_keys.sql")),
    (2, "definitions", include_str!("../migrations/0002_definitions.sql")),
];

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
}

/// One stored API key (never the key itself).
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub client: String,
    pub user: Option<String>,
    pub scopes: String,
    pub description: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn record(r: &sqlx::any::AnyRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        client: r.try_get("client")?,
        user: r.try_get("user_name")?,
        scopes: r.try_get("scopes")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const COLUMNS: &str = "id, tenant, client, user_name, scopes, description, created_at, revoked_at";

impl Db {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(8)
            // Every request looks its key up here. A SQLite file's connections do not go stale,
            // and pinging one before each query doubled that lookup's cost (two trips to the
            // connection's thread instead of one); a server's connections are still checked.
            .test_before_acquire(!url.starts_with("sqlite:"))
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false))
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn insert_key(&self, k: &KeyRecord, hash: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO api_keys (id, hash, tenant, client, user_name, scopes, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&k.id)
        .bind(hash)
        .bind(&k.tenant)
        .bind(&k.client)
        .bind(&k.user)
        .bind(&k.scopes)
        .bind(&k.description)
        .bind(&k.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (not revoked) key with this hash.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, DbError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// Revokes a key by id; false if there is no such live key.
    pub async fn revoke_key(&self, id: &str, at: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many keys are revoked, and when the latest was: a gateway that caches keys
    /// compares this between checks.
    pub async fn revocations(&self) -> Result<(i64, Option<String>), DbError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n, MAX(revoked_at) AS latest FROM api_keys WHERE revoked_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok((row.try_get("n")?, row.try_get("latest")?))
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
