//! The OpenAPI document served at `/api/v1/openapi.json`: what a client generator (and
//! Schemathesis, in `tests/tests/schemathesis.rs`) takes as the contract.
//!
//! Each handler documents its own answers (its success, and the refusals only it knows: a 409,
//! a role's 403). The answers that come from the shared extractors are added here once, from
//! the operation's shape, so no handler can forget one: a token ([`Caller`](crate::auth::Caller))
//! can be missing or revoked (401) and belong to a role the operation refuses (403); a path id
//! can name nothing (404); a JSON body ([`Body`](crate::validate::Body)) can be malformed (400)
//! or have a missing, mistyped or invalid field (422); query parameters
//! ([`Params`](crate::validate::Params)) can fail to parse (400). The device ingest endpoints
//! come from `trygg-ingest` with their own security scheme. Every 4xx and 5xx answer refers to
//! the one `Error` schema, and every operation gets a unique `operationId`.

use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::ApiState;

/// The document's skeleton; paths and schemas are added by [`routes::all`](crate::routes::all).
#[derive(OpenApi)]
#[openapi(
    info(title = "trygg API", description = "Caseworker, staff and admin API of trygg (bearer JWT from /api/v1/auth/login), and the native device ingest endpoints (device token)."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The router the handlers are added to, holding the document's skeleton.
pub(crate) fn skeleton() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// A string schema allowing exactly `values`: the names a handler parses, usually a domain
/// enum's `ALL`, so the document lists what the code accepts.
pub(crate) fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).build()
}

/// Operations behind a token that no role is refused: every account may read its own tenant.
const OPEN_TO_EVERY_ROLE: &[(&str, &str)] = &[("get", "/api/v1/tenants/{id}")];

/// The API's document as the handlers describe it, completed (see the module docs) and joined
/// with the device ingest endpoints.
pub(crate) fn complete(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = doc;
    doc.merge(trygg_ingest::openapi());
    let Ok(mut v) = serde_json::to_value(&doc) else { return doc };
    v["components"]["schemas"]["Error"] = json!({
        "type": "object",
        "description": "Every error answer: what went wrong, and details where they help (the fields of a 422, who has a 409's alarm).",
        "required": ["error", "details"],
        "properties": {
            "error": { "type": "string", "description": "What went wrong, in words." },
            "details": {
                "description": "Structured details, or null.",
                "type": ["object", "array", "string", "number", "boolean", "null"]
            }
        }
    });
    spell_out_uuids(&mut v);
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    if let Some(paths) = v["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, op) in item.iter_mut() {
                if !path.starts_with("/api/v1/ingest/") {
                    add_extractor_answers(path, method, op);
                }
                name_operation(method, path, op);
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                for (status, answer) in responses.iter_mut() {
                    if status.starts_with('4') || status.starts_with('5') {
                        answer["content"] = error.clone();
                        if answer["description"].as_str().is_none_or(str::is_empty) {
                            answer["description"] = json!(generic_description(status));
                        }
                    }
                }
            }
        }
    }
    match serde_json::from_value(v) {
        Ok(doc) => doc,
        Err(error) => {
            tracing::error!(%error, "Completing the OpenAPI document failed");
            doc
        }
    }
}

/// The pattern of a UUID as the API writes it (lowercase or uppercase hex, hyphenated).
const UUID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Gives every `format: uuid` string its pattern too: in OpenAPI 3.1 a format is only an
/// annotation, so without it `""` is a valid UUID to a client's validator, and the server's
/// refusal (422) would contradict the document.
fn spell_out_uuids(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format").and_then(Value::as_str) == Some("uuid") {
                o.entry("pattern").or_insert_with(|| json!(UUID_PATTERN));
            }
            o.values_mut().for_each(spell_out_uuids);
        }
        Value::Array(a) => a.iter_mut().for_each(spell_out_uuids),
        _ => {}
    }
}

/// Adds the answers the shared extractors give to an API operation that does not list them.
fn add_extractor_answers(path: &str, method: &str, op: &mut Value) {
    let secured = op.get("security").is_some();
    let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
    let in_path = parameters.iter().any(|p| p["in"] == "path");
    let in_query = parameters.iter().any(|p| p["in"] == "query");
    let json_body = op["requestBody"]["content"].get("application/json").is_some();
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if json_body {
        answers.push(("400", "the body is not JSON"));
        answers
            .push(("422", "a field is missing, of the wrong type or invalid: `details.fields` names each"));
    } else if in_query {
        answers.push(("400", "a query parameter does not parse"));
    }
    if in_path {
        answers.push(("404", "nothing with this id in your tenant"));
    }
    if secured {
        answers.push(("401", "no token, or a token that is invalid, expired or revoked"));
        if !OPEN_TO_EVERY_ROLE.contains(&(method, path)) {
            answers.push(("403", "your role may not do this"));
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    for (status, description) in answers {
        let answer = responses.entry(status).or_insert_with(|| json!({}));
        if answer["description"].as_str().is_none_or(str::is_empty) {
            answer["description"] = json!(description);
        }
    }
}

/// The description of an error answer whose handler gives none.
fn generic_description(status: &str) -> &'static str {
    match status {
        "400" => "malformed request",
        "401" => "not authenticated",
        "403" => "your role may not do this",
        "404" => "not found in your tenant",
        "409" => "conflicts with the current state",
        "422" => "invalid fields: `details.fields` names each",
        "429" => "too many attempts; see `Retry-After`",
        "503" => "unavailable now; see `Retry-After`",
        _ => "error",
    }
}

/// Gives the operation a unique `operationId` (utoipa takes the handler's name, and many
/// modules have a `list`): the method and the path, e.g. `post_wearers_id_consents`.
fn name_operation(method: &str, path: &str, op: &mut Value) {
    let words: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    op["operationId"] = json!(format!("{method}_{}", words.join("_")));
}
