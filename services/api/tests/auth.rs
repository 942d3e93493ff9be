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
    forged_and_expired_tokens_are_refused,
    disabled_deleted_and_reset_accounts_lose_their_tokens_at_once_here_and_within_seconds_elsewhere,
    an_account_owner_changes_their_password_and_their_old_tokens_stop_working
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

/// The claims of the one account of the test's tenant (a token must name an existing account).
fn claims(tenant: uuid::Uuid, exp_from_now: i64) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: ACCOUNT.with(|a| a.get()),
        tenant: Some(tenant),
        role: "caseworker".into(),
        exp: now + exp_from_now,
        iat: now,
        tv: 0,
        sid: None,
    }
}

thread_local! {
    static ACCOUNT: std::cell::Cell<uuid::Uuid> = const { std::cell::Cell::new(uuid::Uuid::nil()) };
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn forged_and_expired_tokens_are_refused(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let (account, _) = app.user(Some(tenant), Role::Caseworker).await;
    ACCOUNT.with(|a| a.set(account));
    let tenant = tenant.0;
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

/// A staff account with a real password in the tenant, and its login token.
async fn staff_with_password(app: &App, tenant: trygg_core::TenantId, email: &str) -> (uuid::Uuid, String) {
    let password_hash = hash_password("a long password".into()).await.unwrap();
    let user = NewUser {
        tenant: Some(tenant),
        email: email.into(),
        name: "S".into(),
        role: Role::Staff,
        password_hash,
    };
    let id = app.state.store.add_user(&user).await.unwrap();
    (id, login(app, email, "a long password").await.expect("login"))
}

async fn login(app: &App, email: &str, password: &str) -> Result<String, (u16, serde_json::Value)> {
    let body = json!({ "email": email, "password": password });
    let (status, body) = app.call("POST", "/api/v1/auth/login", None, Some(&body)).await;
    if status == 200 { Ok(body["token"].as_str().unwrap().to_owned()) } else { Err((status.as_u16(), body)) }
}

async fn disabled_deleted_and_reset_accounts_lose_their_tokens_at_once_here_and_within_seconds_elsewhere(
    store: Arc<dyn Store>,
) {
    let app = App::new(store.clone());
    // Another node: the same database, its own account cache.
    let other_node = App::new(store.clone());
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let (_, admin) = app.user(Some(tenant), Role::TenantAdmin).await;
    let (sven, token) = staff_with_password(&app, tenant, "sven@lerum.se").await;
    let works =
        async |app: &App, token: &str| app.call("GET", "/api/v1/alarms", Some(token), None).await.0.as_u16();
    assert_eq!(works(&app, &token).await, 200);
    assert_eq!(works(&other_node, &token).await, 200, "the other node has read the account");

    let (status, body) = app.call("POST", &format!("/api/v1/users/{sven}/disable"), Some(&admin), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.call("GET", "/api/v1/alarms", Some(&token), None).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (401, Some("account disabled")),
        "at once on this node"
    );
    assert_eq!(login(&app, "sven@lerum.se", "a long password").await.unwrap_err().0, 401);
    tokio::time::sleep(trygg_api::auth::ACCOUNT_CHECK_TTL + Duration::from_millis(100)).await;
    assert_eq!(works(&other_node, &token).await, 401, "within the check interval on the other node");
    let (_, users) = app.call("GET", "/api/v1/users", Some(&admin), None).await;
    let listed = users.as_array().unwrap().iter().find(|u| u["id"] == json!(sven)).unwrap().clone();
    assert_eq!(listed["active"], false, "{listed}");

    assert_eq!(app.call("POST", &format!("/api/v1/users/{sven}/enable"), Some(&admin), None).await.0, 204);
    assert_eq!(works(&app, &token).await, 401, "enabling does not bring old tokens back");
    let token = login(&app, "sven@lerum.se", "a long password").await.unwrap();
    assert_eq!(works(&app, &token).await, 200);

    let reset = json!({ "new_password": "a new long password" });
    let path = format!("/api/v1/users/{sven}/password");
    assert_eq!(app.call("POST", &path, Some(&admin), Some(&reset)).await.0, 204);
    assert_eq!(works(&app, &token).await, 401, "a reset revokes the tokens");
    assert_eq!(login(&app, "sven@lerum.se", "a long password").await.unwrap_err().0, 401);
    let token = login(&app, "sven@lerum.se", "a new long password").await.unwrap();
    assert_eq!(works(&app, &token).await, 200);

    // Another tenant's admin cannot touch the account; nobody disables themselves.
    let other = store.create_tenant("Alingsås").await.unwrap();
    let (_, stranger) = app.user(Some(other), Role::TenantAdmin).await;
    assert_eq!(
        app.call("POST", &format!("/api/v1/users/{sven}/disable"), Some(&stranger), None).await.0,
        404
    );
    let (own, own_token) = app.user(Some(tenant), Role::TenantAdmin).await;
    assert_eq!(app.call("DELETE", &format!("/api/v1/users/{own}"), Some(&own_token), None).await.0, 409);

    assert_eq!(app.call("DELETE", &format!("/api/v1/users/{sven}"), Some(&admin), None).await.0, 204);
    assert_eq!(works(&app, &token).await, 401);
    let (_, users) = app.call("GET", "/api/v1/users", Some(&admin), None).await;
    assert!(
        users.as_array().unwrap().iter().all(|u| u["id"] != json!(sven)),
        "deleted accounts are not listed"
    );
    let again = json!({ "email": "sven@lerum.se", "name": "Sven", "role": "staff", "password": "yet another password" });
    assert_eq!(
        app.call("POST", "/api/v1/users", Some(&admin), Some(&again)).await.0,
        201,
        "the email is free again"
    );
}

async fn an_account_owner_changes_their_password_and_their_old_tokens_stop_working(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let (_, token) = staff_with_password(&app, tenant, "maja@lerum.se").await;
    let change =
        |current: &str| json!({ "current_password": current, "new_password": "my new long password" });
    let (status, _) =
        app.call("POST", "/api/v1/auth/password", Some(&token), Some(&change("wrong one"))).await;
    assert_eq!(status, 403, "the current password must be right");
    let short = json!({ "current_password": "a long password", "new_password": "short" });
    assert_eq!(app.call("POST", "/api/v1/auth/password", Some(&token), Some(&short)).await.0, 422);
    let (status, body) =
        app.call("POST", "/api/v1/auth/password", Some(&token), Some(&change("a long password"))).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.call("GET", "/api/v1/alarms", Some(&token), None).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("token revoked; log in again")));
    assert!(login(&app, "maja@lerum.se", "a long password").await.is_err());
    let token = login(&app, "maja@lerum.se", "my new long password").await.unwrap();
    assert_eq!(app.call("GET", "/api/v1/alarms", Some(&token), None).await.0, 200);
}
