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
use axum::{Json, Router};
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

/// The routes for one kind under `base` (`/v3/definitions` or `/v3/nodes`).
pub fn routes(base: &str, kind: Kind) -> Router<AppState> {
    let mut r =
        Router::new()
            .route(
                base,
                get(move |State(s): State<AppState>, c: Caller| async move {
                    Ok::<_, ApiError>(Json(s.service.list_definitions(&c, kind).await?))
                })
                .post(
                    move |State(s): State<AppState>, c: Caller, JsonBody(body): JsonBody<Value>| async move {
                        let saved = s.service.save_definition(&c, kind, None, body).await?;
                        Ok::<_, ApiError>((StatusCode::CREATED, Json(saved)))
                    },
                ),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(
                    move |State(s): State<AppState>,
                          c: Caller,
                          Path(id): Path<String>,
                          Query(q): Query<VersionQuery>| async move {
                        let body = s
                            .service
                            .get_definition(&c, kind, checked(&id)?, q.version.as_deref())
                            .await?;
                        Ok::<_, ApiError>(Json(body))
                    },
                )
                .put(
                    move |State(s): State<AppState>,
                          c: Caller,
                          Path(id): Path<String>,
                          JsonBody(body): JsonBody<Value>| async move {
                        let saved = s.service.save_definition(&c, kind, Some(checked(&id)?), body).await?;
                        Ok::<_, ApiError>(Json(saved))
                    },
                )
                .delete(
                    move |State(s): State<AppState>,
                          c: Caller,
                          Path(id): Path<String>,
                          Query(q): Query<VersionQuery>| async move {
                        if q.version.as_deref().is_some_and(|v| v != "SNAPSHOT") {
                            return Err(ApiError::new(
                                StatusCode::CONFLICT,
                                "conflict",
                                "published versions are immutable and cannot be deleted; only the SNAPSHOT can",
                            ));
                        }
                        s.service.delete_snapshot(&c, kind, checked(&id)?).await?;
                        Ok(StatusCode::NO_CONTENT)
                    },
                ),
            )
            .route(
                &format!("{base}/{{id}}/publish"),
                post(
                    move |State(s): State<AppState>, c: Caller, Path(id): Path<String>| async move {
                        Ok::<_, ApiError>(Json(s.service.publish_definition(&c, kind, checked(&id)?).await?))
                    },
                ),
            )
            .route(
                &format!("{base}/{{id}}/activate"),
                post(
                    move |State(s): State<AppState>,
                          c: Caller,
                          Path(id): Path<String>,
                          JsonBody(b): JsonBody<ActivateBody>| async move {
                        Ok::<_, ApiError>(Json(
                            s.service
                                .activate_definition(&c, kind, checked(&id)?, b.version)
                                .await?,
                        ))
                    },
                ),
            )
            .route(
                &format!("{base}/{{id}}/versions"),
                get(
                    move |State(s): State<AppState>, c: Caller, Path(id): Path<String>| async move {
                        Ok::<_, ApiError>(Json(s.service.definition_versions(&c, kind, checked(&id)?).await?))
                    },
                ),
            );
    if kind == Kind::Workflow {
        r = r.route(&format!("{base}/{{id}}/graph"), get(graph)).route(
            &format!("{base}/validate"),
            post(
                |State(s): State<AppState>, c: Caller, JsonBody(b): JsonBody<ValidateBody>| async move {
                    Ok::<_, ApiError>(Json(s.service.validate_definitions(&c, b.workflows, b.nodes).await?))
                },
            ),
        );
    }
    r
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
