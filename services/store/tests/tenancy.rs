//! Every query of a tenant's data carries the tenant, also where an id alone would find the row
//! (defence in depth: an id from another tenant reads as nothing), on SQLite and PostgreSQL.

use std::sync::Arc;

use trygg_store::testing::add_user;
use trygg_store::{Responder, ResponderPlan, ResponderTarget, Role, Store, WearerFields, on_both_backends};

on_both_backends!(another_tenants_responder_order_reads_as_empty);

async fn another_tenants_responder_order_reads_as_empty(store: Arc<dyn Store>) {
    let own = store.create_tenant("Own").await.unwrap();
    let other = store.create_tenant("Other").await.unwrap();
    let staff = add_user(&*store, Some(own), Role::Staff, "s@own.se", "S").await;
    let wearer =
        store.add_wearer(own, &WearerFields { name: "W".into(), ..Default::default() }).await.unwrap();
    let plan = ResponderPlan {
        steps: vec![Responder { target: ResponderTarget::User(staff), escalate_after_secs: 60 }],
        alarm_centre_url: None,
    };
    assert!(store.set_responders(own, wearer, &plan).await.unwrap());
    assert_eq!(store.responders(own, wearer).await.unwrap(), plan);
    assert_eq!(
        store.responders(other, wearer).await.unwrap(),
        ResponderPlan::default(),
        "nothing of another tenant"
    );
}
