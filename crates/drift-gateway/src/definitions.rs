//! `/v3/definitions` and `/v3/nodes`: definitions as a product (SNAPSHOT, publish, activate,
//! versions, graph). The same routes serve both kinds; the service validates and authorises.

use super::AppState;
use super::error::{ApiError, CommonErrors, ErrorBody, ErrorCode};
use super::extract::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use drift_core::domain::Caller;
use drift_core::dsl::Definition;
use drift_service::{Kind, is_definition_id};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    version: Option<String>,
    /// `svg` or `json` for the graph (default: by `Accept`, else JSON).
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    /// A published version number.
    version: u64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// Workflow definitions to check together.
    #[serde(default)]
    workflows: Vec<Value>,
    /// Node definitions they may use (beside the stored ones).
    #[serde(default)]
    nodes: Vec<Value>,
}

/// What `POST /v3/definitions/{id}/simulate` runs: a stored version (or an unsaved definition)
/// and a scenario.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulateBody {
    /// A version number, `LATEST`, `ACTIVE` or `SNAPSHOT` (default: ACTIVE, else LATEST, else
    /// the SNAPSHOT). Not with `definition`.
    #[serde(default)]
    version: Option<String>,
    /// An unsaved definition to run instead (its `id` is the path's), checked as a save is.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    definition: Option<Value>,
    /// The start's `params`.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Value,
    /// What the credential would put in `threadContext` (default: the caller's).
    #[serde(default)]
    #[schema(value_type = Object)]
    thread_context: Value,
    /// Given in turn to the screens that come up, `{node, viewResponse}` (or `{node, timedOut:
    /// true}`, or `{node, back: true}` to go Back); an answer a screen refuses is followed by the
    /// next one for the same screen.
    #[serde(default)]
    answers: Vec<drift_core::simulate::Answer>,
    /// By HTTP node instance: `{status, body, headers}` (or `{error}`: no answer), or a list of
    /// them used one per call attempt, the last repeating. A CHILD node's instance: its output.
    #[serde(default)]
    #[schema(value_type = Object)]
    responses: std::collections::BTreeMap<String, drift_core::simulate::Stub>,
    /// When the run starts (RFC 3339), for WAIT nodes; default: now.
    #[serde(default)]
    now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Definition ids are short names; anything else is refused before it reaches the database.
fn checked(id: &str) -> Result<&str, ApiError> {
    if id.len() > 128 || !is_definition_id(id) {
        return Err(ApiError::bad_request(
            "a definition id is 1-128 letters, digits, '_' or '-'",
        ));
    }
    Ok(id)
}

/// The routes for one kind under `base` (`/v3/definitions` or `/v3/nodes`); each handler reads
/// the kind from the request's extensions.
pub(super) fn routes(base: &str, kind: Kind) -> super::Mounted {
    use axum::http::Method as M;
    let id = format!("{base}/{{id}}");
    let mut r = super::Mounted::default()
        .on(M::GET, base, list)
        .on(M::POST, base, create)
        .on(M::GET, &id, read)
        .on(M::PUT, &id, save)
        .on(M::DELETE, &id, delete_snapshot)
        .on(M::POST, &format!("{id}/publish"), publish)
        .on(M::POST, &format!("{id}/activate"), activate)
        .on(M::GET, &format!("{id}/versions"), versions);
    if kind == Kind::Workflow {
        r = r
            .on(M::GET, &format!("{id}/graph"), graph)
            .on(M::POST, &format!("{id}/simulate"), simulate)
            .on(M::POST, &format!("{base}/validate"), validate);
    }
    r.layer_extension(kind)
}

/// List definitions with their ACTIVE and LATEST versions
#[utoipa::path(
    get,
    path = "/v3/definitions",
    tag = "definitions",
    operation_id = "listDefinitions",
    responses(
        (status = 200, description = "Every definition (`nodes` for `/v3/nodes`)", body = drift_service::DefinitionList),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn list(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.list_definitions(&c, kind).await?))
}

/// Create a definition (its SNAPSHOT)
#[utoipa::path(
    post,
    path = "/v3/definitions",
    tag = "definitions",
    operation_id = "createDefinition",
    request_body = Definition,
    responses(
        (status = 201, description = "Saved as the SNAPSHOT: the definition as stored", body = Definition),
        (status = 409, description = "`conflict`: a definition with this id exists (edit its SNAPSHOT with PUT), or a concurrent change got there first", body = ErrorBody),
        (status = 422, description = "`invalid_definition`: `details.errors` names each node and field", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["definitions:write"]), ("jwt" = ["definitions:write"]))
)]
pub(super) async fn create(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let saved = s.service.save_definition(&c, kind, None, body).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

/// Read one version of a definition
#[utoipa::path(
    get,
    path = "/v3/definitions/{id}",
    tag = "definitions",
    operation_id = "getDefinition",
    params(("id" = String, Path, description = "The definition id"), ("version" = Option<String>, Query, description = "A version number, `LATEST`, `ACTIVE` or `SNAPSHOT` (default: ACTIVE, else LATEST, else the SNAPSHOT)")),
    responses(
        (status = 200, description = "The definition as written", body = Definition),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn read(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let body = s
        .service
        .get_definition(&c, kind, checked(&id)?, q.version.as_deref())
        .await?;
    Ok(Json(body))
}

/// Save the SNAPSHOT
#[utoipa::path(
    put,
    path = "/v3/definitions/{id}",
    tag = "definitions",
    operation_id = "saveDefinition",
    request_body = Definition,
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "Saved: the definition as stored", body = Definition),
        (status = 409, description = "`conflict`: the body names a published version (published versions never change; leave `version` out to edit the SNAPSHOT), or a concurrent change got there first", body = ErrorBody),
        (status = 422, description = "`invalid_definition`: `details.errors` names each node and field", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["definitions:write"]), ("jwt" = ["definitions:write"]))
)]
pub(super) async fn save(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        s.service.save_definition(&c, kind, Some(checked(&id)?), body).await?,
    ))
}

/// Delete the SNAPSHOT (published versions are immutable)
#[utoipa::path(
    delete,
    path = "/v3/definitions/{id}",
    tag = "definitions",
    operation_id = "deleteSnapshot",
    params(("id" = String, Path, description = "The definition id"), ("version" = Option<String>, Query, description = "A version number, `LATEST`, `ACTIVE` or `SNAPSHOT` (default: ACTIVE, else LATEST, else the SNAPSHOT)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "A published version cannot be deleted", body = ErrorBody),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["definitions:write"]), ("jwt" = ["definitions:write"]))
)]
pub(super) async fn delete_snapshot(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if q.version.as_deref().is_some_and(|v| v != "SNAPSHOT") {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "published versions are immutable and cannot be deleted; only the SNAPSHOT can",
        ));
    }
    s.service.delete_snapshot(&c, kind, checked(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish the SNAPSHOT as the next version (unless unchanged)
#[utoipa::path(
    post,
    path = "/v3/definitions/{id}/publish",
    tag = "definitions",
    operation_id = "publishDefinition",
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "The version that serves now; `published: false` when the SNAPSHOT was the latest version already", body = drift_service::Publication),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        (status = 422, description = "`invalid_definition`: `details.errors` names each node and field", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["definitions:write"]), ("jwt" = ["definitions:write"]))
)]
pub(super) async fn publish(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.publish_definition(&c, kind, checked(&id)?).await?))
}

/// Make a version ACTIVE: new starts use it
#[utoipa::path(
    post,
    path = "/v3/definitions/{id}/activate",
    tag = "definitions",
    operation_id = "activateDefinition",
    request_body = ActivateBody,
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "The version new starts use", body = drift_service::Activated),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["definitions:write"]), ("jwt" = ["definitions:write"]))
)]
pub(super) async fn activate(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ActivateBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        s.service
            .activate_definition(&c, kind, checked(&id)?, b.version)
            .await?,
    ))
}

/// Who published each version, when, and which is ACTIVE
#[utoipa::path(
    get,
    path = "/v3/definitions/{id}/versions",
    tag = "definitions",
    operation_id = "definitionVersions",
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "Who published what, when; which version is ACTIVE; the SNAPSHOT", body = drift_service::DefinitionVersions),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn versions(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.definition_versions(&c, kind, checked(&id)?).await?))
}

/// Check workflows (and the nodes they use) without saving
#[utoipa::path(
    post,
    path = "/v3/definitions/validate",
    tag = "definitions",
    operation_id = "validateDefinitions",
    request_body = ValidateBody,
    responses(
        (status = 200, description = "One result per definition, nodes first; `valid` when none has errors", body = drift_service::Validation),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn validate(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(b): JsonBody<ValidateBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.validate_definitions(&c, b.workflows, b.nodes).await?))
}

/// The definition as a graph: nodes, edges, disconnected nodes (JSON), or drawn (SVG)
#[utoipa::path(
    get,
    path = "/v3/definitions/{id}/graph",
    tag = "definitions",
    operation_id = "definitionGraph",
    params(("id" = String, Path, description = "The definition id"), ("version" = Option<String>, Query, description = "A version number, `LATEST`, `ACTIVE` or `SNAPSHOT` (default: ACTIVE, else LATEST, else the SNAPSHOT)"), ("format" = Option<String>, Query, description = "`svg` or `json` (default: by `Accept`, else JSON)")),
    responses(
        (status = 200, description = "The graph", content((Object = "application/json"), (String = "image/svg+xml"))),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        (status = 422, description = "`layout_failed`: the SVG could not be drawn; the JSON form still lists nodes and edges", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn graph(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wants_svg = match q.format.as_deref() {
        Some("svg") => true,
        Some("json") | None => {
            q.format.is_none()
                && headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("image/svg+xml"))
        }
        Some(other) => return Err(ApiError::bad_request(format!("format {other:?}: use svg or json"))),
    };
    let g = s
        .service
        .definition_graph(&c, checked(&id)?, q.version.as_deref())
        .await?;
    if wants_svg {
        if g.svg.is_empty() {
            return Err(ApiError::new(
                ErrorCode::LayoutFailed,
                "this graph could not be laid out; its JSON form (format=json) still lists nodes and edges",
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "image/svg+xml")], g.svg).into_response());
    }
    Ok(Json(g).into_response())
}

/// Run a definition on scripted answers and stubbed responses, without Temporal
///
/// The workflow's own interpreter runs the flow: every node it passes (`path`), every screen
/// shown, every answer a screen refused (with the 422 a real resume gets), and where the run
/// was left (ended, or waiting on a screen no answer was given for). WAIT nodes elapse at once;
/// nothing is started, stored or sent. Bounded in steps and time: a run that does not end
/// comes back with `stopped`.
#[utoipa::path(
    post,
    path = "/v3/definitions/{id}/simulate",
    tag = "definitions",
    operation_id = "simulateDefinition",
    params(("id" = String, Path, description = "The definition id")),
    request_body = SimulateBody,
    responses(
        (status = 200, description = "What the run did", body = drift_core::simulate::Report),
        (status = 404, description = "No such definition (or version)", body = ErrorBody),
        (status = 422, description = "`invalid_definition`: the unsaved definition does not validate", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub(super) async fn simulate(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SimulateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let scenario = drift_core::simulate::Scenario {
        params: b.params,
        thread_context: b.thread_context,
        answers: b.answers,
        responses: b.responses,
        now: b.now,
    };
    let mut report = s
        .service
        .simulate_definition(&c, checked(&id)?, b.version.as_deref(), b.definition, scenario)
        .await?;
    // Each refused answer (or Back) with the error a real call gets for it.
    for r in &mut report.rejections {
        let e = ApiError::from(r.rejection());
        r.status = Some(e.status().as_u16());
        r.error = Some(serde_json::to_value(e.body()).unwrap_or_default());
    }
    Ok(Json(report))
}
