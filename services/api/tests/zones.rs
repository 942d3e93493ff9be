//! Zone edits reach the evaluator's index without a restart, and only zones with a consent in
//! force covering passive alarms are in it; on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use common::{App, square};
use serde_json::json;
use trygg_store::{Role, Store, on_both_backends};

on_both_backends!(zone_edits_reach_the_index_without_a_restart_and_consent_gates_them);

fn ids_at(app: &App, tenant: trygg_core::TenantId, lon: f64, lat: f64) -> Vec<String> {
    app.state.zones.get(tenant).containing(lon, lat).map(|z| z.id().to_string()).collect()
}

async fn zone_edits_reach_the_index_without_a_restart_and_consent_gates_them(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    let zones = format!("/api/v1/wearers/{}/zones", f.wearer);
    assert!(app.state.zones.get(f.tenant).is_empty(), "nothing indexed before the first write");

    let body = json!({ "name": "Park", "kind": "stay_inside", "geometry": square(13.84, 58.39, 0.01) });
    let (status, created) = app.call("POST", &zones, Some(cw), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let before = app.state.zones.get(f.tenant);
    assert_eq!(ids_at(&app, f.tenant, 13.845, 58.395), [id.as_str()]);
    assert_eq!(
        before.zones_for(&f.device).count(),
        2,
        "the new zone and the fixture's circle apply to the bound watch"
    );

    let moved = json!({ "name": "Park", "kind": "stay_inside", "geometry": square(14.0, 58.0, 0.01) });
    let (status, _) = app.call("PUT", &format!("{zones}/{id}"), Some(cw), Some(&moved)).await;
    assert_eq!(status, 200);
    assert!(ids_at(&app, f.tenant, 13.845, 58.395).is_empty(), "the old place no longer matches");
    assert_eq!(ids_at(&app, f.tenant, 14.005, 58.005), [id.as_str()]);
    assert_eq!(
        before.containing(13.845, 58.395).count(),
        1,
        "an evaluation in flight keeps the index it started with"
    );

    let withdraw = format!("/api/v1/wearers/{}/consents/{}/withdraw", f.wearer, f.consent);
    assert_eq!(app.call("POST", &withdraw, Some(cw), None).await.0, 200);
    assert!(app.state.zones.get(f.tenant).is_empty(), "without consent for passive alarms no zone alarms");
    let (_, zone) = app.call("GET", &format!("{zones}/{id}"), Some(cw), None).await;
    assert_eq!(zone["properties"]["alarming"], false);
    assert_eq!(zone["properties"]["not_alarming_reason"], "no consent in force covers passive alarms");
    let (_, wearer) = app.call("GET", &format!("/api/v1/wearers/{}", f.wearer), Some(cw), None).await;
    assert_eq!(
        (wearer["zones_alarming"].clone(), wearer["consent"]["passive_alarms"].clone()),
        (json!(false), json!(false))
    );

    let consent = json!({ "covers": ["passive_alarms"], "given_by": "decision", "document_ref": "Beslut 7" });
    let consents = format!("/api/v1/wearers/{}/consents", f.wearer);
    assert_eq!(app.call("POST", &consents, Some(cw), Some(&consent)).await.0, 201);
    assert_eq!(app.state.zones.get(f.tenant).len(), 2);
    assert_eq!(app.call("DELETE", &format!("{zones}/{id}"), Some(cw), None).await.0, 204);
    assert!(ids_at(&app, f.tenant, 14.005, 58.005).is_empty());
    assert_eq!(app.state.zones.get(f.tenant).len(), 1);
}
