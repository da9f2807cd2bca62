//! The definitions every start is served from: the published versions and ACTIVE pointers in
//! the database, held in memory as one immutable `Registry` that is swapped whole when they
//! change. A gateway that publishes or activates reloads at once and tells the others over the
//! Redis hub; a periodic revision check covers a missed notice.

use crate::States;
use drift_bus::{Hub, Notice, Watch, Woke};
use drift_core::dsl::{Definition, NodeResource, Registry};
use drift_db::{Db, DbError, Kind, Stored};
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Catalog {
    db: Db,
    current: RwLock<Arc<Registry>>,
    /// The database revision `current` was loaded at (-1: never loaded).
    loaded: AtomicI64,
    reloading: tokio::sync::Mutex<()>,
    /// Deployment `enumStore` values (`--enum`), applied to what is loaded, never stored.
    overrides: Vec<(String, Value)>,
    /// The hub channel that says "definitions changed".
    channel: String,
}

/// What a folder import did, for the log.
#[derive(Debug, Default)]
pub struct Imported {
    pub published: Vec<String>,
    pub unchanged: usize,
}

impl Catalog {
    /// `channel`: where gateways announce changes to each other.
    pub async fn open(db: Db, overrides: Vec<(String, Value)>, channel: String) -> Result<Arc<Self>, DbError> {
        let c = Arc::new(Self {
            db,
            current: RwLock::new(Arc::new(Registry::default())),
            loaded: AtomicI64::new(-1),
            reloading: tokio::sync::Mutex::new(()),
            overrides,
            channel,
        });
        c.refresh().await?;
        Ok(c)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The definitions as of the last load: cheap, and unchanged for whoever holds it.
    pub fn registry(&self) -> Arc<Registry> {
        self.current.read().expect("catalog lock").clone()
    }

    /// Reloads if the database changed since the last load; true if it did.
    pub async fn refresh(&self) -> Result<bool, DbError> {
        let _one_at_a_time = self.reloading.lock().await;
        let revision = self.db.revision().await?;
        if revision == self.loaded.load(Ordering::Acquire) {
            return Ok(false);
        }
        let (published, active) = self.db.published().await?;
        let mut reg = Registry::default();
        for p in published {
            match p.kind {
                Kind::Workflow => match serde_json::from_str::<Definition>(&p.body) {
                    Ok(d) => reg.insert_workflow(p.version, d),
                    Err(e) => {
                        tracing::error!(id = %p.id, version = p.version, error = %e, "stored workflow definition does not parse; skipped")
                    }
                },
                Kind::Node => match serde_json::from_str::<NodeResource>(&p.body) {
                    Ok(n) => reg.insert_node(p.version, n),
                    Err(e) => {
                        tracing::error!(id = %p.id, version = p.version, error = %e, "stored node definition does not parse; skipped")
                    }
                },
            }
        }
        for (kind, id, v) in active {
            match kind {
                Kind::Workflow => reg.activate_workflow(&id, v),
                Kind::Node => reg.activate_node(&id, v),
            }
        }
        for (k, v) in &self.overrides {
            reg.override_enum(k, v.clone());
        }
        *self.current.write().expect("catalog lock") = Arc::new(reg);
        self.loaded.store(revision, Ordering::Release);
        tracing::debug!(revision, "definitions reloaded");
        Ok(true)
    }

    /// After a publish or activate here: reload now, then tell every other gateway.
    pub async fn changed(&self, store: &dyn States) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "reloading definitions after a change failed; the periodic check will retry");
        }
        if let Err(e) = store.notify(&self.channel, Notice::DefinitionsChanged).await {
            tracing::warn!(error = %e, "could not announce a definitions change; other gateways pick it up at their next check");
        }
    }

    /// Keeps this gateway's definitions current until `shutdown`: on every notice over the hub
    /// and every `poll` (in case a notice was missed while Redis was away).
    /// Subscribes before it returns, so a change announced once the gateway serves is heard.
    pub async fn spawn_watcher(self: &Arc<Self>, hub: Hub, poll: Duration, shutdown: CancellationToken) {
        let me = self.clone();
        let mut watch = Watch::new(hub, me.channel.clone(), poll).await;
        tokio::spawn(async move {
            while let Some(woke) = watch.next(&shutdown).await {
                // Another source's notice on this channel says nothing about definitions.
                if matches!(woke, Woke::Notice(n) if n != Notice::DefinitionsChanged) {
                    continue;
                }
                if let Err(e) = me.refresh().await {
                    tracing::warn!(error = %e, "checking for definition changes failed; retrying at the next check");
                }
            }
        });
    }

    /// Brings a folder's definitions (`Registry::raw_files`, already validated) into the
    /// store: each one that differs from its LATEST version is published as the next version
    /// and activated; an identical one is left as it is (so a rollback made through the API
    /// survives a restart). Bodies are stored as written.
    pub async fn import(&self, files: Vec<(bool, Value)>, by: &str) -> Result<Imported, DbError> {
        let mut out = Imported::default();
        for (is_node, body) in files {
            let kind = if is_node { Kind::Node } else { Kind::Workflow };
            let id = body.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            self.import_one(kind, &id, body, by, &mut out).await?;
        }
        self.refresh().await?;
        Ok(out)
    }

    async fn import_one(&self, kind: Kind, id: &str, body: Value, by: &str, out: &mut Imported) -> Result<(), DbError> {
        // Several gateways may import the same folder at once; the loser of a race re-reads.
        for _ in 0..5 {
            let versions = self.db.versions(kind, id).await?;
            let latest = match versions.last() {
                Some(v) => self.db.version(kind, id, v.version).await?.map(|s| (v.version, s.body)),
                None => None,
            };
            if let Some((v, stored)) = &latest
                && same_definition(kind, stored, &body)
            {
                if self.db.active(kind, id).await?.is_none() {
                    self.db.activate(kind, id, *v, by, &now()).await?;
                }
                out.unchanged += 1;
                return Ok(());
            }
            let mut snap = body.clone();
            snap["version"] = Value::String("SNAPSHOT".into());
            let stored = Stored {
                body: snap.to_string(),
                by: by.to_string(),
                at: now(),
            };
            self.db.put_snapshot(kind, id, &stored, false).await?;
            let mut published = body.clone();
            let next = versions.last().map_or(1, |v| v.version + 1);
            published["version"] = Value::String(next.to_string());
            let stored = Stored {
                body: published.to_string(),
                ..stored
            };
            match self.db.publish(kind, id, next, &stored).await {
                Ok(()) => {
                    let v = next;
                    self.db.activate(kind, id, v, by, &now()).await?;
                    out.published.push(format!("{} {id} v{v}", kind.as_str()));
                    return Ok(());
                }
                Err(DbError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbError::Conflict)
    }
}

/// Whether two bodies define the same thing, whatever their version fields say.
pub fn same_definition(kind: Kind, a: &str, b: &Value) -> bool {
    let Ok(mut a) = serde_json::from_str::<Value>(a) else {
        return false;
    };
    let mut b = b.clone();
    a["version"] = Value::Null;
    b["version"] = Value::Null;
    match kind {
        Kind::Workflow => {
            let pa = serde_json::from_value::<Definition>(fill_version(a));
            let pb = serde_json::from_value::<Definition>(fill_version(b));
            matches!((pa, pb), (Ok(x), Ok(y)) if x == y)
        }
        Kind::Node => {
            let pa = serde_json::from_value::<NodeResource>(fill_version(a));
            let pb = serde_json::from_value::<NodeResource>(fill_version(b));
            matches!((pa, pb), (Ok(x), Ok(y)) if x == y)
        }
    }
}

fn fill_version(mut v: Value) -> Value {
    v["version"] = Value::String("0".into());
    v
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
