//! The tenant's push settings: what pushes may carry and the alarm-centre webhook's key, which
//! is stored but never shown again; on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use common::App;
use serde_json::json;
use trygg_store::{Role, Store, on_both_backends};

on_both_backends!(push_settings_keep_the_webhook_key_secret_and_validate_it);

async fn push_settings_keep_the_webhook_key_secret_and_validate_it(store: Arc<dyn Store>) {
    let app = App::new(store.clone());
    let f = app.tenant("Own").await;
    let admin = f.token(Role::TenantAdmin);
    let (status, shown) = app.call("GET", "/api/v1/settings/push", Some(admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown, json!({ "wearer_name_in_push": false, "alarm_centre_secret_set": false }));

    let key = "a-webhook-signing-key-of-forty-characters";
    let body = json!({ "alarm_centre_secret": key, "wearer_name_in_push": true });
    let (status, shown) = app.call("PUT", "/api/v1/settings/push", Some(admin), Some(&body)).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown, json!({ "wearer_name_in_push": true, "alarm_centre_secret_set": true }));
    assert!(!shown.to_string().contains(key), "the key is never sent back");
    let stored = store.push_settings(f.tenant).await.unwrap();
    assert_eq!(stored.alarm_centre_secret.as_deref(), Some(key), "the worker signs with it");

    let (status, err) = app
        .call("PUT", "/api/v1/settings/push", Some(admin), Some(&json!({ "alarm_centre_secret": "short" })))
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["details"]["fields"]["alarm_centre_secret"].is_string(), "{err}");
    let (status, _) = app
        .call("PUT", "/api/v1/settings/push", Some(admin), Some(&json!({ "alarm_centre_secret": "" })))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        store.push_settings(f.tenant).await.unwrap().alarm_centre_secret,
        None,
        "an empty key removes it"
    );
    assert!(store.push_settings(f.tenant).await.unwrap().wearer_name_in_push, "left out, kept");
}
