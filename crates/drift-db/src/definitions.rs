//! Definition storage: one SNAPSHOT per definition, immutable numbered versions, one ACTIVE
//! pointer, and a revision counter every gateway polls to know when to reload.

use super::{Db, DbError};
use sqlx::Row;

/// Which kind of definition a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Workflow,
    Node,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workflow => "workflow",
            Kind::Node => "node",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "workflow" => Some(Kind::Workflow),
            "node" => Some(Kind::Node),
            _ => None,
        }
    }
}

/// A stored body and who wrote it when.
#[derive(Debug, Clone)]
pub struct Stored {
    pub body: String,
    pub by: String,
    pub at: String,
}

/// One published version (without its body).
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub version: u64,
    pub published_by: String,
    pub published_at: String,
}

/// A published version with its body, as a gateway loads them.
#[derive(Debug, Clone)]
pub struct Published {
    pub kind: Kind,
    pub id: String,
    pub version: u64,
    pub body: String,
}

/// What the list of definitions shows per id.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub latest: Option<u64>,
    pub active: Option<u64>,
    pub snapshot: bool,
}

/// A `(body, by, at)` row.
fn stored(r: &sqlx::any::AnyRow) -> Result<Stored, sqlx::Error> {
    Ok(Stored {
        body: r.try_get(0)?,
        by: r.try_get(1)?,
        at: r.try_get(2)?,
    })
}

fn conflict(e: sqlx::Error) -> DbError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
        _ => DbError::Sqlx(e),
    }
}

async fn bump_revision(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE definition_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Db {
    pub async fn snapshot(&self, kind: Kind, id: &str) -> Result<Option<Stored>, DbError> {
        let row =
            sqlx::query("SELECT body, updated_by, updated_at FROM definition_snapshots WHERE kind = $1 AND id = $2")
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(stored).transpose()?)
    }

    /// Whether anything (a SNAPSHOT or a version) exists under this id.
    pub async fn exists(&self, kind: Kind, id: &str) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM definition_snapshots WHERE kind = $1 AND id = $2) \
             + (SELECT COUNT(*) FROM definition_versions WHERE kind = $1 AND id = $2)",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Creates the SNAPSHOT (`create`: only if nothing exists under the id yet, else
    /// `Conflict`) or replaces it.
    pub async fn put_snapshot(&self, kind: Kind, id: &str, s: &Stored, create: bool) -> Result<(), DbError> {
        if create {
            if self.exists(kind, id).await? {
                return Err(DbError::Conflict);
            }
            sqlx::query(
                "INSERT INTO definition_snapshots (kind, id, body, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(&s.body)
            .bind(&s.by)
            .bind(&s.at)
            .execute(&self.pool)
            .await
            .map_err(conflict)?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO definition_snapshots (kind, id, body, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(&s.body)
        .bind(&s.by)
        .bind(&s.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_snapshot(&self, kind: Kind, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM definition_snapshots WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn versions(&self, kind: Kind, id: &str) -> Result<Vec<VersionRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT version, published_by, published_at FROM definition_versions \
             WHERE kind = $1 AND id = $2 ORDER BY version",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VersionRecord {
                    version: r.try_get::<i64, _>(0)? as u64,
                    published_by: r.try_get(1)?,
                    published_at: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn version(&self, kind: Kind, id: &str, version: u64) -> Result<Option<Stored>, DbError> {
        let row = sqlx::query(
            "SELECT body, published_by, published_at FROM definition_versions \
             WHERE kind = $1 AND id = $2 AND version = $3",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(stored).transpose()?)
    }

    /// Stores `body` as version `version`, which the caller read as the next free number.
    /// Two gateways publishing at once cannot both get it: the loser gets `Conflict` and
    /// re-reads.
    pub async fn publish(&self, kind: Kind, id: &str, version: u64, s: &Stored) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO definition_versions (kind, id, version, body, published_by, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(version as i64)
        .bind(&s.body)
        .bind(&s.by)
        .bind(&s.at)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        bump_revision(&mut tx).await?;
        tx.commit().await.map_err(conflict)?;
        Ok(())
    }

    /// Makes a published version the ACTIVE one; false if there is no such version.
    pub async fn activate(&self, kind: Kind, id: &str, version: u64, by: &str, at: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("SELECT 1 FROM definition_versions WHERE kind = $1 AND id = $2 AND version = $3")
            .bind(kind.as_str())
            .bind(id)
            .bind(version as i64)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO definition_active (kind, id, version, activated_by, activated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, activated_by = excluded.activated_by, \
             activated_at = excluded.activated_at",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(version as i64)
        .bind(by)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await.map_err(conflict)?;
        Ok(true)
    }

    /// The ACTIVE version of a definition, and who activated it when.
    pub async fn active(&self, kind: Kind, id: &str) -> Result<Option<(u64, String, String)>, DbError> {
        let row = sqlx::query(
            "SELECT version, activated_by, activated_at FROM definition_active WHERE kind = $1 AND id = $2",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?, r.try_get(2)?)),
            None => None,
        })
    }

    /// Changes whenever any definition is published or activated.
    pub async fn revision(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT revision FROM definition_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every published version (what a gateway serves starts from), and the ACTIVE pointers.
    pub async fn published(&self) -> Result<(Vec<Published>, Vec<(Kind, String, u64)>), DbError> {
        let rows = sqlx::query("SELECT kind, id, version, body FROM definition_versions ORDER BY kind, id, version")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(kind) = Kind::parse(&r.try_get::<String, _>(0)?) else {
                continue;
            };
            out.push(Published {
                kind,
                id: r.try_get(1)?,
                version: r.try_get::<i64, _>(2)? as u64,
                body: r.try_get(3)?,
            });
        }
        let rows = sqlx::query("SELECT kind, id, version FROM definition_active")
            .fetch_all(&self.pool)
            .await?;
        let mut active = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(kind) = Kind::parse(&r.try_get::<String, _>(0)?) {
                active.push((kind, r.try_get(1)?, r.try_get::<i64, _>(2)? as u64));
            }
        }
        Ok((out, active))
    }

    /// Every id of a kind with its LATEST, ACTIVE and whether it has a SNAPSHOT.
    pub async fn summaries(&self, kind: Kind) -> Result<std::collections::BTreeMap<String, Summary>, DbError> {
        let mut out: std::collections::BTreeMap<String, Summary> = Default::default();
        let k = kind.as_str();
        for r in sqlx::query("SELECT id, MAX(version) FROM definition_versions WHERE kind = $1 GROUP BY id")
            .bind(k)
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.try_get(0)?).or_default().latest = Some(r.try_get::<i64, _>(1)? as u64);
        }
        for r in sqlx::query("SELECT id, version FROM definition_active WHERE kind = $1")
            .bind(k)
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.try_get(0)?).or_default().active = Some(r.try_get::<i64, _>(1)? as u64);
        }
        for r in sqlx::query("SELECT id FROM definition_snapshots WHERE kind = $1")
            .bind(k)
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.try_get(0)?).or_default().snapshot = true;
        }
        Ok(out)
    }
}
