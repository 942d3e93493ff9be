//! The web console's session cookie: set by a cookie login, accepted by every endpoint instead of
//! a bearer token, refused for cross-site or non-JSON requests that change something, and ended
//! server-side by a logout (on every node at once) without touching the account's other tokens;
//! on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::App;
use serde_json::{Value, json};
use tower::ServiceExt;
use trygg_api::auth::{Claims, SESSION_COOKIE, hash_password};
use trygg_store::{NewUser, Role, Store, on_both_backends};

on_both_backends!(
    a_cookie_login_sets_a_host_only_http_only_strict_cookie_that_every_endpoint_accepts,
    cookie_requests_that_change_something_must_be_same_origin_and_json,
    logout_ends_that_session_on_every_node_and_leaves_the_other_tokens_working
);

const PASSWORD: &str = "a long password";
const HOST: &str = "trygg.skovde.se";

/// A caseworker with a real password; returns the email.
async fn caseworker(app: &App) -> String {
    let tenant = app.state.store.create_tenant(&format!("Skövde {}", app.next())).await.unwrap();
    let email = format!("hanna-{}@skovde.se", app.next());
    let user = NewUser {
        tenant: Some(tenant),
        email: email.clone(),
        name: "Hanna".into(),
        role: Role::Caseworker,
        password_hash: hash_password(PASSWORD.into()).await.unwrap(),
    };
    app.state.store.add_user(&user).await.unwrap();
    email
}

struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    body: Value,
}

/// A request as a browser on the console's page sends it: `Host`, `Sec-Fetch-Site:
/// same-origin`, JSON; `headers` override or add (an empty value removes one).
async fn send(app: &App, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let mut all: Vec<(&str, &str)> =
        vec![("host", HOST), ("sec-fetch-site", "same-origin"), ("content-type", "application/json")];
    for (name, value) in headers {
        all.retain(|(n, _)| n != name);
        if !value.is_empty() {
            all.push((name, value));
        }
    }
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in all {
        req = req.header(name, value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    Answer { status, set_cookie, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// Logs in for a cookie; returns the `Cookie` request header value.
async fn cookie_login(app: &App, email: &str) -> String {
    let login = json!({ "email": email, "password": PASSWORD, "cookie": true });
    let answer = send(app, "POST", "/api/v1/auth/login", &[], Some(&login)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let set = answer.set_cookie.expect("a cookie login sets a cookie");
    set.split(';').next().unwrap().to_owned()
}

fn token_of(cookie: &str) -> &str {
    cookie.strip_prefix(&format!("{SESSION_COOKIE}=")).unwrap()
}

async fn a_cookie_login_sets_a_host_only_http_only_strict_cookie_that_every_endpoint_accepts(
    store: Arc<dyn Store>,
) {
    let app = App::new(store);
    let email = caseworker(&app).await;
    let login = json!({ "email": email, "password": PASSWORD, "cookie": true });
    let answer = send(&app, "POST", "/api/v1/auth/login", &[], Some(&login)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.get("token").is_none(), "no token for scripts to read: {}", answer.body);
    assert_eq!(
        (answer.body["token_type"].clone(), answer.body["name"].clone()),
        (json!("Cookie"), json!("Hanna"))
    );
    let set = answer.set_cookie.unwrap();
    let attributes: Vec<&str> = set.split(';').map(str::trim).skip(1).collect();
    assert!(set.starts_with(&format!("{SESSION_COOKIE}=")), "{set}");
    for wanted in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=3600"] {
        assert!(attributes.contains(&wanted), "{wanted} in {set}");
    }
    assert!(!set.to_lowercase().contains("domain="), "a __Host- cookie has no Domain: {set}");

    let cookie = set.split(';').next().unwrap();
    let me = send(&app, "GET", "/api/v1/auth/me", &[("cookie", cookie)], None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!((me.body["name"].clone(), me.body["session"].clone()), (json!("Hanna"), json!(true)));
    let wearer = json!({ "name": "Dagny" });
    let created = send(&app, "POST", "/api/v1/wearers", &[("cookie", cookie)], Some(&wearer)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let listed =
        send(&app, "GET", "/api/v1/wearers", &[("cookie", format!("other=1; {cookie}").as_str())], None)
            .await;
    assert_eq!((listed.status, listed.body[0]["name"].clone()), (StatusCode::OK, json!("Dagny")));

    let bearer = json!({ "email": email, "password": PASSWORD });
    let answer = send(&app, "POST", "/api/v1/auth/login", &[], Some(&bearer)).await;
    assert_eq!((answer.body["token_type"].clone(), answer.set_cookie), (json!("Bearer"), None));
    assert!(answer.body["token"].is_string(), "apps still get their token");
    let no_auth = send(&app, "GET", "/api/v1/auth/me", &[], None).await;
    assert_eq!(no_auth.status, 401);
}

async fn cookie_requests_that_change_something_must_be_same_origin_and_json(store: Arc<dyn Store>) {
    let app = App::new(store);
    let email = caseworker(&app).await;
    let cookie = cookie_login(&app, &email).await;
    let wearer = json!({ "name": "Dagny" });
    let origin = format!("https://{HOST}");
    let refused: [&[(&str, &str)]; 6] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "cross-site"), ("origin", origin.as_str())],
        &[("sec-fetch-site", ""), ("origin", "https://evil.example")],
        &[("sec-fetch-site", "")],
        &[("content-type", "text/plain")],
    ];
    for headers in refused {
        let mut headers = headers.to_vec();
        headers.push(("cookie", cookie.as_str()));
        let answer = send(&app, "POST", "/api/v1/wearers", &headers, Some(&wearer)).await;
        assert_eq!(answer.status, 403, "{headers:?}: {}", answer.body);
    }
    let listed = send(
        &app,
        "GET",
        "/api/v1/wearers",
        &[("cookie", cookie.as_str()), ("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(
        (listed.status, listed.body.as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "nothing was created"
    );

    // A browser without fetch metadata, on this host: Origin suffices.
    let headers = [("cookie", cookie.as_str()), ("sec-fetch-site", ""), ("origin", origin.as_str())];
    assert_eq!(send(&app, "POST", "/api/v1/wearers", &headers, Some(&wearer)).await.status, 201);

    // An app's bearer token is not a browser's ambient credential: no such check.
    let bearer = json!({ "email": email, "password": PASSWORD });
    let token = send(&app, "POST", "/api/v1/auth/login", &[], Some(&bearer)).await.body["token"].clone();
    let auth = format!("Bearer {}", token.as_str().unwrap());
    let headers = [("authorization", auth.as_str()), ("sec-fetch-site", "cross-site")];
    assert_eq!(send(&app, "POST", "/api/v1/wearers", &headers, Some(&wearer)).await.status, 201);

    // Nor can another site log the browser into an account (login CSRF).
    let login = json!({ "email": email, "password": PASSWORD, "cookie": true });
    let answer =
        send(&app, "POST", "/api/v1/auth/login", &[("sec-fetch-site", "cross-site")], Some(&login)).await;
    assert_eq!((answer.status.as_u16(), answer.set_cookie), (403, None));
}

async fn logout_ends_that_session_on_every_node_and_leaves_the_other_tokens_working(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let other_node = App::new(store);
    let email = caseworker(&app).await;
    let (laptop, phone_browser) = (cookie_login(&app, &email).await, cookie_login(&app, &email).await);
    let bearer = json!({ "email": email, "password": PASSWORD });
    let token = send(&app, "POST", "/api/v1/auth/login", &[], Some(&bearer)).await.body["token"].clone();
    let auth = format!("Bearer {}", token.as_str().unwrap());
    for node in [&app, &other_node] {
        assert_eq!(
            send(node, "GET", "/api/v1/wearers", &[("cookie", laptop.as_str())], None).await.status,
            200
        );
    }

    let out =
        send(&app, "POST", "/api/v1/auth/logout", &[("cookie", laptop.as_str())], Some(&json!({}))).await;
    assert_eq!(out.status, 204, "{}", out.body);
    let cleared = out.set_cookie.unwrap();
    assert!(
        cleared.starts_with(&format!("{SESSION_COOKIE}=;")) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    for node in [&app, &other_node] {
        let answer = send(node, "GET", "/api/v1/wearers", &[("cookie", laptop.as_str())], None).await;
        assert_eq!(answer.status, 401, "the ended session is refused on every node at once");
        assert_eq!(answer.body["error"], "session ended; log in again");
        let stolen = format!("Bearer {}", token_of(&laptop));
        let answer = send(node, "GET", "/api/v1/wearers", &[("authorization", stolen.as_str())], None).await;
        assert_eq!(answer.status, 401, "a copy of the cookie's token is refused as a bearer too");
    }
    assert_eq!(
        send(&app, "GET", "/api/v1/wearers", &[("cookie", phone_browser.as_str())], None).await.status,
        200
    );
    assert_eq!(
        send(&app, "GET", "/api/v1/wearers", &[("authorization", auth.as_str())], None).await.status,
        200
    );
    let answer =
        send(&app, "POST", "/api/v1/auth/logout", &[("authorization", auth.as_str())], Some(&json!({})))
            .await;
    assert_eq!(answer.status, 409, "a bearer token has no session to end: {}", answer.body);

    // An expired session cookie: log in again.
    let claims: Claims = {
        let me = send(&app, "GET", "/api/v1/auth/me", &[("cookie", phone_browser.as_str())], None).await.body;
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: me["user"].as_str().unwrap().parse().unwrap(),
            tenant: Some(me["tenant"].as_str().unwrap().parse().unwrap()),
            role: "caseworker".into(),
            exp: now - 60,
            iat: now - 3700,
            tv: 0,
            sid: Some(uuid::Uuid::new_v4()),
        }
    };
    let expired = format!("{SESSION_COOKIE}={}", app.state.tokens.sign(&claims).unwrap());
    let answer = send(&app, "GET", "/api/v1/wearers", &[("cookie", expired.as_str())], None).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body["error"].clone()),
        (401, json!("token expired; log in again"))
    );
}
