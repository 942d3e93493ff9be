//! The staff side of alarms on SQLite and PostgreSQL: who sees which alarm, the lifecycle steps
//! and their refusals, the audit trail, positions with age and trail (logged, and hidden from
//! staff once the alarm is closed), the live stream, push tokens and the alarm report.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use common::{App, Fixture, LIVE_POLL, fix, store_fixes};
use futures_util::StreamExt;
use serde_json::{Value, json};
use trygg_core::{AlarmKind, DeviceId, Fix, Outcome, Step, WearerId};
use trygg_store::{Role, StepRequest, Store, WearerFields, on_both_backends};
use uuid::Uuid;

on_both_backends!(
    staff_see_only_alarms_of_their_teams_wearers,
    another_tenants_alarm_is_not_found_on_any_endpoint,
    acknowledge_on_site_and_close_are_recorded_in_order_with_their_actors,
    steps_out_of_order_are_refused_with_the_reason,
    of_two_concurrent_acknowledgements_one_wins_and_the_other_names_the_winner,
    the_detail_shows_the_last_position_with_age_and_accuracy_and_the_trail_and_is_logged,
    the_trail_holds_the_newest_fixes_and_ends_at_the_closing,
    staff_see_no_wearer_positions_of_a_closed_alarm_and_nothing_is_logged_for_it,
    every_answer_showing_a_wearer_position_is_logged_once_per_wearer,
    the_live_stream_sends_new_fixes_and_ends_when_the_alarm_closes,
    the_live_stream_sends_a_fix_committed_after_one_received_later,
    the_live_stream_ends_for_staff_taken_off_the_team,
    a_watch_given_to_someone_else_shows_none_of_their_positions_on_the_alarm,
    the_live_stream_ends_promptly_when_the_server_stops,
    a_live_client_that_goes_away_leaves_nothing_running,
    push_tokens_are_registered_listed_and_deleted_by_their_owner_only,
    the_report_adds_up_alarms_with_known_times_as_json_and_csv,
    report_periods_outside_the_years_1970_to_9999_are_refused,
    bad_query_parameters_are_a_400_in_the_error_shape,
);

async fn store_fix(app: &App, device: &DeviceId, f: Fix, received_at: DateTime<Utc>) {
    store_fixes(app, device, vec![f], received_at).await;
}

/// The access log entries of `what`, as (user, wearer, reason).
async fn logged(app: &App, f: &Fixture, what: &str) -> Vec<(Uuid, WearerId, String)> {
    let log = app.state.store.access_log(f.tenant, 1000).await.unwrap();
    log.into_iter().filter(|e| e.what == what).map(|e| (e.user, e.wearer, e.reason)).collect()
}

/// Raises an alarm the way the engine does, as of `now`; the fixture's wearer's from its device.
async fn raise(app: &App, f: &Fixture, wearer: WearerId, kind: AlarmKind, now: DateTime<Utc>) -> Uuid {
    let device = (wearer == f.wearer).then(|| f.device.clone());
    common::raise_alarm(app, f, wearer, device, kind, now).await
}

/// An SOS of the fixture's wearer raised now, their watch's last fix (58.39, 13.84, ±20 m)
/// 30 s old.
async fn sos_after_a_fix(app: &App, f: &Fixture) -> Uuid {
    let now = Utc::now();
    store_fix(app, &f.device, fix(now - TimeDelta::seconds(30), 58.39, 13.84, Some(20.0)), now).await;
    raise(app, f, f.wearer, AlarmKind::Sos, now).await
}

/// Puts the fixture's wearer in its team and `members` in the team.
async fn team_up(app: &App, f: &Fixture, members: &[Uuid]) {
    let store = &app.state.store;
    assert!(store.set_team_members(f.tenant, f.team, members).await.unwrap());
    let mut fields: WearerFields = store.wearer(f.tenant, f.wearer).await.unwrap().unwrap().fields;
    fields.team = Some(f.team);
    assert!(store.update_wearer(f.tenant, f.wearer, &fields).await.unwrap());
}

/// An app with the tenant "Own" whose staff member responds for its wearer: both in its team.
async fn own_team(store: Arc<dyn Store>) -> (App, Fixture) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    team_up(&app, &f, &[f.staff]).await;
    (app, f)
}

async fn staff_see_only_alarms_of_their_teams_wearers(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, Utc::now()).await;
    let staff = f.token(Role::Staff);
    let one = format!("/api/v1/alarms/{id}");

    let (status, list) = app.call("GET", "/api/v1/alarms", Some(staff), None).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])), "staff outside the wearer's team see nothing");
    assert_eq!(app.call("GET", &one, Some(staff), None).await.0, 404);
    assert_eq!(app.call("POST", &format!("{one}/acknowledge"), Some(staff), None).await.0, 404);

    let (status, list) = app.call("GET", "/api/v1/alarms", Some(f.token(Role::Caseworker)), None).await;
    assert_eq!((status, list[0]["id"].clone()), (StatusCode::OK, json!(id)), "caseworkers see the tenant's");
    let (_, admin_token) = app.user(None, Role::Admin).await;
    assert_eq!(app.call("GET", "/api/v1/alarms", Some(&admin_token), None).await.0, 403);

    team_up(&app, &f, &[f.staff]).await;
    let (status, list) = app.call("GET", "/api/v1/alarms", Some(staff), None).await;
    assert_eq!(status, 200);
    let item = &list[0];
    assert_eq!(
        (item["id"].clone(), item["kind"].clone(), item["state"].clone()),
        (json!(id), json!("sos"), json!("raised"))
    );
    let wearer = app.state.store.wearer(f.tenant, f.wearer).await.unwrap().unwrap();
    assert_eq!(item["wearer"], json!({ "id": f.wearer.0, "name": wearer.fields.name }));
    assert_eq!(item["position"]["accuracy_m"], 25.0);
    assert!(item["position"]["age_secs"].as_i64().unwrap() >= 5);
    assert_eq!(item["on_site_overdue"], false);
    assert_eq!(app.call("GET", &one, Some(staff), None).await.0, 200);
    let (_, closed) = app.call("GET", "/api/v1/alarms?state=closed", Some(staff), None).await;
    assert_eq!(closed, json!([]), "the open alarm is not among the closed ones");
}

async fn another_tenants_alarm_is_not_found_on_any_endpoint(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let other = app.tenant("Other").await;
    team_up(&app, &other, &[other.staff]).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, Utc::now()).await;
    let base = format!("/api/v1/alarms/{id}");
    let close = json!({ "outcome": "assisted" });
    for role in [Role::Staff, Role::Caseworker, Role::TenantAdmin] {
        let t = other.token(role);
        // Roles that may not take a step are refused before any lookup (403, see matrix.rs).
        let steps = role == Role::Staff;
        let closes = role != Role::Caseworker;
        for (method, path, body, allowed) in [
            ("GET", base.clone(), None, true),
            ("GET", format!("{base}/events"), None, true),
            ("GET", format!("{base}/live"), None, true),
            ("POST", format!("{base}/acknowledge"), None, steps),
            ("POST", format!("{base}/on-site"), None, steps),
            ("POST", format!("{base}/close"), Some(&close), closes),
        ] {
            let (status, body) = app.call(method, &path, Some(t), body).await;
            if !allowed {
                assert_eq!(status, 403, "{role:?} {method} {path}");
                continue;
            }
            assert_eq!(status, 404, "{role:?} {method} {path}");
            assert_eq!(body["error"], "alarm not found");
        }
        let (_, list) = app.call("GET", "/api/v1/alarms?state=all", Some(t), None).await;
        assert_eq!(list, json!([]), "{role:?}");
    }
    let (_, alarm) = app.call("GET", &base, Some(f.token(Role::Caseworker)), None).await;
    assert_eq!(alarm["state"], "raised", "nothing the other tenant tried changed it");
}

async fn acknowledge_on_site_and_close_are_recorded_in_order_with_their_actors(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let staff = f.token(Role::Staff);
    let id = raise(&app, &f, f.wearer, AlarmKind::Fall, Utc::now()).await;
    let base = format!("/api/v1/alarms/{id}");

    let here = json!({ "position": { "lat": 58.4, "lon": 13.85, "accuracy_m": 8.0 } });
    let (status, acked) = app.call("POST", &format!("{base}/acknowledge"), Some(staff), Some(&here)).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(
        (acked["state"].clone(), acked["acknowledged"]["user"].clone()),
        (json!("acknowledged"), json!(f.staff))
    );
    assert!(acked["time_to_acknowledge_secs"].as_i64().unwrap() >= 0);
    let staff_name = acked["acknowledged"]["name"].as_str().unwrap().to_owned();

    let (status, on_site) = app.call("POST", &format!("{base}/on-site"), Some(staff), None).await;
    assert_eq!(
        (status, on_site["state"].clone()),
        (StatusCode::OK, json!("on_site")),
        "the body is optional"
    );
    assert!(on_site["time_to_on_site_secs"].is_i64());

    let (status, body) =
        app.call("POST", &format!("{base}/close"), Some(staff), Some(&json!({ "outcome": "lost" }))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["details"]["fields"]["outcome"].as_str().unwrap().contains("assisted"), "{body}");
    let long = json!({ "outcome": "assisted", "note": "x".repeat(2001) });
    assert_eq!(app.call("POST", &format!("{base}/close"), Some(staff), Some(&long)).await.0, 422);

    let done = json!({ "outcome": "assisted", "note": "Helped home" });
    let (status, closed) = app.call("POST", &format!("{base}/close"), Some(staff), Some(&done)).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        (closed["state"].clone(), closed["outcome"].clone(), closed["note"].clone()),
        (json!("closed"), json!("assisted"), json!("Helped home"))
    );
    assert_eq!(closed["closed"]["user"], json!(f.staff));

    let (status, again) = app.call("POST", &format!("{base}/close"), Some(staff), Some(&done)).await;
    assert_eq!((status, again["error"].clone()), (StatusCode::CONFLICT, json!("alarm is already closed")));
    assert_eq!(again["details"]["state"], "closed");

    let (status, events) = app.call("GET", &format!("{base}/events"), Some(staff), None).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["raised", "acknowledged", "on_site", "closed"]);
    assert_eq!(events[0]["actor"], Value::Null, "the system raised it");
    for e in &events.as_array().unwrap()[1..] {
        assert_eq!(e["actor"], json!({ "id": f.staff, "name": staff_name }), "{e}");
    }
    assert_eq!(events[1]["position"], json!({ "lat": 58.4, "lon": 13.85, "accuracy_m": 8.0 }));
    assert_eq!(events[2]["position"], Value::Null);
    assert!(events[3]["detail"].as_str().unwrap().contains("Helped home"));
}

async fn steps_out_of_order_are_refused_with_the_reason(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let cw = f.token(Role::Staff);
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, Utc::now()).await;
    let base = format!("/api/v1/alarms/{id}");

    let (status, body) = app.call("POST", &format!("{base}/on-site"), Some(cw), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("must be acknowledged first"), "{body}");
    assert_eq!(body["details"]["state"], "raised");
    let close = json!({ "outcome": "false_alarm" });
    assert_eq!(app.call("POST", &format!("{base}/close"), Some(cw), Some(&close)).await.0, 409);

    let off_earth = json!({ "position": { "lat": 91.0, "lon": 13.0 } });
    let (status, body) = app.call("POST", &format!("{base}/acknowledge"), Some(cw), Some(&off_earth)).await;
    assert_eq!(status, 422);
    assert!(body["details"]["fields"]["position.lat"].is_string(), "{body}");
    let (status, _) = app
        .call("POST", &format!("{base}/on-site"), Some(cw), Some(&json!({ "position": { "lat": 1 } })))
        .await;
    assert_eq!(status, 422, "a position needs lon");
    let (_, alarm) = app.call("GET", &base, Some(cw), None).await;
    assert_eq!(alarm["state"], "raised", "refused steps change nothing");
}

async fn of_two_concurrent_acknowledgements_one_wins_and_the_other_names_the_winner(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let (second, second_token) = app.user(Some(f.tenant), Role::Staff).await;
    team_up(&app, &f, &[f.staff, second]).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, Utc::now()).await;
    let path = format!("/api/v1/alarms/{id}/acknowledge");
    let (a, b) = tokio::join!(
        app.call("POST", &path, Some(f.token(Role::Staff)), None),
        app.call("POST", &path, Some(&second_token), None)
    );
    let (won, lost) = match (a.0.as_u16(), b.0.as_u16()) {
        (200, 409) => (a.1, b.1),
        (409, 200) => (b.1, a.1),
        other => panic!("expected one 200 and one 409, got {other:?}: {} / {}", a.1, b.1),
    };
    let winner = &won["acknowledged"];
    assert!([json!(f.staff), json!(second)].contains(&winner["user"]));
    assert_eq!(lost["error"], format!("alarm already acknowledged by {}", winner["name"].as_str().unwrap()));
    assert_eq!(lost["details"]["acknowledged_by"], *winner);
    assert_eq!(lost["details"]["state"], "acknowledged");
    let (_, events) =
        app.call("GET", &format!("/api/v1/alarms/{id}/events"), Some(&second_token), None).await;
    let acks = events.as_array().unwrap().iter().filter(|e| e["kind"] == "acknowledged").count();
    assert_eq!(acks, 1, "one acknowledgement recorded");
}

async fn the_detail_shows_the_last_position_with_age_and_accuracy_and_the_trail_and_is_logged(
    store: Arc<dyn Store>,
) {
    let (app, f) = own_team(store).await;
    let now = Utc::now();
    let trigger = now - TimeDelta::seconds(5);
    let received = now - TimeDelta::seconds(1);
    store_fix(&app, &f.device, fix(trigger - TimeDelta::minutes(20), 58.30, 13.80, Some(5.0)), received)
        .await;
    store_fix(&app, &f.device, fix(trigger - TimeDelta::minutes(5), 58.31, 13.81, None), received).await;
    let last_time = now - TimeDelta::seconds(90);
    store_fix(&app, &f.device, fix(last_time, 58.32, 13.82, Some(12.0)), received).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::ZoneExit, now).await;
    let mut note = app.state.store.wearer(f.tenant, f.wearer).await.unwrap().unwrap().fields;
    note.note = "Portkod 1234".into();
    note.contact_name = "Anna".into();
    note.contact_phone = "070-1234567".into();
    app.state.store.update_wearer(f.tenant, f.wearer, &note).await.unwrap();

    let (status, d) =
        app.call("GET", &format!("/api/v1/alarms/{id}"), Some(f.token(Role::Staff)), None).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!((d["id"].clone(), d["kind"].clone()), (json!(id), json!("zone_exit")), "the item's fields");
    assert_eq!(
        (d["wearer_note"].clone(), d["contact_name"].clone(), d["contact_phone"].clone()),
        (json!("Portkod 1234"), json!("Anna"), json!("070-1234567"))
    );
    let last = &d["last_position"];
    assert_eq!(
        (last["lat"].clone(), last["lon"].clone(), last["accuracy_m"].clone()),
        (json!(58.32), json!(13.82), json!(12.0))
    );
    let age = last["age_secs"].as_i64().unwrap();
    assert!((90..100).contains(&age), "age {age}");
    let trail: Vec<f64> = d["trail"].as_array().unwrap().iter().map(|p| p["lat"].as_f64().unwrap()).collect();
    assert_eq!(trail, [58.31, 58.32], "from ten minutes before the trigger, oldest first");
    assert_eq!(d["trail"][0]["accuracy_m"], Value::Null);
    assert_eq!(
        d["map_url"],
        "https://www.openstreetmap.org/?mlat=58.320000&mlon=13.820000#map=17/58.320000/13.820000"
    );

    let log = app.state.store.access_log(f.tenant, 10).await.unwrap();
    let entry = log.iter().find(|e| e.what == "alarm").expect("the read is logged");
    assert_eq!((entry.user, entry.wearer), (f.staff, f.wearer));
    assert!(entry.reason.contains(&id.to_string()), "{}", entry.reason);
}

async fn the_trail_holds_the_newest_fixes_and_ends_at_the_closing(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    // Whole seconds, so times read back from either backend compare equal.
    let raised = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    let trigger = raised - TimeDelta::seconds(5);
    // A long search: a fix every 5 s from 5 minutes before the trigger, 520 in all (43 minutes).
    let times: Vec<DateTime<Utc>> =
        (0..520).map(|i| trigger - TimeDelta::minutes(5) + TimeDelta::seconds(5 * i)).collect();
    let fixes = times.iter().enumerate().map(|(i, t)| fix(*t, 58.0 + i as f64 * 1e-4, 13.8, None)).collect();
    store_fixes(&app, &f.device, fixes, Utc::now()).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::ZoneExit, raised).await;
    let path = format!("/api/v1/alarms/{id}");
    let trail_times = |d: &Value| -> Vec<DateTime<Utc>> {
        d["trail"].as_array().unwrap().iter().map(|p| p["time"].as_str().unwrap().parse().unwrap()).collect()
    };
    let time_of = |p: &Value| p["time"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();

    let (status, open) = app.call("GET", &path, Some(cw), None).await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(trail_times(&open), times[20..], "the newest 500, oldest first");
    assert_eq!(time_of(&open["last_position"]), times[519]);

    let closed_at = trigger + TimeDelta::minutes(30);
    step(&app, &f, id, Step::Acknowledge, raised + TimeDelta::minutes(1)).await;
    step(&app, &f, id, Step::Close(Outcome::NotFound), closed_at).await;
    let (_, closed) = app.call("GET", &path, Some(cw), None).await;
    let until: Vec<DateTime<Utc>> = times.iter().copied().filter(|t| *t <= closed_at).collect();
    assert_eq!(trail_times(&closed), until, "up to the closing");
    assert_eq!(time_of(&closed["last_position"]), closed_at, "the last fix before closing");
}

async fn staff_see_no_wearer_positions_of_a_closed_alarm_and_nothing_is_logged_for_it(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let (colleague, colleague_token) = app.user(Some(f.tenant), Role::Staff).await;
    team_up(&app, &f, &[f.staff, colleague]).await;
    let (staff, cw) = (f.token(Role::Staff), f.token(Role::Caseworker));
    let now = Utc::now();
    store_fix(&app, &f.device, fix(now - TimeDelta::seconds(30), 58.39, 13.84, Some(9.0)), now).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, now).await;
    let base = format!("/api/v1/alarms/{id}");
    let own = json!({ "position": { "lat": 58.4, "lon": 13.85, "accuracy_m": 8.0 } });
    assert_eq!(app.call("POST", &format!("{base}/acknowledge"), Some(staff), Some(&own)).await.0, 200);
    let near = json!({ "position": { "lat": 58.391, "lon": 13.841 } });
    assert_eq!(
        app.call("POST", &format!("{base}/on-site"), Some(&colleague_token), Some(&near)).await.0,
        200
    );
    let done = json!({ "outcome": "assisted" });
    let (status, answer) = app.call("POST", &format!("{base}/close"), Some(staff), Some(&done)).await;
    assert_eq!((status, answer["position"].clone()), (StatusCode::OK, Value::Null), "{answer}");
    let entries = app.state.store.access_log(f.tenant, 1000).await.unwrap().len();

    let (_, list) = app.call("GET", "/api/v1/alarms?state=closed", Some(staff), None).await;
    assert_eq!((list[0]["id"].clone(), list[0]["position"].clone()), (json!(id), Value::Null));
    let (status, d) = app.call("GET", &base, Some(staff), None).await;
    assert_eq!(status, 200, "the alarm itself stays readable");
    assert_eq!(
        (d["position"].clone(), d["last_position"].clone(), d["trail"].clone(), d["map_url"].clone()),
        (Value::Null, Value::Null, json!([]), Value::Null)
    );
    let (_, events) = app.call("GET", &format!("{base}/events"), Some(staff), None).await;
    let positions: Vec<(&str, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["position"].clone()))
        .collect();
    assert_eq!(
        positions,
        [
            ("raised", Value::Null),
            ("acknowledged", json!({ "lat": 58.4, "lon": 13.85, "accuracy_m": 8.0 })),
            ("on_site", Value::Null),
            ("closed", Value::Null),
        ],
        "only the staff member's own position is left"
    );
    let after = app.state.store.access_log(f.tenant, 1000).await.unwrap().len();
    assert_eq!(after, entries, "nothing shown, nothing logged");

    let (_, list) = app.call("GET", "/api/v1/alarms?state=closed", Some(cw), None).await;
    assert_eq!(list[0]["position"]["accuracy_m"], 25.0, "caseworkers still see it");
    let (_, d) = app.call("GET", &base, Some(cw), None).await;
    assert_eq!(
        (d["last_position"]["lat"].clone(), d["trail"][0]["lat"].clone()),
        (json!(58.39), json!(58.39))
    );
    let (_, events) = app.call("GET", &format!("{base}/events"), Some(cw), None).await;
    assert_eq!(events[0]["position"]["lat"], 58.39);
    for what in ["alarms", "alarm", "alarm events"] {
        let entries = logged(&app, &f, what).await;
        assert_eq!(entries.len(), 1, "{what}: {entries:?}");
        assert_eq!((entries[0].0, entries[0].1), (f.tokens[1].1.0, f.wearer), "{what}");
    }
}

async fn every_answer_showing_a_wearer_position_is_logged_once_per_wearer(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let (staff, cw) = (f.token(Role::Staff), f.token(Role::Caseworker));
    let other = app.wearer(f.tenant).await;
    let now = Utc::now();
    let sos = raise(&app, &f, f.wearer, AlarmKind::Sos, now).await;
    let fall = raise(&app, &f, f.wearer, AlarmKind::Fall, now).await;
    let theirs = raise(&app, &f, other, AlarmKind::Sos, now).await;

    let (_, list) = app.call("GET", "/api/v1/alarms", Some(cw), None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let mut entries = logged(&app, &f, "alarms").await;
    entries.sort_by_key(|e| e.1 != f.wearer);
    assert_eq!(entries.len(), 2, "one per wearer: {entries:?}");
    assert_eq!((entries[0].1, entries[1].1), (f.wearer, other));
    for id in [sos, fall] {
        assert!(entries[0].2.contains(&id.to_string()), "{entries:?}");
    }
    assert!(entries[1].2.contains(&theirs.to_string()), "{entries:?}");

    let base = format!("/api/v1/alarms/{sos}");
    let (_, events) = app.call("GET", &format!("{base}/events"), Some(staff), None).await;
    assert!(events[0]["position"].is_object(), "{events}");
    assert_eq!(logged(&app, &f, "alarm events").await, [(f.staff, f.wearer, format!("alarm {sos}"))]);

    for step in ["acknowledge", "on-site"] {
        let (status, answer) = app.call("POST", &format!("{base}/{step}"), Some(staff), None).await;
        assert_eq!((status, answer["position"]["lat"].clone()), (StatusCode::OK, json!(58.39)), "{step}");
    }
    let close = json!({ "outcome": "assisted" });
    assert_eq!(app.call("POST", &format!("{base}/close"), Some(staff), Some(&close)).await.0, 200);
    let steps = logged(&app, &f, "alarm step").await;
    assert_eq!(steps.len(), 2, "acknowledge and on site showed the position, the closed answer none");
    assert!(steps.iter().all(|e| (e.0, e.1) == (f.staff, f.wearer)), "{steps:?}");
}

/// Reads a live stream's events (`event`, `data`), skipping keep-alive comments.
struct Events {
    body: BodyDataStream,
    buf: String,
}

impl Events {
    /// Opens alarm `id`'s live stream as the holder of `token`.
    async fn open(app: &App, id: Uuid, token: &str) -> Self {
        let resp = app.raw(&format!("/api/v1/alarms/{id}/live"), token, &[]).await;
        Self::new(resp.into_body())
    }

    fn new(body: Body) -> Self {
        Self { body: body.into_data_stream(), buf: String::new() }
    }

    /// The next event; `None` when the stream ended. Panics after five seconds without one.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_owned())
                };
                if let Some(event) = field("event:") {
                    let data = field("data:").unwrap_or_default();
                    return Some((event, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.body.next())
                .await
                .expect("an event in time");
            self.buf.push_str(std::str::from_utf8(&chunk?.unwrap()).unwrap());
        }
    }
}

async fn the_live_stream_sends_new_fixes_and_ends_when_the_alarm_closes(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let staff = f.token(Role::Staff);
    let id = sos_after_a_fix(&app, &f).await;
    let live = format!("/api/v1/alarms/{id}/live");

    let resp = app.raw(&live, staff, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut events = Events::new(resp.into_body());
    let (kind, first) = events.next().await.unwrap();
    assert_eq!(
        (kind.as_str(), first["lat"].clone(), first["accuracy_m"].clone()),
        ("position", json!(58.39), json!(20.0))
    );
    assert!(first["age_secs"].as_i64().unwrap() >= 30);

    store_fix(&app, &f.device, fix(Utc::now(), 58.41, 13.86, Some(7.0)), Utc::now()).await;
    let (kind, moved) = events.next().await.unwrap();
    assert_eq!(
        (kind.as_str(), moved["lat"].clone(), moved["lon"].clone()),
        ("position", json!(58.41), json!(13.86))
    );

    let base = format!("/api/v1/alarms/{id}");
    assert_eq!(app.call("POST", &format!("{base}/acknowledge"), Some(staff), None).await.0, 200);
    let done = json!({ "outcome": "assisted" });
    assert_eq!(app.call("POST", &format!("{base}/close"), Some(staff), Some(&done)).await.0, 200);
    let (kind, closed) = events.next().await.unwrap();
    assert_eq!((kind.as_str(), closed["outcome"].clone()), ("closed", json!("assisted")));
    assert_eq!(closed["closed"]["user"], json!(f.staff));
    assert!(events.next().await.is_none(), "the stream ends after `closed`");

    let (status, body) = app.call("GET", &live, Some(staff), None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::CONFLICT, json!("alarm is closed")));
    let log = app.state.store.access_log(f.tenant, 10).await.unwrap();
    assert_eq!(
        log.iter().filter(|e| e.what == "live").count(),
        1,
        "one entry per connection, none for the refused one"
    );
}

async fn the_live_stream_ends_for_staff_taken_off_the_team(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let id = sos_after_a_fix(&app, &f).await;
    let mut events = Events::open(&app, id, f.token(Role::Staff)).await;
    assert_eq!(events.next().await.unwrap().0, "position");

    assert!(app.state.store.set_team_members(f.tenant, f.team, &[]).await.unwrap());
    store_fix(&app, &f.device, fix(Utc::now(), 58.41, 13.86, Some(7.0)), Utc::now()).await;
    let (kind, ended) = events.next().await.unwrap();
    assert_eq!(kind, "ended", "no position after the staff member left the team: {ended}");
    assert!(events.next().await.is_none());
}

async fn a_watch_given_to_someone_else_shows_none_of_their_positions_on_the_alarm(store: Arc<dyn Store>) {
    let (app, f) = own_team(store).await;
    let id = sos_after_a_fix(&app, &f).await;
    let mut events = Events::open(&app, id, f.token(Role::Staff)).await;
    assert_eq!(events.next().await.unwrap().1["lat"], 58.39);

    // The watch goes to another wearer; their walk must not show on this alarm.
    let store = &app.state.store;
    let moved = Utc::now();
    store.unbind_device(f.tenant, &f.device, moved).await.unwrap();
    let stranger = app.wearer(f.tenant).await;
    store.bind_device(f.tenant, &f.device, stranger, moved).await.unwrap();
    let later = moved + TimeDelta::milliseconds(10);
    store_fix(&app, &f.device, fix(later, 57.70, 11.97, Some(5.0)), later).await;

    let (kind, ended) = events.next().await.unwrap();
    assert_eq!(kind, "ended", "no position of the watch's new wearer: {ended}");
    assert!(events.next().await.is_none());
    for token in [f.token(Role::Staff), f.token(Role::Caseworker)] {
        let (status, detail) = app.call("GET", &format!("/api/v1/alarms/{id}"), Some(token), None).await;
        assert_eq!(status, 200);
        assert_eq!(detail["last_position"]["lat"], 58.39, "{detail}");
        let trail: Vec<&Value> = detail["trail"].as_array().unwrap().iter().map(|p| &p["lat"]).collect();
        assert_eq!(trail, [&json!(58.39)], "{detail}");
    }
    let mut events = Events::open(&app, id, f.token(Role::Caseworker)).await;
    assert_eq!(events.next().await.unwrap().1["lat"], 58.39, "the last position of the wearer's binding");
    assert_eq!(events.next().await.unwrap().0, "ended");
}

async fn the_live_stream_sends_a_fix_committed_after_one_received_later(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    let now = Utc::now();
    store_fix(
        &app,
        &f.device,
        fix(now - TimeDelta::seconds(10), 58.39, 13.84, None),
        now - TimeDelta::seconds(9),
    )
    .await;
    // Uploaded late: older than the last position but received after it; history, not news.
    store_fix(&app, &f.device, fix(now - TimeDelta::seconds(60), 58.30, 13.80, None), now).await;
    let id = raise(&app, &f, f.wearer, AlarmKind::Sos, now).await;

    let mut events = Events::open(&app, id, cw).await;
    assert_eq!(events.next().await.unwrap().1["lat"], 58.39);
    let received = Utc::now();
    store_fix(&app, &f.device, fix(received, 58.41, 13.86, None), received).await;
    assert_eq!(events.next().await.unwrap().1["lat"], 58.41, "the late upload is not sent as news");
    // Received before the one just sent, but committed after it (a position waiting for its
    // group commit while a device alarm's fix committed directly).
    let earlier = received - TimeDelta::seconds(2);
    store_fix(&app, &f.device, fix(earlier, 58.40, 13.85, None), earlier).await;
    let (kind, late) = events.next().await.unwrap();
    assert_eq!((kind.as_str(), late["lat"].clone()), ("position", json!(58.40)));
    store_fix(&app, &f.device, fix(Utc::now(), 58.42, 13.87, None), Utc::now()).await;
    assert_eq!(events.next().await.unwrap().1["lat"], 58.42, "each fix once, nothing repeated");
}

async fn the_live_stream_ends_promptly_when_the_server_stops(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    let id = sos_after_a_fix(&app, &f).await;

    let mut events = Events::open(&app, id, cw).await;
    assert_eq!(events.next().await.unwrap().0, "position");
    tokio::time::sleep(LIVE_POLL * 3).await;
    let asked = std::time::Instant::now();
    app.stopping.send(true).unwrap();
    let (kind, data) = events.next().await.unwrap();
    assert_eq!((kind.as_str(), data), ("shutdown", json!({ "id": id })));
    assert!(events.next().await.is_none(), "the stream ends");
    assert!(asked.elapsed() < Duration::from_secs(1), "took {:?}", asked.elapsed());
    let (_, alarm) = app.call("GET", &format!("/api/v1/alarms/{id}"), Some(cw), None).await;
    assert_eq!(alarm["state"], "raised", "the alarm stays open for the next server");
}

async fn a_live_client_that_goes_away_leaves_nothing_running(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    let id = sos_after_a_fix(&app, &f).await;
    let handles = Arc::strong_count(&app.state.store);

    let mut events = Events::open(&app, id, cw).await;
    assert_eq!(events.next().await.unwrap().0, "position");
    tokio::time::sleep(LIVE_POLL * 3).await;
    assert!(Arc::strong_count(&app.state.store) > handles, "the open stream holds the store");
    drop(events);
    tokio::time::sleep(LIVE_POLL * 3).await;
    assert_eq!(Arc::strong_count(&app.state.store), handles, "nothing polls for a client that left");
    let (status, _) = app.call("GET", &format!("/api/v1/alarms/{id}"), Some(cw), None).await;
    assert_eq!(status, 200, "the API carries on");
}

async fn push_tokens_are_registered_listed_and_deleted_by_their_owner_only(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let staff = f.token(Role::Staff);
    let body = json!({ "token": "fcm:abc-123", "platform": "android" });
    let (status, created) = app.call("POST", "/api/v1/push-tokens", Some(staff), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["token"].clone(), created["platform"].clone()),
        (json!("fcm:abc-123"), json!("android"))
    );
    let (status, list) = app.call("GET", "/api/v1/push-tokens", Some(staff), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["token"], "fcm:abc-123");

    for bad in [
        json!({ "token": "t", "platform": "windows" }),
        json!({ "token": "", "platform": "ios" }),
        json!({ "token": "x".repeat(4097), "platform": "ios" }),
    ] {
        assert_eq!(app.call("POST", "/api/v1/push-tokens", Some(staff), Some(&bad)).await.0, 422, "{bad}");
    }
    let longest = json!({ "token": "x".repeat(4096), "platform": "ios" });
    assert_eq!(app.call("POST", "/api/v1/push-tokens", Some(staff), Some(&longest)).await.0, 201);

    let (_, cw_list) = app.call("GET", "/api/v1/push-tokens", Some(f.token(Role::Caseworker)), None).await;
    assert_eq!(cw_list, json!([]), "each account sees its own tokens");
    let path = "/api/v1/push-tokens/fcm:abc-123";
    let (status, body) = app.call("DELETE", path, Some(f.token(Role::Caseworker)), None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::NOT_FOUND, json!("push token not found")));
    assert_eq!(app.call("DELETE", path, Some(staff), None).await.0, 204);
    assert_eq!(app.call("DELETE", path, Some(staff), None).await.0, 404);
    let (_, list) = app.call("GET", "/api/v1/push-tokens", Some(staff), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "the other token stays");
}

/// Takes `step` on `id` as `actor` at `at`.
async fn step(app: &App, f: &Fixture, id: Uuid, step: Step, at: DateTime<Utc>) {
    let req = StepRequest { step, actor: Some(f.staff), at, position: None, note: String::new() };
    app.state.store.step_alarm(f.tenant, id, &req).await.unwrap().unwrap();
}

async fn the_report_adds_up_alarms_with_known_times_as_json_and_csv(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let other = app.tenant("Other").await;
    let b = app.wearer(f.tenant).await;
    let base: DateTime<Utc> = "2026-03-02T08:00:00Z".parse().unwrap();
    let at = |secs: i64| base + TimeDelta::seconds(secs);
    let h = 3600;

    let sos = raise(&app, &f, f.wearer, AlarmKind::Sos, at(0)).await;
    step(&app, &f, sos, Step::Acknowledge, at(60)).await;
    step(&app, &f, sos, Step::OnSite, at(600)).await;
    step(&app, &f, sos, Step::Close(Outcome::Assisted), at(900)).await;
    let fall = raise(&app, &f, f.wearer, AlarmKind::Fall, at(h)).await;
    step(&app, &f, fall, Step::Acknowledge, at(h + 120)).await;
    step(&app, &f, fall, Step::OnSite, at(h + 4000)).await;
    step(&app, &f, fall, Step::Close(Outcome::FalseAlarm), at(h + 4100)).await;
    let battery = raise(&app, &f, b, AlarmKind::LowBattery, at(2 * h)).await;
    step(&app, &f, battery, Step::Acknowledge, at(2 * h + 30)).await;
    step(&app, &f, battery, Step::Close(Outcome::FalseAlarm), at(2 * h + 40)).await;
    raise(&app, &f, b, AlarmKind::DeviceOffline, at(3 * h)).await;
    let exit = raise(&app, &f, f.wearer, AlarmKind::ZoneExit, at(5 * h)).await;
    step(&app, &f, exit, Step::Acknowledge, at(5 * h + 45)).await;
    // Outside the period, and another tenant's: not counted.
    raise(&app, &f, f.wearer, AlarmKind::Test, at(-2 * 24 * h)).await;
    raise(&app, &other, other.wearer, AlarmKind::Sos, at(h)).await;

    let cw = f.token(Role::Caseworker);
    let path = "/api/v1/reports/alarms?from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z";
    let (status, r) = app.call("GET", path, Some(cw), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["total"].clone(), r["open"].clone()), (json!(5), json!(2)));
    assert_eq!(r["by_kind"]["sos"], 1);
    assert_eq!(r["by_kind"]["test"], 0);
    assert_eq!(r["by_kind"]["zone_exit"], 1);
    assert_eq!(
        r["by_outcome"],
        json!({ "assisted": 1, "false_alarm": 2, "not_found": 0, "other": 0, "test": 0 })
    );
    assert_eq!(r["false_alarm_share"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(r["technical_share"].as_f64().unwrap(), 0.4);
    let a_name = app.state.store.wearer(f.tenant, f.wearer).await.unwrap().unwrap().fields.name;
    assert_eq!(r["top_wearers"][0], json!({ "id": f.wearer.0, "name": a_name, "alarms": 3 }));
    assert_eq!(
        (r["top_wearers"][1]["id"].clone(), r["top_wearers"][1]["alarms"].clone()),
        (json!(b.0), json!(2))
    );
    assert_eq!(r["time_to_acknowledge_secs"], json!({ "n": 4, "median": 45, "p90": 120 }));
    assert_eq!(r["time_to_on_site_secs"], json!({ "n": 2, "median": 600, "p90": 4000 }));
    assert_eq!(
        r["on_site_overdue"], 2,
        "the late fall, and the zone exit still open a day later (not the offline alert)"
    );

    let empty = "/api/v1/reports/alarms?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z";
    let (_, e) = app.call("GET", empty, Some(cw), None).await;
    assert_eq!((e["total"].clone(), e["false_alarm_share"].clone()), (json!(0), Value::Null));
    assert_eq!(e["time_to_acknowledge_secs"], json!({ "n": 0, "median": null, "p90": null }));

    for (query, headers) in
        [(format!("{path}&format=csv"), &[][..]), (path.to_owned(), &[("accept", "text/csv")][..])]
    {
        let resp = app.raw(&query, cw, headers).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let csv = String::from_utf8(bytes.to_vec()).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "section,key,value");
        assert!(rows.iter().all(|r| r.split(',').count() >= 3), "{csv}");
        for row in [
            "summary,total,5",
            "by_kind,sos,1",
            "by_outcome,false_alarm,2",
            "time_to_acknowledge_secs,median,45",
        ] {
            assert!(rows.contains(&row), "{row} in {csv}");
        }
        assert!(rows.contains(&format!("top_wearers,{a_name} ({}),3", f.wearer.0).as_str()), "{csv}");
    }

    let reversed = "/api/v1/reports/alarms?from=2026-03-03T00:00:00Z&to=2026-03-01T00:00:00Z";
    assert_eq!(app.call("GET", reversed, Some(cw), None).await.0, 422);
    assert_eq!(app.call("GET", "/api/v1/reports/alarms?from=yesterday", Some(cw), None).await.0, 400);
    assert_eq!(app.call("GET", "/api/v1/reports/alarms?format=xml", Some(cw), None).await.0, 400);
    assert_eq!(app.call("GET", "/api/v1/reports/alarms", Some(f.token(Role::Staff)), None).await.0, 403);
    let (status, _) = app.call("GET", "/api/v1/reports/alarms", Some(f.token(Role::TenantAdmin)), None).await;
    assert_eq!(status, 200, "the default period needs no parameters");
}

async fn report_periods_outside_the_years_1970_to_9999_are_refused(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    for (query, field) in [
        ("to=-262143-01-01T00:00:00Z", "to"),
        ("to=%2B262142-01-01T00:00:00Z", "to"),
        ("to=%2B10000-01-01T00:00:00Z", "to"),
        ("from=1969-12-31T23:59:59Z&to=1970-02-01T00:00:00Z", "from"),
        ("from=-0001-01-01T00:00:00Z", "from"),
    ] {
        let (status, body) =
            app.call("GET", &format!("/api/v1/reports/alarms?{query}"), Some(cw), None).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(body["details"]["fields"][field].as_str().unwrap().contains("1970"), "{query}: {body}");
    }
    let beyond = "/api/v1/reports/alarms?to=-262144-01-01T00:00:00Z";
    let (status, body) = app.call("GET", beyond, Some(cw), None).await;
    assert_eq!(status, 400, "beyond what a time can hold: {body}");
    assert!(body["error"].is_string() && body.get("details").is_some(), "{body}");
    let (status, r) = app
        .call(
            "GET",
            "/api/v1/reports/alarms?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
            Some(cw),
            None,
        )
        .await;
    assert_eq!((status, r["total"].clone()), (StatusCode::OK, json!(0)), "{r}");
    let (status, r) = app.call("GET", "/api/v1/reports/alarms?to=1970-01-10T00:00:00Z", Some(cw), None).await;
    assert_eq!((status, r["from"].clone()), (StatusCode::OK, json!("1970-01-01T00:00:00Z")), "{r}");
}

async fn bad_query_parameters_are_a_400_in_the_error_shape(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    for query in ["state=bogus", "kind=flood", "limit=0", "limit=501", "limit=many", "wearer=nobody"] {
        let (status, body) = app.call("GET", &format!("/api/v1/alarms?{query}"), Some(cw), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].is_string() && body.get("details").is_some(), "{query}: {body}");
    }
    for query in ["state=all&limit=500", "state=closed&kind=sos", &format!("wearer={}", f.wearer.0)] {
        assert_eq!(
            app.call("GET", &format!("/api/v1/alarms?{query}"), Some(cw), None).await.0,
            200,
            "{query}"
        );
    }
}
