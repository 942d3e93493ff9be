//! The OpenAPI document and the router are built from one handler list; these tests keep the
//! document honest: every documented operation is served, and the committed `openapi.json`
//! matches the code (regenerate with `TRYGG_UPDATE_OPENAPI=1 cargo test -p trygg-api --test openapi`).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::App;
use serde_json::Value;
use tower::ServiceExt;
use trygg_store::testing::TestDb;

#[tokio::test]
async fn every_documented_operation_is_routed_and_asks_for_a_token() {
    let db = TestDb::sqlite();
    let app = App::new(db.store().await);
    let (router, doc) = trygg_api::router_and_doc(app.state.clone());
    let doc = serde_json::to_value(&doc).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The device endpoints are served by trygg-ingest's router, from its own handler list.
        if path.starts_with("/api/v1/ingest/") {
            continue;
        }
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            let uri = path.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace(['{', '}'], "");
            let req = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let status = router.clone().oneshot(req).await.unwrap().status();
            let expected =
                if path == "/api/v1/auth/login" { StatusCode::BAD_REQUEST } else { StatusCode::UNAUTHORIZED };
            assert_eq!(status, expected, "{method} {path}");
            operations += 1;
        }
    }
    assert!(operations >= 30, "{operations} operations documented");
    let (status, served) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!((status, served), (StatusCode::OK, doc), "the served document is the generated one");
}

#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let db = TestDb::sqlite();
    let app = App::new(db.store().await);
    let (_, doc) = trygg_api::router_and_doc(app.state);
    let generated = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("TRYGG_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or_default();
    assert!(
        committed == serde_json::from_str::<Value>(&generated).unwrap(),
        "services/api/openapi.json is out of date; run TRYGG_UPDATE_OPENAPI=1 cargo test -p trygg-api --test openapi"
    );
}

/// What a client generator relies on: query parameters published `in: query`, every operation
/// behind a token documenting its 401, and every error answer pointing at the one error schema.
#[tokio::test]
async fn the_document_publishes_query_parameters_401s_and_the_shared_error_body() {
    let db = TestDb::sqlite();
    let app = App::new(db.store().await);
    let (_, doc) = trygg_api::router_and_doc(app.state);
    let doc = serde_json::to_value(&doc).unwrap();
    let mut wrong = Vec::new();
    assert!(doc["components"]["schemas"]["Error"].is_object(), "a shared Error schema");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                if in_path != (p["in"] == "path") {
                    wrong.push(format!("{method} {path}: parameter {name} is in {}", p["in"]));
                }
            }
            let responses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() && !responses.contains_key("401") {
                wrong.push(format!("{method} {path}: no 401"));
            }
            for (status, r) in responses {
                let schema = &r["content"]["application/json"]["schema"]["$ref"];
                if status.starts_with('4') && schema != "#/components/schemas/Error" {
                    wrong.push(format!("{method} {path}: {status} without the Error schema"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} problems:\n{}", wrong.len(), wrong.join("\n"));
}

/// The answers every client meets, documented on every operation they can come from: a path id
/// that names nothing (404), a body that is not JSON (400) or has a bad field (422), a role
/// that may not (403); one `operationId` per operation; and the device endpoints with the
/// device token as their own security scheme.
#[tokio::test]
async fn the_document_lists_the_shared_answers_and_the_device_endpoints() {
    let db = TestDb::sqlite();
    let app = App::new(db.store().await);
    let (_, doc) = trygg_api::router_and_doc(app.state);
    let doc = serde_json::to_value(&doc).unwrap();
    let mut wrong = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let has = |status: &str| op["responses"].get(status).is_some();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if params.iter().any(|p| p["in"] == "path") && !has("404") {
                wrong.push(format!("{method} {path}: no 404"));
            }
            let json_body = op["requestBody"]["content"].get("application/json").is_some();
            if json_body && !(has("400") && has("422")) && !path.starts_with("/api/v1/ingest/") {
                wrong.push(format!("{method} {path}: no 400 and 422 for its body"));
            }
            if op.get("security").is_some()
                && path != "/api/v1/tenants/{id}"
                && !path.starts_with("/api/v1/ingest/")
                && !has("403")
            {
                wrong.push(format!("{method} {path}: no 403"));
            }
            if !ids.insert(op["operationId"].as_str().unwrap_or_default().to_owned()) {
                wrong.push(format!("{method} {path}: operationId {} is taken", op["operationId"]));
            }
        }
    }
    for path in ["/api/v1/ingest/positions", "/api/v1/ingest/alarms"] {
        let op = &doc["paths"][path]["post"];
        if op["security"] != serde_json::json!([{ "device": [] }]) {
            wrong.push(format!("post {path}: not documented with the device token"));
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["device"]["scheme"], "bearer");
    assert!(wrong.is_empty(), "{} problems:\n{}", wrong.len(), wrong.join("\n"));
}
