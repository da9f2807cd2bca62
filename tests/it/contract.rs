//! The API's contract as a client fetches it from a running gateway: the OpenAPI document, the
//! definition language's schema and the reference page, which must work with no network.

use crate::helpers::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_gateway_serves_its_openapi_document_the_definition_schema_and_an_offline_reference_page() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", app.base)).send();

    let doc: Value = get("/v3/openapi.json").await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v3/workflow/start"]["post"]["responses"]["202"].is_object());
    assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());

    let schema: Value = get("/v3/schemas/definition.json").await.unwrap().json().await.unwrap();
    assert_eq!(schema["$ref"], "#/$defs/Definition");
    assert!(schema["$defs"]["HttpNode"].is_object());

    // The page and everything it loads come from the gateway itself.
    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for src in html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
    {
        assert!(!src.contains("://"), "the reference page loads {src} from elsewhere");
        let asset = get(&format!("/docs/{}", src.trim_start_matches("./"))).await.unwrap();
        assert_eq!(asset.status(), 200, "{src}");
    }
    let init = get("/docs/swagger-initializer.js").await.unwrap().text().await.unwrap();
    assert!(init.contains("/v3/openapi.json"), "{init}");
}
