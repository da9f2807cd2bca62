//! Definitions as a product: create and edit a SNAPSHOT, publish it as an immutable numbered
//! version, activate one version, read any of them, and draw the graph. Every change is
//! validated here (errors name node and field) and announced to every gateway.

use super::catalog::{Catalog, now, same_definition};
use super::{Service, ServiceError, require};
use drift_core::domain::{Caller, Scope};
use drift_core::dsl::graph::Graph;
use drift_core::dsl::{Definition, NodeResource, Registry, ValidationError, VersionSel, validate, validate_node};
use drift_core::engine::{Budgets, check_in};
use drift_core::simulate::{Limits, Report, Scenario, simulate};
use drift_db::{DbError, Kind, Stored};
use serde::Serialize;
use serde_json::Value;

/// `GET /v3/definitions` (`definitions`) and `GET /v3/nodes` (`nodes`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DefinitionList {
    Workflows { definitions: Vec<DefinitionSummary> },
    Nodes { nodes: Vec<DefinitionSummary> },
}

/// One definition in a list: its published versions and, for a workflow, what its serving
/// version (ACTIVE, else LATEST) says of itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionSummary {
    pub id: String,
    /// The newest published version.
    pub latest: Option<u64>,
    /// The version new starts use.
    pub active: Option<u64>,
    /// Whether a SNAPSHOT (a draft) exists.
    pub snapshot: bool,
    /// Workflows: the serving version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Workflows: the serving version's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Workflows: the serving version's first node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_node: Option<String>,
}

/// `GET /v3/definitions/{id}/versions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DefinitionVersions {
    pub id: String,
    pub versions: Vec<PublishedVersion>,
    pub active: Option<Activation>,
    pub snapshot: Option<SnapshotInfo>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedVersion {
    pub version: u64,
    pub published_by: String,
    pub published_at: String,
    pub active: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub version: u64,
    pub activated_by: String,
    pub activated_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    pub updated_by: String,
    pub updated_at: String,
}

/// `POST …/publish`: the version that serves now, and whether this call made it (false: the
/// SNAPSHOT was the same as the latest version).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Publication {
    pub id: String,
    pub version: u64,
    pub published: bool,
}

/// `POST …/activate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Activated {
    pub id: String,
    pub active: u64,
}

/// `POST /v3/definitions/validate`: one result per definition given, nodes first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub valid: bool,
    pub results: Vec<Checked>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checked {
    /// `node` or `workflow`.
    pub kind: &'static str,
    pub id: String,
    pub errors: Vec<ValidationError>,
}

impl From<DbError> for ServiceError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict => Self::Conflict("a concurrent change got there first; retry".into()),
            DbError::Sqlx(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                Self::Unavailable {
                    dependency: "the database",
                    cause: e.to_string(),
                }
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Which version a read names: a published one (number, LATEST, ACTIVE) or the SNAPSHOT.
enum Which {
    Snapshot,
    Published(VersionSel),
    /// Not named: ACTIVE, else LATEST, else the SNAPSHOT.
    Default,
}

fn which(v: Option<&str>) -> Result<Which, ServiceError> {
    match v.map(str::trim) {
        None | Some("") => Ok(Which::Default),
        Some("SNAPSHOT") => Ok(Which::Snapshot),
        Some(s) => VersionSel::parse(Some(s))
            .map(Which::Published)
            .ok_or_else(|| ServiceError::Invalid(format!("version {s:?}: give a number, LATEST, ACTIVE or SNAPSHOT"))),
    }
}

fn who(caller: &Caller) -> String {
    match &caller.user {
        Some(u) => format!("{}/{}", caller.client, u),
        None => caller.client.clone(),
    }
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Workflow => "workflow definition",
        Kind::Node => "node definition",
    }
}

/// Parses a body as a definition of `kind`; a shape error names the node and field it is in.
fn parse(kind: Kind, body: &Value) -> Result<(), Vec<ValidationError>> {
    fn located<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, Vec<ValidationError>> {
        serde_path_to_error::deserialize(body).map_err(|e| {
            let path = e.path().to_string();
            let mut parts = path.split('.');
            // `states.NAME.rest` is about node NAME.
            let (node, field) = match (parts.next(), parts.next()) {
                (Some("states"), Some(name)) => (Some(name.to_string()), parts.collect::<Vec<_>>().join(".")),
                _ => (None, path.clone()),
            };
            vec![ValidationError {
                node,
                field: if field.is_empty() { ".".into() } else { field },
                message: e.into_inner().to_string(),
            }]
        })
    }
    match kind {
        Kind::Workflow => located::<Definition>(body).map(|_| ()),
        Kind::Node => located::<NodeResource>(body).map(|_| ()),
    }
}

/// Checks a body against the published nodes, and a workflow against the budgets its runs
/// would have (what it shows of its size before it runs).
fn check(kind: Kind, body: &Value, reg: &Registry, budgets: &Budgets) -> Result<(), Vec<ValidationError>> {
    parse(kind, body)?;
    let mut b = body.clone();
    b["version"] = Value::String("1".into());
    let errors = match kind {
        Kind::Workflow => {
            let def = serde_json::from_value::<Definition>(b).expect("parsed above");
            let errors = validate(&def, reg);
            if errors.is_empty() {
                check_in(&def, reg, budgets)
            } else {
                errors
            }
        }
        Kind::Node => validate_node(&serde_json::from_value::<NodeResource>(b).expect("parsed above")),
    };
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

impl Service {
    fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    /// Every definition of a kind: LATEST, ACTIVE, whether a SNAPSHOT exists, and what the
    /// serving version says of itself.
    pub async fn list_definitions(&self, caller: &Caller, kind: Kind) -> Result<DefinitionList, ServiceError> {
        require(caller, Scope::Read)?;
        let summaries = self.catalog().db().summaries(kind).await?;
        let reg = self.catalog().registry();
        let items = summaries
            .into_iter()
            .map(|(id, s)| {
                let serving = match kind {
                    Kind::Workflow => reg.workflow(&id, None).or_else(|| reg.workflow(&id, Some("LATEST"))),
                    Kind::Node => None,
                };
                DefinitionSummary {
                    id,
                    latest: s.latest,
                    active: s.active,
                    snapshot: s.snapshot,
                    version: serving.as_ref().map(|d| d.version.clone()),
                    description: serving.as_ref().and_then(|d| d.description.clone()),
                    start_node: serving.as_ref().map(|d| d.start_node.clone()),
                }
            })
            .collect();
        Ok(match kind {
            Kind::Workflow => DefinitionList::Workflows { definitions: items },
            Kind::Node => DefinitionList::Nodes { nodes: items },
        })
    }

    /// One version's body (`version`: number, LATEST, ACTIVE, SNAPSHOT; absent: ACTIVE, else
    /// LATEST, else the SNAPSHOT).
    pub async fn get_definition(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        version: Option<&str>,
    ) -> Result<Value, ServiceError> {
        require(caller, Scope::Read)?;
        let stored = self.stored(kind, id, which(version)?).await?;
        serde_json::from_str(&stored.body).map_err(|e| ServiceError::Internal(format!("stored {id}: {e}")))
    }

    async fn stored(&self, kind: Kind, id: &str, w: Which) -> Result<Stored, ServiceError> {
        let db = self.catalog().db();
        let missing = |what: &str| ServiceError::NotFound(format!("{} {id:?} has no {what}", noun(kind)));
        let number = match w {
            Which::Snapshot => return db.snapshot(kind, id).await?.ok_or_else(|| missing("SNAPSHOT")),
            Which::Published(VersionSel::Number(n)) => n,
            Which::Published(VersionSel::Active) => {
                db.active(kind, id).await?.ok_or_else(|| missing("ACTIVE version"))?.0
            }
            Which::Published(VersionSel::Latest) => {
                db.versions(kind, id)
                    .await?
                    .last()
                    .ok_or_else(|| missing("published version"))?
                    .version
            }
            Which::Default => match db.active(kind, id).await? {
                Some((n, ..)) => n,
                None => match db.versions(kind, id).await?.last() {
                    Some(v) => v.version,
                    None => {
                        return db
                            .snapshot(kind, id)
                            .await?
                            .ok_or_else(|| ServiceError::NotFound(format!("no {} {id:?}", noun(kind))));
                    }
                },
            },
        };
        db.version(kind, id, number)
            .await?
            .ok_or_else(|| missing(&format!("version {number}")))
    }

    /// Who published what, when, and which version is ACTIVE.
    pub async fn definition_versions(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
    ) -> Result<DefinitionVersions, ServiceError> {
        require(caller, Scope::Read)?;
        let db = self.catalog().db();
        let versions = db.versions(kind, id).await?;
        let snapshot = db.snapshot(kind, id).await?;
        if versions.is_empty() && snapshot.is_none() {
            return Err(ServiceError::NotFound(format!("no {} {id:?}", noun(kind))));
        }
        let active = db.active(kind, id).await?;
        Ok(DefinitionVersions {
            id: id.to_string(),
            versions: versions
                .into_iter()
                .map(|v| PublishedVersion {
                    active: active.as_ref().is_some_and(|a| a.0 == v.version),
                    version: v.version,
                    published_by: v.published_by,
                    published_at: v.published_at,
                })
                .collect(),
            active: active.map(|(version, activated_by, activated_at)| Activation {
                version,
                activated_by,
                activated_at,
            }),
            snapshot: snapshot.map(|s| SnapshotInfo {
                updated_by: s.by,
                updated_at: s.at,
            }),
        })
    }

    /// Creates (`path_id` None) or replaces the SNAPSHOT, after validating it.
    pub async fn save_definition(
        &self,
        caller: &Caller,
        kind: Kind,
        path_id: Option<&str>,
        mut body: Value,
    ) -> Result<Value, ServiceError> {
        require(caller, Scope::DefinitionsWrite)?;
        if !body.is_object() {
            return Err(ServiceError::Invalid(format!("a {} is a JSON object", noun(kind))));
        }
        let id = match (path_id, body.get("id").and_then(Value::as_str)) {
            (Some(p), Some(b)) if p != b => {
                return Err(ServiceError::Invalid(format!(
                    "the body's id {b:?} is not the {p:?} of the path"
                )));
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => {
                return Err(ServiceError::InvalidDefinition(vec![ValidationError {
                    node: None,
                    field: "id".into(),
                    message: "missing".into(),
                }]));
            }
        };
        body["id"] = Value::String(id.clone());
        match body
            .get("version")
            .and_then(|v| v.as_str().map(str::to_string).or_else(|| Some(v.to_string())))
        {
            None => {}
            Some(v) if v == "SNAPSHOT" || v == "null" => {}
            Some(v) => {
                let published = match v.parse::<u64>() {
                    Ok(n) => self.catalog().db().version(kind, &id, n).await?.is_some(),
                    Err(_) => false,
                };
                return Err(if published {
                    ServiceError::Conflict(format!(
                        "version {v} of {id:?} is published and cannot change; leave out \"version\" (or say \
                         \"SNAPSHOT\") to edit the SNAPSHOT, then publish it as a new version"
                    ))
                } else {
                    ServiceError::Invalid(format!(
                        "\"version\": {v:?} — versions are numbered at publish; leave it out or say \"SNAPSHOT\""
                    ))
                });
            }
        }
        body["version"] = Value::String("SNAPSHOT".into());
        // Validate against what is published now.
        self.catalog().refresh().await?;
        check(kind, &body, &self.catalog().registry(), &self.0.cfg.budgets).map_err(ServiceError::InvalidDefinition)?;
        let stored = Stored {
            body: body.to_string(),
            by: who(caller),
            at: now(),
        };
        let db = self.catalog().db();
        match db.put_snapshot(kind, &id, &stored, path_id.is_none()).await {
            Err(DbError::Conflict) => {
                return Err(ServiceError::Conflict(format!(
                    "{} {id:?} already exists; edit its SNAPSHOT with PUT",
                    noun(kind)
                )));
            }
            other => other?,
        }
        Ok(body)
    }

    pub async fn delete_snapshot(&self, caller: &Caller, kind: Kind, id: &str) -> Result<(), ServiceError> {
        require(caller, Scope::DefinitionsWrite)?;
        if self.catalog().db().delete_snapshot(kind, id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "{} {id:?} has no SNAPSHOT (published versions cannot be deleted)",
                noun(kind)
            )))
        }
    }

    /// Freezes the SNAPSHOT as the next version (LATEST). A SNAPSHOT identical to LATEST
    /// publishes nothing and answers LATEST, so a retried or repeated publish is harmless.
    pub async fn publish_definition(&self, caller: &Caller, kind: Kind, id: &str) -> Result<Publication, ServiceError> {
        require(caller, Scope::DefinitionsWrite)?;
        let db = self.catalog().db();
        let snap = db.snapshot(kind, id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "{} {id:?} has no SNAPSHOT to publish; PUT one first",
                noun(kind)
            ))
        })?;
        let body: Value = serde_json::from_str(&snap.body).map_err(|e| ServiceError::Internal(e.to_string()))?;
        // Node references must resolve against what is published now, not when it was saved.
        self.catalog().refresh().await?;
        check(kind, &body, &self.catalog().registry(), &self.0.cfg.budgets).map_err(ServiceError::InvalidDefinition)?;
        if let Some(latest) = db.versions(kind, id).await?.last()
            && let Some(stored) = db.version(kind, id, latest.version).await?
            && same_definition(kind, &stored.body, &body)
        {
            return Ok(Publication {
                id: id.to_string(),
                version: latest.version,
                published: false,
            });
        }
        let mut out = body;
        let version = loop {
            let next = db.versions(kind, id).await?.last().map_or(1, |v| v.version + 1);
            out["version"] = Value::String(next.to_string());
            let stored = Stored {
                body: out.to_string(),
                by: who(caller),
                at: now(),
            };
            match db.publish(kind, id, next, &stored).await {
                Ok(()) => break next,
                // Another gateway took that number first: read again.
                Err(DbError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.catalog().changed(&**self.store()).await;
        tracing::info!(kind = kind.as_str(), id, version, by = %who(caller), "definition published");
        Ok(Publication {
            id: id.to_string(),
            version,
            published: true,
        })
    }

    /// Makes a published version ACTIVE: new starts use it from now on, on every gateway.
    pub async fn activate_definition(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        version: u64,
    ) -> Result<Activated, ServiceError> {
        require(caller, Scope::DefinitionsWrite)?;
        if !self
            .catalog()
            .db()
            .activate(kind, id, version, &who(caller), &now())
            .await?
        {
            return Err(ServiceError::NotFound(format!(
                "{} {id:?} has no published version {version}",
                noun(kind)
            )));
        }
        self.catalog().changed(&**self.store()).await;
        tracing::info!(kind = kind.as_str(), id, version, by = %who(caller), "definition activated");
        Ok(Activated {
            id: id.to_string(),
            active: version,
        })
    }

    /// Checks definitions without storing them: each workflow against the published nodes
    /// plus the nodes given alongside (a folder about to be pushed).
    pub async fn validate_definitions(
        &self,
        caller: &Caller,
        workflows: Vec<Value>,
        nodes: Vec<Value>,
    ) -> Result<Validation, ServiceError> {
        require(caller, Scope::Read)?;
        self.catalog().refresh().await?;
        let mut reg = (*self.catalog().registry()).clone();
        let mut results = Vec::new();
        for n in &nodes {
            let id = n.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let errors = check(Kind::Node, n, &reg, &self.0.cfg.budgets)
                .err()
                .unwrap_or_default();
            if errors.is_empty() {
                let mut b = n.clone();
                b["version"] = Value::String("1".into());
                if let Ok(res) = serde_json::from_value::<NodeResource>(b) {
                    let v = reg
                        .node_versions(&id)
                        .last()
                        .and_then(|r| r.version.parse::<u64>().ok())
                        .unwrap_or(0)
                        + 1;
                    reg.insert_node(v, res);
                    reg.activate_node(&id, v);
                }
            }
            results.push(Checked {
                kind: "node",
                id,
                errors,
            });
        }
        for w in &workflows {
            let id = w.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let errors = check(Kind::Workflow, w, &reg, &self.0.cfg.budgets)
                .err()
                .unwrap_or_default();
            results.push(Checked {
                kind: "workflow",
                id,
                errors,
            });
        }
        let valid = results.iter().all(|r| r.errors.is_empty());
        Ok(Validation { valid, results })
    }

    /// Runs a definition (a stored version, or `unsaved`) on scripted answers and stubbed
    /// responses through the workflow's interpreter, without Temporal, Redis or the network.
    pub async fn simulate_definition(
        &self,
        caller: &Caller,
        id: &str,
        version: Option<&str>,
        unsaved: Option<Value>,
        mut scenario: Scenario,
    ) -> Result<Report, ServiceError> {
        require(caller, Scope::Read)?;
        let reg = self.catalog().registry();
        let def: Definition = match unsaved {
            Some(body) => {
                if version.is_some() {
                    return Err(ServiceError::Invalid(
                        "give a `definition` or a `version` to simulate, not both".into(),
                    ));
                }
                let named = body.get("id").and_then(Value::as_str).unwrap_or_default();
                if named != id {
                    return Err(ServiceError::Invalid(format!(
                        "the definition's id is {named:?}; the path names {id:?}"
                    )));
                }
                check(Kind::Workflow, &body, &reg, &self.0.cfg.budgets).map_err(ServiceError::InvalidDefinition)?;
                let mut b = body;
                b["version"] = Value::String("SNAPSHOT".into());
                serde_json::from_value(b).map_err(|e| ServiceError::Invalid(e.to_string()))?
            }
            None => {
                let stored = self.stored(Kind::Workflow, id, which(version)?).await?;
                serde_json::from_str(&stored.body).map_err(|e| ServiceError::Internal(format!("stored {id}: {e}")))?
            }
        };
        let def = reg.compile(&def).map_err(ServiceError::Invalid)?;
        let children = self.pin_children(&def)?;
        if scenario.thread_context.is_null() {
            scenario.thread_context = caller.thread_context();
        }
        // The interpreter is CPU work, bounded in steps and time: off the async workers.
        let limits = Limits {
            budgets: self.0.cfg.budgets,
            ..Limits::default()
        };
        tokio::task::spawn_blocking(move || simulate(&def, &children, &scenario, limits))
            .await
            .map_err(|e| ServiceError::Internal(format!("simulation: {e}")))
    }

    /// The graph of one version (default ACTIVE; SNAPSHOT too), node references resolved.
    pub async fn definition_graph(
        &self,
        caller: &Caller,
        id: &str,
        version: Option<&str>,
    ) -> Result<Graph, ServiceError> {
        require(caller, Scope::Read)?;
        let stored = self.stored(Kind::Workflow, id, which(version)?).await?;
        let mut def: Definition =
            serde_json::from_str(&stored.body).map_err(|e| ServiceError::Internal(format!("stored {id}: {e}")))?;
        self.catalog().registry().inline_references(&mut def);
        // Layout is CPU work; keep it off the async workers.
        tokio::task::spawn_blocking(move || drift_core::dsl::graph::graph(&def))
            .await
            .map_err(|e| ServiceError::Internal(format!("graph layout: {e}")))
    }
}
