//! The zone dry run: a zone not yet saved, run with the real exit policy and schedule over the
//! wearer's stored fixes of the last week, answers the events it would have raised — and only
//! them; on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::{App, Fixture, fix, store_fixes};
use serde_json::{Value, json};
use trygg_core::DeviceId;
use trygg_store::{Role, Store, on_both_backends};

on_both_backends!(
    a_dry_run_answers_the_exits_and_returns_the_zone_would_have_raised_from_the_wearers_fixes_only,
    a_keep_out_zone_and_a_schedule_are_run_as_the_engine_would,
    a_dry_run_is_for_editors_of_the_tenant_with_a_valid_zone_and_positioning_consent
);

/// Home, and a point about 500 m north of it.
const HOME: (f64, f64) = (58.39, 13.84);
const AWAY: (f64, f64) = (58.3945, 13.84);

async fn store_walk(app: &App, device: &DeviceId, walk: &[(DateTime<Utc>, (f64, f64))]) {
    let fixes = walk.iter().map(|&(time, (lat, lon))| fix(time, lat, lon, Some(10.0))).collect();
    store_fixes(app, device, fixes, Utc::now()).await;
}

/// A walk a minute a fix: home, home, out, out, out, home, home, starting at `t0`.
fn walk(t0: DateTime<Utc>) -> Vec<(DateTime<Utc>, (f64, f64))> {
    [HOME, HOME, AWAY, AWAY, AWAY, HOME, HOME]
        .into_iter()
        .enumerate()
        .map(|(i, p)| (t0 + TimeDelta::minutes(i as i64), p))
        .collect()
}

fn circle(kind: &str, (lat, lon): (f64, f64), schedule: Option<Value>) -> Value {
    let mut zone = json!({ "name": "Hemma", "kind": kind, "radius_m": 100,
        "geometry": { "type": "Point", "coordinates": [lon, lat] } });
    if let Some(s) = schedule {
        zone["schedule"] = s;
    }
    zone
}

fn events(run: &Value) -> Vec<(String, DateTime<Utc>)> {
    run["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["time"].as_str().unwrap().parse().unwrap()))
        .collect()
}

fn at_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap()
}

async fn dry_run(app: &App, f: &Fixture, token: &str, body: &Value) -> (u16, Value) {
    let path = format!("/api/v1/wearers/{}/zones/dry-run", f.wearer);
    let (status, run) = app.call("POST", &path, Some(token), Some(body)).await;
    (status.as_u16(), run)
}

async fn a_dry_run_answers_the_exits_and_returns_the_zone_would_have_raised_from_the_wearers_fixes_only(
    store: Arc<dyn Store>,
) {
    let app = App::new(store);
    let f = app.tenant("Skövde").await;
    let t0 = at_second(Utc::now() - TimeDelta::hours(3));
    store_walk(&app, &f.device, &walk(t0)).await;
    // The same walk before the watch was bound to the wearer (a day ago), and by another wearer's
    // watch: neither is this wearer's, so neither counts.
    store_walk(&app, &f.device, &walk(t0 - TimeDelta::hours(30))).await;
    let other = app.wearer(f.tenant).await;
    let others_watch = app.device(f.tenant, Some(other)).await;
    store_walk(&app, &others_watch, &walk(t0 + TimeDelta::minutes(30))).await;

    let (status, run) =
        dry_run(&app, &f, f.token(Role::Caseworker), &circle("stay_inside", HOME, None)).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        events(&run),
        [("exit".to_owned(), t0 + TimeDelta::minutes(3)), ("return".to_owned(), t0 + TimeDelta::minutes(6))],
        "confirmed by the second fix on the other side, as the engine decides: {run}"
    );
    assert_eq!(run["fixes_considered"], 7, "{run}");
    let exit = &run["events"][0];
    assert_eq!((exit["lat"].as_f64(), exit["lon"].as_f64()), (Some(AWAY.0), Some(AWAY.1)));
    let mut keys: Vec<&str> = run.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["events", "fixes_considered", "from", "to", "truncated"], "no fixes but the events");

    let log = app.state.store.access_log(f.tenant, 100).await.unwrap();
    let caseworker = f.tokens.iter().find(|(r, _)| *r == Role::Caseworker).unwrap().1.0;
    assert!(
        log.iter().any(|e| e.what == "zone_dry_run" && e.user == caseworker && e.wearer == f.wearer),
        "the read of positions is in the access log: {log:?}"
    );
}

async fn a_keep_out_zone_and_a_schedule_are_run_as_the_engine_would(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Skövde").await;
    let t0 = at_second(Utc::now() - TimeDelta::hours(3));
    store_walk(&app, &f.device, &walk(t0)).await;
    let cw = f.token(Role::Caseworker);

    let (status, run) = dry_run(&app, &f, cw, &circle("keep_out", AWAY, None)).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(events(&run), [("enter".to_owned(), t0 + TimeDelta::minutes(3))], "{run}");

    // Active only for an hour that starts six hours after the walk (the tenant's time zone).
    let local = t0.with_timezone(&chrono_tz::Europe::Stockholm);
    let from = (local.hour() + 6) % 24;
    let window = json!({ "windows": [{ "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "from": format!("{from:02}:00"), "to": format!("{:02}:00", (from + 1) % 24) }] });
    let (status, run) = dry_run(&app, &f, cw, &circle("stay_inside", HOME, Some(window))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(events(&run), [], "the zone was not active during the walk: {run}");
}

async fn a_dry_run_is_for_editors_of_the_tenant_with_a_valid_zone_and_positioning_consent(
    store: Arc<dyn Store>,
) {
    let app = App::new(store);
    let f = app.tenant("Skövde").await;
    let other = app.tenant("Mariestad").await;
    let zone = circle("stay_inside", HOME, None);

    let (status, _) = dry_run(&app, &other, f.token(Role::Caseworker), &zone).await;
    assert_eq!(status, 404, "another tenant's wearer is not found");
    assert_eq!(dry_run(&app, &f, f.token(Role::TenantAdmin), &zone).await.0, 200);
    assert_eq!(dry_run(&app, &f, f.token(Role::Staff), &zone).await.0, 403);

    let (lon, lat) = (HOME.1, HOME.0);
    let bowtie = json!({ "name": "Fel", "kind": "stay_inside", "geometry": { "type": "Polygon",
        "coordinates": [[[lon, lat], [lon + 0.01, lat + 0.01], [lon + 0.01, lat], [lon, lat + 0.01], [lon, lat]]] } });
    let (status, answer) = dry_run(&app, &f, f.token(Role::Caseworker), &bowtie).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["details"]["fields"]["geometry"].is_string(), "{answer}");

    let unconsented = app.wearer(f.tenant).await;
    app.device(f.tenant, Some(unconsented)).await;
    let path = format!("/api/v1/wearers/{unconsented}/zones/dry-run");
    let (status, answer) = app.call("POST", &path, Some(f.token(Role::Caseworker)), Some(&zone)).await;
    assert_eq!(status, 409, "no consent covers positioning: {answer}");
}
