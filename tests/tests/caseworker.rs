//! The caseworker's flow through the real binary, on SQLite and PostgreSQL: the bootstrap admin
//! creates accounts, a caseworker sets up a wearer end to end, and the token rules hold.

mod common;

use common::{ADMIN, Client, Trygg};
use serde_json::json;
use trygg_store::testing::TestDb;

async fn a_caseworker_sets_up_a_wearer_through_the_api(db: TestDb) {
    use reqwest::Method;
    let c = Client {
        http: reqwest::Client::new(),
        server: Trygg::start(db.url(), &["--bootstrap-admin", ADMIN]),
    };
    let (status, _) = c.call(Method::GET, "wearers", None, None).await;
    assert_eq!(status, 401, "no token, no data");

    let admin = c.login("admin@kommun.test", "correct horse battery").await;
    let tenant =
        c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Skövde kommun" }))).await["id"].clone();
    let user = |email: &str, role: &str| json!({ "email": email, "name": email, "role": role, "password": "a long password", "tenant": tenant });
    c.ok(Method::POST, "users", &admin, Some(user("hanna@skovde.test", "caseworker"))).await;
    let staff =
        c.ok(Method::POST, "users", &admin, Some(user("sven@skovde.test", "staff"))).await["id"].clone();
    c.ok(Method::POST, "users", &admin, Some(user("tina@skovde.test", "tenant_admin"))).await;
    let cw = c.login("hanna@skovde.test", "a long password").await;
    let tenant_admin = c.login("tina@skovde.test", "a long password").await;

    let wearer =
        c.ok(Method::POST, "wearers", &cw, Some(json!({ "name": "Dagny", "note": "Portkod 4711" }))).await;
    let id = wearer["id"].as_str().unwrap().to_owned();
    assert_eq!(wearer["zones_alarming"], false);
    let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": "Dnr 2026/1" });
    c.ok(Method::POST, &format!("wearers/{id}/consents"), &cw, Some(consent)).await;
    // A watch's id is its only credential: tenant admins register watches, caseworkers bind them.
    let (status, _) = c
        .call(
            Method::POST,
            "devices",
            Some(&cw),
            Some(json!({ "id": "359881234567890", "protocol": "watch" })),
        )
        .await;
    assert_eq!(status, 403, "a caseworker does not register a watch");
    let watch = c
        .ok(
            Method::POST,
            "devices",
            &tenant_admin,
            Some(json!({ "id": "359881234567890", "protocol": "watch" })),
        )
        .await;
    assert!(watch.get("token").is_none(), "a watch has no token");
    let native =
        c.ok(Method::POST, "devices", &cw, Some(json!({ "id": "phone-1", "protocol": "native" }))).await;
    assert_eq!(native["token"].as_str().unwrap().len(), 64, "a native device gets its token once");
    c.ok(Method::POST, "devices/359881234567890/bind", &cw, Some(json!({ "wearer": id }))).await;
    let zone = json!({
        "name": "Natt", "kind": "stay_inside", "radius_m": 100,
        "geometry": { "type": "Point", "coordinates": [13.8462, 58.3903] },
        "schedule": { "windows": [{ "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "22:00", "to": "07:00" }] },
    });
    let zone = c.ok(Method::POST, &format!("wearers/{id}/zones"), &cw, Some(zone)).await;
    assert_eq!(zone["type"], "Feature");
    assert_eq!(zone["properties"]["alarming"], true);
    assert_eq!(zone["properties"]["schedule"]["tz"], "Europe/Stockholm", "the tenant's time zone by default");
    let team = c.ok(Method::POST, "teams", &cw, Some(json!({ "name": "Nattpatrullen" }))).await["id"].clone();
    c.ok(
        Method::PUT,
        &format!("teams/{}/members", team.as_str().unwrap()),
        &cw,
        Some(json!({ "members": [staff] })),
    )
    .await;
    c.ok(Method::PUT, &format!("wearers/{id}"), &cw, Some(json!({ "name": "Dagny", "team": team }))).await;
    let order = json!({ "steps": [{ "user": staff, "escalate_after_secs": 120 }, { "team": team, "escalate_after_secs": 300 }] });
    c.ok(Method::PUT, &format!("wearers/{id}/responders"), &cw, Some(order.clone())).await;

    let wearer = c.ok(Method::GET, &format!("wearers/{id}"), &cw, None).await;
    assert_eq!((wearer["zones_alarming"].clone(), wearer["team"].clone()), (json!(true), team));
    let responders = c.ok(Method::GET, &format!("wearers/{id}/responders"), &cw, None).await;
    assert_eq!(responders["steps"], order["steps"]);
    let zones = c.ok(Method::GET, &format!("wearers/{id}/zones"), &cw, None).await;
    assert_eq!(zones["features"].as_array().unwrap().len(), 1);

    // Another tenant's caseworker sees none of it.
    let other =
        c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Lerums kommun" }))).await["id"].clone();
    let mut lerum = user("lisa@lerum.test", "caseworker");
    lerum["tenant"] = other.clone();
    c.ok(Method::POST, "users", &admin, Some(lerum)).await;
    let lisa = c.login("lisa@lerum.test", "a long password").await;
    let mut lerum_admin = user("lars@lerum.test", "tenant_admin");
    lerum_admin["tenant"] = other;
    c.ok(Method::POST, "users", &admin, Some(lerum_admin)).await;
    let lars = c.login("lars@lerum.test", "a long password").await;
    assert_eq!(c.call(Method::GET, &format!("wearers/{id}"), Some(&lisa), None).await.0, 404);
    let (status, _) = c
        .call(
            Method::POST,
            "devices",
            Some(&lars),
            Some(json!({ "id": "359881234567890", "protocol": "watch" })),
        )
        .await;
    assert_eq!(status, 409, "a device id is bound in one tenant only");
    let (status, taken_here) = c
        .call(
            Method::POST,
            "devices",
            Some(&tenant_admin),
            Some(json!({ "id": "phone-1", "protocol": "native" })),
        )
        .await;
    let (_, taken_elsewhere) = c
        .call(Method::POST, "devices", Some(&lars), Some(json!({ "id": "phone-1", "protocol": "native" })))
        .await;
    assert_eq!(status, 409);
    assert_eq!(taken_here, taken_elsewhere, "the answer does not say which tenant holds the id");

    let (status, doc) = c.call(Method::GET, "openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/wearers/{id}/zones"].is_object());
    assert_eq!(c.server.terminate().code(), Some(0));
}

#[tokio::test]
async fn sqlite_a_caseworker_sets_up_a_wearer_through_the_api() {
    a_caseworker_sets_up_a_wearer_through_the_api(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_a_caseworker_sets_up_a_wearer_through_the_api() {
    a_caseworker_sets_up_a_wearer_through_the_api(TestDb::postgres().await).await;
}

#[test]
fn serve_without_a_signing_key_or_with_a_weak_one_exits_64() {
    for (args, env) in [
        (&["serve"][..], None),
        (&["serve"], Some("short")),
        (&["serve", "--bootstrap-admin", "admin@x.test:short"], Some(common::JWT_SECRET)),
        (&["serve", "--bootstrap-admin", "no-colon"], Some(common::JWT_SECRET)),
    ] {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.args(args).env_remove("TRYGG_JWT_SECRET").env("TRYGG_LOG", "warn");
        if let Some(secret) = env {
            cmd.env("TRYGG_JWT_SECRET", secret);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("x.test:short"), "secrets are not echoed: {stderr}");
    }
}
