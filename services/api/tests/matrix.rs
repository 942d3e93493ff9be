//! The authorization matrix: every role × every endpoint × own tenant / other tenant, asserting
//! the status code, on SQLite and PostgreSQL.
//!
//! Rules under test: a role that may not call an endpoint gets 403 whatever the id; a role that
//! may, asking for another tenant's resource, gets 404 exactly like for a missing one.
//!
//! Staff are a special case twice over (DESIGN.md, Security and privacy): they see the
//! configuration of the wearers they respond for (`{mine}`: a wearer of their team, with an open
//! alarm) and get 404 for the others (`{wearer}`: nobody's team), and they read positions only of a
//! wearer with an open alarm they can see (403 for a wearer they merely know). Only staff take
//! and mark on site; staff or tenant admins close.

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::{App, Fixture, square};
use serde_json::{Value, json};
use trygg_core::{AlarmKind, Step, WearerId};
use trygg_store::Role::{self, Admin, Caseworker, Staff, TenantAdmin};
use trygg_store::{StepOutcome, StepRequest, Store, WearerFields, on_both_backends};
use uuid::Uuid;

on_both_backends!(every_role_gets_the_right_status_on_every_endpoint_for_both_tenants);

const EDITORS: &[Role] = &[TenantAdmin, Caseworker];
const READERS: &[Role] = &[TenantAdmin, Caseworker, Staff];
const ALL: &[Role] = &[Admin, TenantAdmin, Caseworker, Staff];
const STAFF: &[Role] = &[Staff];
const CLOSERS: &[Role] = &[Staff, TenantAdmin];

/// One endpoint: `{…}` placeholders are filled from the target tenant's fixture.
struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [Role],
    ok: u16,
    /// The path names a tenant's resource, so calling it with the other tenant's ids is a 404.
    scoped: bool,
    /// Roles that pass the role check but are refused this tenant's resource by a rule about the
    /// data (staff and wearers), with the status they get on their own tenant.
    own_refused: &'static [(Role, u16)],
}

fn case(
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [Role],
    ok: u16,
    scoped: bool,
) -> Case {
    Case { method, path, body, allowed, ok, scoped, own_refused: &[] }
}

/// A read of a wearer's configuration by staff who do not respond for the wearer: 404.
fn hidden(mut c: Case) -> Case {
    c.own_refused = &[(Staff, 404)];
    c
}

/// A read of positions by staff with no open alarm for the wearer: 403.
fn no_alarm(mut c: Case) -> Case {
    c.own_refused = &[(Staff, 403)];
    c
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
        case("POST", "/api/v1/users/{fresh_user}/disable", None, &[Admin, TenantAdmin], 204, true),
        case("POST", "/api/v1/users/{fresh_user}/enable", None, &[Admin, TenantAdmin], 204, true),
        case(
            "POST",
            "/api/v1/users/{fresh_user}/password",
            Some(json!({ "new_password": "a long new password" })),
            &[Admin, TenantAdmin],
            204,
            true,
        ),
        case("DELETE", "/api/v1/users/{fresh_user}", None, &[Admin, TenantAdmin], 204, true),
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
        hidden(case("GET", "/api/v1/wearers/{wearer}", None, READERS, 200, true)),
        case("GET", "/api/v1/wearers/{mine}", None, READERS, 200, true),
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
            // Not {wearer}: that would make staff its responders, and {wearer} must stay unknown to them.
            "/api/v1/wearers/{known}/responders",
            Some(json!({ "steps": [{ "user": "{staff}", "escalate_after_secs": 120 }] })),
            EDITORS,
            200,
            true,
        ),
        hidden(case("GET", "/api/v1/wearers/{wearer}/responders", None, READERS, 200, true)),
        // The alarm centre receives positions: only tenant admins point the webhook somewhere.
        Case {
            own_refused: &[(Caseworker, 403)],
            ..case(
                "PUT",
                "/api/v1/wearers/{known}/responders",
                Some(json!({ "steps": [], "alarm_centre_url": "https://larm.example.se/hook-{n}" })),
                EDITORS,
                200,
                true,
            )
        },
        case("GET", "/api/v1/wearers/{mine}/responders", None, READERS, 200, true),
        // Staff know the wearer through their team but have no open alarm for them: 403.
        no_alarm(case(
            "GET",
            "/api/v1/wearers/{known}/positions?reason=check%20trail",
            None,
            READERS,
            200,
            true,
        )),
        hidden(case(
            "GET",
            "/api/v1/wearers/{wearer}/positions?reason=check%20trail",
            None,
            READERS,
            200,
            true,
        )),
        case("GET", "/api/v1/wearers/{mine}/positions?reason=check%20trail", None, READERS, 200, true),
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
        hidden(case("GET", "/api/v1/wearers/{wearer}/zones", None, READERS, 200, true)),
        hidden(case("GET", "/api/v1/wearers/{wearer}/zones/{zone}", None, READERS, 200, true)),
        case("GET", "/api/v1/wearers/{mine}/zones", None, READERS, 200, true),
        case("GET", "/api/v1/auth/me", None, ALL, 200, false),
        case("POST", "/api/v1/wearers/{wearer}/zones/dry-run", Some(zone.clone()), EDITORS, 200, true),
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
        case("GET", "/api/v1/alarms/{alarm}", None, READERS, 200, true),
        case("GET", "/api/v1/alarms/{alarm}/events", None, READERS, 200, true),
        case(
            "PATCH",
            "/api/v1/devices/{device}",
            Some(json!({ "utc_offset_minutes": 60 })),
            EDITORS,
            200,
            true,
        ),
        // The fixture's watch is not connected: the role passes, the command is refused (409).
        case(
            "POST",
            "/api/v1/devices/{device}/commands",
            Some(json!({ "command": "locate" })),
            EDITORS,
            409,
            true,
        ),
        case("POST", "/api/v1/alarms/{fresh_alarm}/acknowledge", None, STAFF, 200, true),
        case("POST", "/api/v1/alarms/{acknowledged_alarm}/on-site", None, STAFF, 200, true),
        case(
            "POST",
            "/api/v1/alarms/{acknowledged_alarm}/close",
            Some(json!({ "outcome": "false_alarm", "note": "" })),
            CLOSERS,
            200,
            true,
        ),
    ]
}

/// The tenant fixture plus what staff need to see something: the staff member in the team, a
/// wearer of the team (`known`) and one with an open SOS (`mine`, with consent).
struct Target {
    base: Fixture,
    /// The fixture's staff member, now a member of the fixture's team.
    staff_of_team: Uuid,
    mine: WearerId,
    known: WearerId,
    alarm: Uuid,
}

impl std::ops::Deref for Target {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.base
    }
}

async fn target(app: &App, base: Fixture) -> Target {
    let store = &app.state.store;
    assert!(store.set_team_members(base.tenant, base.team, &[base.staff]).await.unwrap());
    let team_wearer = || async {
        let fields = WearerFields {
            name: format!("Team wearer {}", app.next()),
            team: Some(base.team),
            ..Default::default()
        };
        let id = store.add_wearer(base.tenant, &fields).await.unwrap();
        app.consent(base.tenant, id, base.staff).await;
        id
    };
    let known = team_wearer().await;
    let mine = team_wearer().await;
    let alarm = raise(app, &base, mine).await;
    Target { staff_of_team: base.staff, mine, known, alarm, base }
}

/// A new open SOS of a new wearer of the team (a new wearer, so it is not joined to an open one).
async fn fresh_alarm(app: &App, f: &Fixture, _staff: Uuid) -> Uuid {
    let fields =
        WearerFields { name: format!("Fresh {}", app.next()), team: Some(f.team), ..Default::default() };
    let wearer = app.state.store.add_wearer(f.tenant, &fields).await.unwrap();
    raise(app, f, wearer).await
}

async fn raise(app: &App, f: &Fixture, wearer: WearerId) -> Uuid {
    common::raise_alarm(app, f, wearer, None, AlarmKind::Sos, Utc::now()).await
}

async fn fill(app: &App, text: &str, f: &Target) -> String {
    let mut s = text.replace("{n}", &app.next().to_string());
    let subs = [
        ("{tenant}", f.tenant.to_string()),
        ("{wearer}", f.wearer.to_string()),
        ("{consent}", f.consent.to_string()),
        ("{device}", f.device.to_string()),
        ("{zone}", f.zone.to_string()),
        ("{team}", f.team.to_string()),
        ("{staff}", f.staff.to_string()),
        ("{mine}", f.mine.to_string()),
        ("{known}", f.known.to_string()),
        ("{alarm}", f.alarm.to_string()),
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
    if s.contains("{fresh_user}") {
        s = s.replace("{fresh_user}", &app.user(Some(f.tenant), Role::Staff).await.0.to_string());
    }
    if s.contains("{fresh_alarm}") {
        s = s.replace("{fresh_alarm}", &fresh_alarm(app, &f.base, f.staff_of_team).await.to_string());
    }
    if s.contains("{acknowledged_alarm}") {
        let id = fresh_alarm(app, &f.base, f.staff_of_team).await;
        let step = StepRequest {
            step: Step::Acknowledge,
            actor: Some(f.staff_of_team),
            at: Utc::now(),
            position: None,
            note: String::new(),
        };
        let done = app.state.store.step_alarm(f.tenant, id, &step).await.unwrap();
        assert!(matches!(done, Some(StepOutcome::Done(_))), "{done:?}");
        s = s.replace("{acknowledged_alarm}", &id.to_string());
    }
    if s.contains("{fresh_unbound}") {
        s = s.replace("{fresh_unbound}", app.device(f.tenant, None).await.as_str());
    }
    s
}

async fn every_role_gets_the_right_status_on_every_endpoint_for_both_tenants(store: Arc<dyn Store>) {
    let app = App::new(store);
    let own = target(&app, app.tenant("Own kommun").await).await;
    let other = target(&app, app.tenant("Other kommun").await).await;
    let (_, admin) = app.user(None, Admin).await;
    let mut failures = Vec::new();
    let mut calls = 0;
    for c in cases() {
        for role in ALL.iter().copied() {
            let token = if role == Admin { admin.as_str() } else { own.token(role) };
            let targets: &[(&str, &Target)] =
                if c.scoped { &[("own", &own), ("other", &other)] } else { &[("own", &own)] };
            for (which, target) in targets {
                let refused = c.own_refused.iter().find(|(r, _)| *r == role).map(|(_, status)| *status);
                let expected = if !c.allowed.contains(&role) {
                    403
                } else if *which == "other" && role != Admin {
                    404
                } else if let Some(status) = refused {
                    status
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
