//! The authorization matrix: every role × every endpoint × own tenant / other tenant, asserting
//! the status code, on SQLite and PostgreSQL.
//!
//! Rules under test: a role that may not call an endpoint gets 403 whatever the id; a role that
//! may, asking for another tenant's resource, gets 404 exactly like for a missing one.

mod common;

use std::sync::Arc;

use common::{App, Fixture, square};
use serde_json::{Value, json};
use trygg_store::Role::{self, Admin, Caseworker, Staff, TenantAdmin};
use trygg_store::{Store, on_both_backends};

on_both_backends!(every_role_gets_the_right_status_on_every_endpoint_for_both_tenants);

const EDITORS: &[Role] = &[TenantAdmin, Caseworker];
const READERS: &[Role] = &[TenantAdmin, Caseworker, Staff];
const ALL: &[Role] = &[Admin, TenantAdmin, Caseworker, Staff];

/// One endpoint: `{…}` placeholders are filled from the target tenant's fixture.
struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [Role],
    ok: u16,
    /// The path names a tenant's resource, so calling it with the other tenant's ids is a 404.
    scoped: bool,
}

fn case(
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [Role],
    ok: u16,
    scoped: bool,
) -> Case {
    Case { method, path, body, allowed, ok, scoped }
}

fn cases() -> Vec<Case> {
    let zone = json!({ "name": "Z", "kind": "stay_inside", "geometry": square(13.84, 58.39, 0.01) });
    vec![
        case("POST", "/api/v1/tenants", Some(json!({ "name": "T{n}" })), &[Admin], 201, false),
        case("GET", "/api/v1/tenants", None, &[Admin], 200, false),
        case(
            "POST",
            "/api/v1/users",
            Some(
                json!({ "email": "u{n}@x.se", "name": "U", "role": "staff", "password": "long enough password", "tenant": "{tenant}" }),
            ),
            &[Admin, TenantAdmin],
            201,
            false,
        ),
        case("GET", "/api/v1/users", None, &[Admin, TenantAdmin], 200, false),
        case("GET", "/api/v1/settings", None, EDITORS, 200, false),
        case("PUT", "/api/v1/settings", Some(json!({ "battery_low_pct": 25 })), &[TenantAdmin], 200, false),
        case("GET", "/api/v1/access-log", None, &[TenantAdmin], 200, false),
        case("GET", "/api/v1/settings/push", None, &[TenantAdmin], 200, false),
        case(
            "PUT",
            "/api/v1/settings/push",
            Some(json!({ "wearer_name_in_push": false })),
            &[TenantAdmin],
            200,
            false,
        ),
        case("GET", "/api/v1/alarms", None, READERS, 200, false),
        case("GET", "/api/v1/reports/alarms", None, EDITORS, 200, false),
        case(
            "POST",
            "/api/v1/push-tokens",
            Some(json!({ "token": "t{n}", "platform": "android" })),
            READERS,
            201,
            false,
        ),
        case("GET", "/api/v1/push-tokens", None, READERS, 200, false),
        case("POST", "/api/v1/wearers", Some(json!({ "name": "W" })), EDITORS, 201, false),
        case("GET", "/api/v1/wearers", None, READERS, 200, false),
        case("GET", "/api/v1/wearers/{wearer}", None, READERS, 200, true),
        case(
            "PUT",
            "/api/v1/wearers/{wearer}",
            Some(json!({ "name": "W2", "note": "Portkod 1234" })),
            EDITORS,
            200,
            true,
        ),
        case("POST", "/api/v1/wearers/{fresh_wearer}/deactivate", None, EDITORS, 200, true),
        case(
            "POST",
            "/api/v1/wearers/{wearer}/consents",
            Some(json!({ "covers": ["positioning"], "given_by": "wearer", "document_ref": "D1" })),
            EDITORS,
            201,
            true,
        ),
        case("GET", "/api/v1/wearers/{wearer}/consents", None, EDITORS, 200, true),
        case("POST", "/api/v1/wearers/{wearer}/consents/{fresh_consent}/withdraw", None, EDITORS, 200, true),
        case(
            "PUT",
            "/api/v1/wearers/{wearer}/responders",
            Some(json!({ "steps": [{ "user": "{staff}", "escalate_after_secs": 120 }] })),
            EDITORS,
            200,
            true,
        ),
        case("GET", "/api/v1/wearers/{wearer}/responders", None, READERS, 200, true),
        case("GET", "/api/v1/wearers/{wearer}/positions?reason=check%20trail", None, READERS, 200, true),
        case(
            "POST",
            "/api/v1/devices",
            Some(json!({ "id": "new-{n}", "protocol": "native" })),
            EDITORS,
            201,
            false,
        ),
        case("GET", "/api/v1/devices", None, READERS, 200, false),
        case("GET", "/api/v1/devices/{device}", None, READERS, 200, true),
        case(
            "POST",
            "/api/v1/devices/{fresh_unbound}/bind",
            Some(json!({ "wearer": "{wearer}" })),
            EDITORS,
            200,
            true,
        ),
        case("POST", "/api/v1/devices/{fresh_bound}/unbind", None, EDITORS, 200, true),
        case(
            "POST",
            "/api/v1/devices/{fresh_bound}/replace",
            Some(json!({ "device": "{fresh_unbound}" })),
            EDITORS,
            200,
            true,
        ),
        case("POST", "/api/v1/wearers/{wearer}/zones", Some(zone.clone()), EDITORS, 201, true),
        case("GET", "/api/v1/wearers/{wearer}/zones", None, READERS, 200, true),
        case("GET", "/api/v1/wearers/{wearer}/zones/{zone}", None, READERS, 200, true),
        case("PUT", "/api/v1/wearers/{wearer}/zones/{zone}", Some(zone), EDITORS, 200, true),
        case("DELETE", "/api/v1/wearers/{wearer}/zones/{fresh_zone}", None, EDITORS, 204, true),
        case("POST", "/api/v1/teams", Some(json!({ "name": "Team {n}" })), EDITORS, 201, false),
        case("GET", "/api/v1/teams", None, READERS, 200, false),
        case(
            "PUT",
            "/api/v1/teams/{team}/members",
            Some(json!({ "members": ["{staff}"] })),
            EDITORS,
            200,
            true,
        ),
        case("GET", "/api/v1/tenants/{tenant}", None, ALL, 200, true),
    ]
}

async fn fill(app: &App, text: &str, f: &Fixture) -> String {
    let mut s = text.replace("{n}", &app.next().to_string());
    let subs = [
        ("{tenant}", f.tenant.to_string()),
        ("{wearer}", f.wearer.to_string()),
        ("{consent}", f.consent.to_string()),
        ("{device}", f.device.to_string()),
        ("{zone}", f.zone.to_string()),
        ("{team}", f.team.to_string()),
        ("{staff}", f.staff.to_string()),
    ];
    for (k, v) in subs {
        s = s.replace(k, &v);
    }
    if s.contains("{fresh_wearer}") {
        s = s.replace("{fresh_wearer}", &app.wearer(f.tenant).await.to_string());
    }
    if s.contains("{fresh_consent}") {
        s = s.replace("{fresh_consent}", &app.consent(f.tenant, f.wearer, f.staff).await.to_string());
    }
    if s.contains("{fresh_zone}") {
        s = s.replace("{fresh_zone}", &app.zone(f.tenant, f.wearer).await.to_string());
    }
    if s.contains("{fresh_bound}") {
        let wearer = app.wearer(f.tenant).await;
        s = s.replace("{fresh_bound}", app.device(f.tenant, Some(wearer)).await.as_str());
    }
    if s.contains("{fresh_unbound}") {
        s = s.replace("{fresh_unbound}", app.device(f.tenant, None).await.as_str());
    }
    s
}

async fn every_role_gets_the_right_status_on_every_endpoint_for_both_tenants(store: Arc<dyn Store>) {
    let app = App::new(store);
    let own = app.tenant("Own kommun").await;
    let other = app.tenant("Other kommun").await;
    let (_, admin) = app.user(None, Admin).await;
    let mut failures = Vec::new();
    let mut calls = 0;
    for c in cases() {
        for role in ALL.iter().copied() {
            let token = if role == Admin { admin.as_str() } else { own.token(role) };
            let targets: &[(&str, &Fixture)] =
                if c.scoped { &[("own", &own), ("other", &other)] } else { &[("own", &own)] };
            for (which, target) in targets {
                let expected = if !c.allowed.contains(&role) {
                    403
                } else if *which == "other" && role != Admin {
                    404
                } else {
                    c.ok
                };
                // A combined template: a fresh unbound device appearing twice must be one device.
                let template =
                    format!("{}\u{0}{}", c.path, c.body.as_ref().map(Value::to_string).unwrap_or_default());
                let filled = fill(&app, &template, target).await;
                let (path, body) = filled.split_once('\u{0}').unwrap();
                let body: Option<Value> = (!body.is_empty()).then(|| serde_json::from_str(body).unwrap());
                let (status, answer) = app.call(c.method, path, Some(token), body.as_ref()).await;
                calls += 1;
                if status.as_u16() != expected {
                    failures.push(format!(
                        "{} {} as {} ({which}): {status}, expected {expected}: {answer}",
                        c.method,
                        c.path,
                        role.as_str()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(calls > 150, "the matrix ran {calls} calls");
}
