//! Logging in, and the tokens the API refuses: expired, tampered, signed with another key or
//! algorithm, or unsigned (`alg: none`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{App, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use trygg_api::Tokens;
use trygg_api::auth::{Claims, hash_password};
use trygg_store::{NewUser, Role, Store, on_both_backends};

on_both_backends!(
    a_login_returns_a_working_token_and_wrong_credentials_get_401,
    forged_and_expired_tokens_are_refused
);

async fn a_login_returns_a_working_token_and_wrong_credentials_get_401(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let password_hash = hash_password("a long password".into()).await.unwrap();
    let user = NewUser {
        tenant: Some(tenant),
        email: "cw@lerum.se".into(),
        name: "CW".into(),
        role: Role::Caseworker,
        password_hash,
    };
    store.add_user(&user).await.unwrap();

    let login = |email: &str, password: &str| json!({ "email": email, "password": password });
    let (status, body) =
        app.call("POST", "/api/v1/auth/login", None, Some(&login("CW@lerum.se ", "a long password"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["role"].clone(), body["tenant"].clone()), (json!("caseworker"), json!(tenant.0)));
    assert_eq!(body["expires_in"], 3600);
    let token = body["token"].as_str().unwrap();
    assert_eq!(app.call("GET", "/api/v1/wearers", Some(token), None).await.0, 200);

    for (email, password) in [("cw@lerum.se", "wrong password"), ("nobody@lerum.se", "a long password")] {
        let (status, body) =
            app.call("POST", "/api/v1/auth/login", None, Some(&login(email, password))).await;
        assert_eq!(status, 401, "{email}");
        assert_eq!(
            body["error"], "wrong email or password",
            "the same answer whether or not the account exists"
        );
    }
    let (status, body) = app.call("POST", "/api/v1/auth/login", None, Some(&json!({ "email": "x" }))).await;
    assert_eq!((status.as_u16(), body["details"]["fields"]["password"].is_string()), (422, true), "{body}");
}

fn claims(tenant: uuid::Uuid, exp_from_now: i64) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: uuid::Uuid::new_v4(),
        tenant: Some(tenant),
        role: "caseworker".into(),
        exp: now + exp_from_now,
        iat: now,
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn forged_and_expired_tokens_are_refused(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let tenant = store.create_tenant("Lerum").await.unwrap().0;
    let ours = Tokens::new(SECRET, Duration::from_secs(3600)).unwrap();
    let good = ours.sign(&claims(tenant, 600)).unwrap();
    assert_eq!(app.call("GET", "/api/v1/wearers", Some(&good), None).await.0, 200, "the control token works");

    let expired = ours.sign(&claims(tenant, -120)).unwrap();
    let other_key = Tokens::new(b"another-secret-that-is-long-enough-too!!", Duration::from_secs(60))
        .unwrap()
        .sign(&claims(tenant, 600))
        .unwrap();
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(tenant, 600),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let payload = b64(serde_json::to_string(&claims(tenant, 600)).unwrap().as_bytes());
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    // Tampered: the payload of a valid token swapped for one naming the admin role.
    let mut admin = claims(tenant, 600);
    admin.role = "tenant_admin".into();
    let parts: Vec<&str> = good.split('.').collect();
    let tampered =
        format!("{}.{}.{}", parts[0], b64(serde_json::to_string(&admin).unwrap().as_bytes()), parts[2]);
    let cases = [
        ("expired", expired),
        ("tampered", tampered),
        ("signed with another key", other_key),
        ("signed with HS512", hs512),
        ("alg none", none),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let (status, body) = app.call("GET", "/api/v1/wearers", Some(&token), None).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    let (status, body) = app.call("GET", "/api/v1/wearers", None, None).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("missing bearer token")));
    let expired = ours.sign(&claims(tenant, -120)).unwrap();
    let (_, body) = app.call("GET", "/api/v1/wearers", Some(&expired), None).await;
    assert_eq!(body["error"], "token expired; log in again");
}
