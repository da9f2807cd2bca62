//! The demo page, compiled into the binary so `drift serve` needs no extra files.

use super::AppState;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../../web-demo/index.html"),
    )
}

/// The page's ES modules, by file name.
const MODULES: &[(&str, &str)] = &[
    ("app.js", include_str!("../../../web-demo/app.js")),
    ("api.js", include_str!("../../../web-demo/api.js")),
    ("screen.js", include_str!("../../../web-demo/screen.js")),
    ("graph.js", include_str!("../../../web-demo/graph.js")),
    ("definitions.js", include_str!("../../../web-demo/definitions.js")),
    ("dom.js", include_str!("../../../web-demo/dom.js")),
    ("tryit.js", include_str!("../../../web-demo/tryit.js")),
    ("samples.js", include_str!("../../../web-demo/samples.js")),
    ("answer.js", include_str!("../../../web-demo/answer.js")),
    ("runs.js", include_str!("../../../web-demo/runs.js")),
    // Built by web-demo/editor (esbuild): the TypeScript client the page calls with, the screen
    // kit's core it renders screens with, and CodeMirror with the JSON Schema support, which the
    // Definitions tab loads when first used.
    (
        "drift-client.js",
        include_str!("../../../web-demo/vendor/drift-client.js"),
    ),
    (
        "drift-screen.js",
        include_str!("../../../web-demo/vendor/drift-screen.js"),
    ),
    ("editor.js", include_str!("../../../web-demo/vendor/editor.js")),
];

pub async fn module(Path(file): Path<String>) -> Response {
    match MODULES.iter().find(|(name, _)| *name == file) {
        Some((_, text)) => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], *text).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../web-demo/style.css"),
    )
}

/// The page's settings: in `drift dev`, the dev API key (printed in its banner anyway); else
/// nothing, and the page asks for a key.
pub async fn config(State(s): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    // Only to a page reached by address or as localhost, never through another name (DNS
    // rebinding would otherwise hand the key to any site).
    let local = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(super::extract::is_local_host);
    let key = s.cfg.demo_key.as_ref().filter(|_| local);
    let cfg = serde_json::json!({"apiKey": key});
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("window.DRIFT_DEMO = {cfg};\n"),
    )
}
