//! The directory half of the store (accounts, wearers, consent, bindings, zones, teams,
//! responders, settings, access log, retention), on SQLite **and** PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{DeviceAlarmKind, Fix, TenantId, WearerId};
use trygg_store::testing::{add_user, add_watch, device_alarm, tenant_settings};
use trygg_store::{
    AccessEntry, ConsentGiver, FixBatch, NewConsent, NewDeviceAlarm, NewFix, NewUser, Responder,
    ResponderPlan, ResponderTarget, Role, Store, StoreError, TenantSettings, WearerFields, ZoneFields,
    on_both_backends,
};

on_both_backends!(
    accounts_are_found_by_email_and_emails_are_unique,
    wearers_are_invisible_from_another_tenant,
    consents_round_trip_and_the_first_withdrawal_counts,
    binding_unbinding_and_replacing_devices_keeps_the_history,
    a_bound_device_cannot_be_bound_again_nor_an_unbound_one_unbound,
    zones_round_trip_and_change_only_within_their_tenant,
    teams_list_their_members_and_responders_keep_their_order,
    settings_are_saved_and_replaced,
    the_access_log_lists_newest_first_per_tenant,
    purge_deletes_old_fixes_but_keeps_alarm_fixes_and_honours_tenant_retention,
);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

async fn tenant_with_wearer(store: &Arc<dyn Store>, name: &str) -> (TenantId, WearerId) {
    let tenant = store.create_tenant(name).await.unwrap();
    let wearer = store.create_wearer(tenant, "Astrid").await.unwrap();
    (tenant, wearer)
}

async fn accounts_are_found_by_email_and_emails_are_unique(store: Arc<dyn Store>) {
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let admin = add_user(&*store, None, Role::Admin, "root@example.se", "N").await;
    let cw = add_user(&*store, Some(tenant), Role::Caseworker, "cw@lerum.se", "N").await;
    let found = store.user_by_email("cw@lerum.se").await.unwrap().unwrap();
    assert_eq!((found.id, found.user.tenant, found.user.role), (cw, Some(tenant), Role::Caseworker));
    assert_eq!(store.user_by_email("root@example.se").await.unwrap().unwrap().id, admin);
    assert!(store.user_by_email("nobody@x.se").await.unwrap().is_none());
    let again = NewUser {
        tenant: Some(tenant),
        email: "cw@lerum.se".into(),
        name: "x".into(),
        role: Role::Staff,
        password_hash: "h".into(),
    };
    assert!(matches!(store.add_user(&again).await, Err(StoreError::Conflict("user"))));
    assert_eq!(store.users(Some(tenant)).await.unwrap().len(), 1);
    assert_eq!(store.users(None).await.unwrap().len(), 2);
}

async fn wearers_are_invisible_from_another_tenant(store: Arc<dyn Store>) {
    let (a, wearer) = tenant_with_wearer(&store, "A").await;
    let b = store.create_tenant("B").await.unwrap();
    let fields = WearerFields {
        name: "Astrid A".into(),
        note: "Portkod 1234".into(),
        contact_name: "Bo".into(),
        contact_phone: "+46 70 000".into(),
        team: None,
    };
    assert!(store.update_wearer(a, wearer, &fields).await.unwrap());
    assert_eq!(store.wearer(a, wearer).await.unwrap().unwrap().fields, fields);
    assert!(store.wearer(b, wearer).await.unwrap().is_none());
    assert!(!store.update_wearer(b, wearer, &fields).await.unwrap());
    assert!(!store.deactivate_wearer(b, wearer, now()).await.unwrap());
    assert!(store.wearers(b).await.unwrap().is_empty());
    let at = now();
    assert!(store.deactivate_wearer(a, wearer, at).await.unwrap());
    assert!(store.deactivate_wearer(a, wearer, at + TimeDelta::seconds(5)).await.unwrap());
    assert_eq!(store.wearers(a).await.unwrap()[0].deactivated_at, Some(at), "the first deactivation counts");
}

async fn consents_round_trip_and_the_first_withdrawal_counts(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let cw = add_user(&*store, Some(tenant), Role::Caseworker, "cw@a.se", "N").await;
    let t = now();
    let new = NewConsent {
        wearer,
        positioning: true,
        passive_alarms: false,
        given_by: ConsentGiver::LegalRepresentative,
        document_ref: "Dnr 2026/17".into(),
        valid_from: t,
        valid_until: Some(t + TimeDelta::days(365)),
        recorded_by: cw,
    };
    let id = store.add_consent(tenant, &new).await.unwrap();
    let stored = store.consents(tenant, Some(wearer)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].id, &stored[0].consent, stored[0].withdrawn_at), (id, &new, None));
    assert!(stored[0].in_force_at(t + TimeDelta::days(1)));
    assert!(!stored[0].in_force_at(t + TimeDelta::days(365)));
    let other = store.create_tenant("B").await.unwrap();
    assert!(!store.withdraw_consent(other, wearer, id, t).await.unwrap());
    assert!(store.withdraw_consent(tenant, wearer, id, t + TimeDelta::hours(1)).await.unwrap());
    assert!(store.withdraw_consent(tenant, wearer, id, t + TimeDelta::hours(2)).await.unwrap());
    let stored = store.consents(tenant, None).await.unwrap();
    assert_eq!(stored[0].withdrawn_at, Some(t + TimeDelta::hours(1)));
    assert!(!stored[0].in_force_at(t + TimeDelta::hours(1)));
}

async fn binding_unbinding_and_replacing_devices_keeps_the_history(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let old = add_watch(&*store, tenant, None, "watch-old").await;
    let new = add_watch(&*store, tenant, None, "watch-new").await;
    let t = now();
    store.bind_device(tenant, &old, wearer, t).await.unwrap();
    assert_eq!(
        store.device_auth(&old).await.unwrap().unwrap().wearer,
        Some(wearer),
        "ingest sees the binding"
    );
    let moved = store.replace_device(tenant, &old, &new, t + TimeDelta::seconds(10)).await.unwrap();
    assert_eq!(moved, wearer);
    assert_eq!(store.device(tenant, &old).await.unwrap().unwrap().wearer, None);
    assert_eq!(store.device(tenant, &new).await.unwrap().unwrap().wearer, Some(wearer));
    let history = store.bindings(tenant, wearer).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((&history[0].device, history[0].unbound_at), (&old, Some(t + TimeDelta::seconds(10))));
    assert_eq!((&history[1].device, history[1].unbound_at), (&new, None));
    store.unbind_device(tenant, &new, t + TimeDelta::seconds(20)).await.unwrap();
    assert!(store.bindings(tenant, wearer).await.unwrap().iter().all(|b| b.unbound_at.is_some()));
}

async fn a_bound_device_cannot_be_bound_again_nor_an_unbound_one_unbound(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let (other, other_wearer) = tenant_with_wearer(&store, "B").await;
    let d = add_watch(&*store, tenant, None, "w1").await;
    assert!(matches!(store.unbind_device(tenant, &d, now()).await, Err(StoreError::WrongState(_))));
    store.bind_device(tenant, &d, wearer, now()).await.unwrap();
    assert!(matches!(store.bind_device(tenant, &d, wearer, now()).await, Err(StoreError::WrongState(_))));
    assert!(matches!(
        store.bind_device(other, &d, other_wearer, now()).await,
        Err(StoreError::NotFound("device"))
    ));
    assert!(matches!(store.unbind_device(other, &d, now()).await, Err(StoreError::NotFound("device"))));
    assert!(store.device(other, &d).await.unwrap().is_none());
    assert_eq!(store.devices(tenant).await.unwrap().len(), 1);
}

fn zone(name: &str) -> ZoneFields {
    ZoneFields {
        name: name.into(),
        kind: "stay_inside".into(),
        geometry: r#"{"type":"Point","coordinates":[13.84,58.39]}"#.into(),
        radius_m: Some(150.0),
        schedule: Some(r#"{"tz":"Europe/Stockholm","windows":[]}"#.into()),
    }
}

async fn zones_round_trip_and_change_only_within_their_tenant(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let other = store.create_tenant("B").await.unwrap();
    let t = now();
    let id = store.add_zone(tenant, wearer, &zone("Hemma"), t).await.unwrap();
    let stored = store.zones(tenant, Some(wearer)).await.unwrap();
    assert_eq!((stored[0].id, &stored[0].fields, stored[0].updated_at), (id, &zone("Hemma"), t));
    assert!(store.zones(other, None).await.unwrap().is_empty());
    assert!(!store.update_zone(other, wearer, id, &zone("X"), t).await.unwrap());
    assert!(!store.delete_zone(other, wearer, id).await.unwrap());
    assert!(store.update_zone(tenant, wearer, id, &zone("Natt"), t + TimeDelta::seconds(1)).await.unwrap());
    assert_eq!(store.zones(tenant, None).await.unwrap()[0].fields.name, "Natt");
    assert!(store.delete_zone(tenant, wearer, id).await.unwrap());
    assert!(store.zones(tenant, None).await.unwrap().is_empty());
}

async fn teams_list_their_members_and_responders_keep_their_order(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let s1 = add_user(&*store, Some(tenant), Role::Staff, "s1@a.se", "N").await;
    let s2 = add_user(&*store, Some(tenant), Role::Staff, "s2@a.se", "N").await;
    let night = store.add_team(tenant, "Natt").await.unwrap();
    let day = store.add_team(tenant, "Dag").await.unwrap();
    assert!(matches!(store.add_team(tenant, "Natt").await, Err(StoreError::Conflict("team"))));
    assert!(store.set_team_members(tenant, night, &[s1, s2]).await.unwrap());
    let other = store.create_tenant("B").await.unwrap();
    assert!(!store.set_team_members(other, night, &[]).await.unwrap());
    let teams = store.teams(tenant).await.unwrap();
    assert_eq!(teams.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Dag", "Natt"]);
    assert!(teams[0].members.is_empty());
    let mut both = vec![s1, s2];
    both.sort();
    assert_eq!(teams[1].members, both);
    assert_eq!(teams[0].id, day);

    let plan = ResponderPlan {
        steps: vec![
            Responder { target: ResponderTarget::User(s2), escalate_after_secs: 120 },
            Responder { target: ResponderTarget::Team(night), escalate_after_secs: 300 },
        ],
        alarm_centre_url: Some("https://larmcentral.example/hook".into()),
    };
    assert!(store.set_responders(tenant, wearer, &plan).await.unwrap());
    assert_eq!(store.responders(tenant, wearer).await.unwrap(), plan);
    assert!(!store.set_responders(other, wearer, &ResponderPlan::default()).await.unwrap());
    assert!(store.set_responders(tenant, wearer, &ResponderPlan::default()).await.unwrap());
    assert_eq!(store.responders(tenant, wearer).await.unwrap(), ResponderPlan::default());
}

async fn settings_are_saved_and_replaced(store: Arc<dyn Store>) {
    let tenant = store.create_tenant("A").await.unwrap();
    assert!(store.settings(tenant).await.unwrap().is_none());
    let mut s = tenant_settings();
    store.put_settings(tenant, &s, now()).await.unwrap();
    s.fix_retention_days = 7;
    s.on_site_limit_secs = 1800;
    s.time_zone = "Europe/Helsinki".into();
    s.repeat_join_secs = 60;
    s.fallback_alarm_centre_url = Some("https://larmcentral.example/trygg".into());
    s.supervision = trygg_store::SupervisionSettings {
        battery_rearm_margin_pct: 15,
        quiet_from_hour: 21,
        quiet_until_hour: 6,
        test_alarm_from_hour: 9,
        test_alarm_until_hour: 12,
        report_interval_secs: 600,
        report_interval_fast_secs: 20,
    };
    store.put_settings(tenant, &s, now()).await.unwrap();
    assert_eq!(store.settings(tenant).await.unwrap(), Some(s));
}

async fn the_access_log_lists_newest_first_per_tenant(store: Arc<dyn Store>) {
    let (tenant, wearer) = tenant_with_wearer(&store, "A").await;
    let (other, other_wearer) = tenant_with_wearer(&store, "B").await;
    let cw = add_user(&*store, Some(tenant), Role::Caseworker, "cw@a.se", "N").await;
    let cw_b = add_user(&*store, Some(other), Role::Caseworker, "cw@b.se", "N").await;
    let t = now();
    for (i, reason) in ["first", "second"].into_iter().enumerate() {
        let e = AccessEntry {
            tenant,
            user: cw,
            wearer,
            at: t + TimeDelta::seconds(i as i64),
            what: "positions".into(),
            reason: reason.into(),
        };
        store.log_access(&e).await.unwrap();
    }
    let e = AccessEntry {
        tenant: other,
        user: cw_b,
        wearer: other_wearer,
        at: t,
        what: "positions".into(),
        reason: "b".into(),
    };
    store.log_access(&e).await.unwrap();
    let log = store.access_log(tenant, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(), ["second", "first"]);
    assert_eq!((log[0].user, log[0].wearer), (cw, wearer));
    assert_eq!(store.access_log(tenant, 1).await.unwrap().len(), 1);
}

fn fix(time: DateTime<Utc>) -> NewFix {
    NewFix { fix: Fix::gps(time, 58.39, 13.84), late: false }
}

async fn purge_deletes_old_fixes_but_keeps_alarm_fixes_and_honours_tenant_retention(store: Arc<dyn Store>) {
    let t = now();
    let default_tenant = store.create_tenant("Default").await.unwrap();
    let short_tenant = store.create_tenant("Short").await.unwrap();
    let settings = TenantSettings { fix_retention_days: 5, ..tenant_settings() };
    store.put_settings(short_tenant, &settings, t).await.unwrap();
    let a = add_watch(&*store, default_tenant, None, "a").await;
    let b = add_watch(&*store, short_tenant, None, "b").await;
    let ages = [1, 10, 40];
    for d in [&a, &b] {
        let fixes = ages.iter().map(|days| fix(t - TimeDelta::days(*days))).collect();
        store.insert_fixes(&[FixBatch { device: d.clone(), received_at: t, fixes }]).await.unwrap();
    }
    let old = t - TimeDelta::days(40);
    let alarm = NewDeviceAlarm { fix: Some(fix(old)), ..device_alarm(&a, DeviceAlarmKind::Sos, old, t) };
    store.insert_device_alarm(&alarm).await.unwrap();

    // Default 30 days: a keeps 1 and 10 days, and its 40-day fix because an alarm holds it.
    // Short (5 days): b keeps only the 1-day fix.
    assert_eq!(store.purge_fixes(t, 30).await.unwrap(), 2);
    let kept = |fixes: Vec<trygg_store::StoredFix>| {
        fixes.iter().map(|f| (t - f.fix.time).num_days()).collect::<Vec<_>>()
    };
    assert_eq!(kept(store.recent_fixes(&a, 10).await.unwrap()), [1, 10, 40]);
    assert_eq!(kept(store.recent_fixes(&b, 10).await.unwrap()), [1]);
    assert_eq!(store.purge_fixes(t, 30).await.unwrap(), 0, "a second run finds nothing");
}
