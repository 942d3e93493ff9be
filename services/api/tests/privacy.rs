//! DESIGN.md's privacy rules seen from the API, on SQLite and PostgreSQL: what staff may know of
//! wearers they do not respond for, and whose positions an alarm shows.

mod common;

use std::sync::Arc;

use common::App;
use serde_json::Value;
use trygg_store::{Role, Store, WearerFields, on_both_backends};

on_both_backends!(
    staff_list_only_the_wearers_they_respond_for,
    answers_with_personal_data_may_not_be_cached,
    a_push_token_of_another_tenants_account_is_refused_not_moved
);

async fn staff_list_only_the_wearers_they_respond_for(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let s = &app.state.store;
    assert!(s.set_team_members(f.tenant, f.team, &[f.staff]).await.unwrap());
    let fields = WearerFields {
        name: "Teamets brukare".into(),
        note: "Portkod 4711".into(),
        team: Some(f.team),
        ..Default::default()
    };
    let mine = s.add_wearer(f.tenant, &fields).await.unwrap();

    let (status, list) = app.call("GET", "/api/v1/wearers", Some(f.token(Role::Staff)), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|w| &w["id"]).collect();
    assert_eq!(ids, [&Value::String(mine.to_string())], "only the team's wearer: {list}");
    assert_eq!(list[0]["note"], "Portkod 4711");

    let (_, all) = app.call("GET", "/api/v1/wearers", Some(f.token(Role::Caseworker)), None).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "caseworkers see every wearer");
}

async fn answers_with_personal_data_may_not_be_cached(store: Arc<dyn Store>) {
    let app = App::new(store);
    let f = app.tenant("Own").await;
    let cw = f.token(Role::Caseworker);
    for path in
        ["/api/v1/wearers".to_owned(), format!("/api/v1/wearers/{}", f.wearer), "/api/v1/alarms".to_owned()]
    {
        let resp = app.raw(&path, cw, &[]).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
    }
    let resp = app.raw("/api/v1/wearers/not-a-wearer", cw, &[]).await;
    assert_eq!(
        (resp.status().as_u16(), &resp.headers()["cache-control"]),
        (404, &"no-store".parse().unwrap())
    );
}

async fn a_push_token_of_another_tenants_account_is_refused_not_moved(store: Arc<dyn Store>) {
    let app = App::new(store);
    let own = app.tenant("Own").await;
    let other = app.tenant("Other").await;
    let token = serde_json::json!({ "token": "fcm-token-of-svens-phone", "platform": "android" });
    let (status, _) =
        app.call("POST", "/api/v1/push-tokens", Some(own.token(Role::Staff)), Some(&token)).await;
    assert_eq!(status, 201);
    let (status, body) =
        app.call("POST", "/api/v1/push-tokens", Some(other.token(Role::Staff)), Some(&token)).await;
    assert_eq!(status, 409, "another municipality cannot take over the phone's alarms: {body}");
    let (_, mine) = app.call("GET", "/api/v1/push-tokens", Some(own.token(Role::Staff)), None).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "still the owner's: {mine}");
    let (status, _) =
        app.call("POST", "/api/v1/push-tokens", Some(own.token(Role::Caseworker)), Some(&token)).await;
    assert_eq!(status, 201, "within the tenant a shared phone moves to whoever logs in");
}
