//! `/v3/definitions` and `/v3/nodes`: definitions as a product (SNAPSHOT, publish, activate,
//! versions, graph). The same routes serve both kinds; the service validates and authorises.

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::domain::Caller;
use crate::service::{Kind, is_definition_id};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    version: Option<String>,
    /// `svg` or `json` for the graph (default: by `Accept`, else JSON).
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    version: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    #[serde(default)]
    workflows: Vec<Value>,
    #[serde(default)]
    nodes: Vec<Value>,
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
pub fn routes(base: &str, kind: Kind) -> Router<AppState> {
    let mut r = Router::new()
        .route(base, get(list).post(create))
        .route(&format!("{base}/{{id}}"), get(read).put(save).delete(delete_snapshot))
        .route(&format!("{base}/{{id}}/publish"), post(publish))
        .route(&format!("{base}/{{id}}/activate"), post(activate))
        .route(&format!("{base}/{{id}}/versions"), get(versions));
    if kind == Kind::Workflow {
        r = r
            .route(&format!("{base}/{{id}}/graph"), get(graph))
            .route(&format!("{base}/validate"), post(validate));
    }
    r.layer(Extension(kind))
}

/// `GET {base}`: the kind's definitions, with their ACTIVE and LATEST versions.
async fn list(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.list_definitions(&c, kind).await?))
}

/// `POST {base}`: a new definition's SNAPSHOT.
async fn create(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let saved = s.service.save_definition(&c, kind, None, body).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

/// `GET {base}/{id}?version=`: one version (ACTIVE by default, LATEST, SNAPSHOT or a number).
async fn read(
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

/// `PUT {base}/{id}`: saves the SNAPSHOT.
async fn save(
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

/// `DELETE {base}/{id}`: the SNAPSHOT only; published versions are immutable.
async fn delete_snapshot(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if q.version.as_deref().is_some_and(|v| v != "SNAPSHOT") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "published versions are immutable and cannot be deleted; only the SNAPSHOT can",
        ));
    }
    s.service.delete_snapshot(&c, kind, checked(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST {base}/{id}/publish`: the SNAPSHOT becomes the next version (unless unchanged).
async fn publish(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.publish_definition(&c, kind, checked(&id)?).await?))
}

/// `POST {base}/{id}/activate`: new starts use this version.
async fn activate(
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

/// `GET {base}/{id}/versions`: who published each version, when, and which is ACTIVE.
async fn versions(
    State(s): State<AppState>,
    Extension(kind): Extension<Kind>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.definition_versions(&c, kind, checked(&id)?).await?))
}

/// `POST /v3/definitions/validate`: checks workflows (and the nodes they use) without saving.
async fn validate(
    State(s): State<AppState>,
    c: Caller,
    JsonBody(b): JsonBody<ValidateBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.validate_definitions(&c, b.workflows, b.nodes).await?))
}

/// `GET /v3/definitions/{id}/graph?version=&format=svg|json`.
async fn graph(
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
                StatusCode::UNPROCESSABLE_ENTITY,
                "layout_failed",
                "this graph could not be laid out; its JSON form (format=json) still lists nodes and edges",
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "image/svg+xml")], g.svg).into_response());
    }
    Ok(Json(g).into_response())
}
