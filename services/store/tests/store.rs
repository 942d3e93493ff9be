//! The store's behaviour, checked against SQLite **and** PostgreSQL with the same test bodies.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{DeviceAlarmKind, DeviceId, Fix, FixSource, TenantId};
use trygg_store::{
    DeviceHeard, FixBatch, NewDevice, NewDeviceAlarm, NewFix, Protocol, Store, StoreError, token,
};

use trygg_store::on_both_backends;
use trygg_store::testing::device_alarm;

on_both_backends!(
    a_registered_device_authenticates_with_its_token_hash,
    a_device_id_cannot_be_registered_in_two_tenants,
    a_device_for_an_unknown_tenant_is_refused,
    fixes_round_trip_with_every_field,
    resent_fixes_are_stored_once_and_counted_as_duplicates,
    one_group_commit_reports_new_rows_per_batch,
    large_batches_are_split_into_several_statements,
    many_one_fix_requests_across_statements_keep_their_own_counts,
    a_resent_device_alarm_returns_the_stored_row,
    a_device_alarm_stores_its_fix_too,
    tenant_names_are_unique,
    devices_heard_together_keep_each_devices_latest_time_and_battery,
    fixes_received_since_come_in_the_order_received_page_by_page,
);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn fix(time: DateTime<Utc>, lat: f64) -> NewFix {
    NewFix { fix: Fix { source: FixSource::Unknown, ..Fix::gps(time, lat, 11.97) }, late: false }
}

async fn device(store: &Arc<dyn Store>, id: &str) -> (TenantId, DeviceId) {
    let tenant = store.create_tenant(&format!("kommun-{id}")).await.unwrap();
    let id = DeviceId::parse(id).unwrap();
    store
        .register_device(&NewDevice {
            id: id.clone(),
            tenant,
            wearer: None,
            protocol: Protocol::Native,
            token_hash: Some(token::hash("secret")),
        })
        .await
        .unwrap();
    (tenant, id)
}

fn batch(device: &DeviceId, fixes: Vec<NewFix>) -> FixBatch {
    FixBatch { device: device.clone(), received_at: t0(), fixes }
}

async fn a_registered_device_authenticates_with_its_token_hash(store: Arc<dyn Store>) {
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let wearer = store.create_wearer(tenant, "Astrid").await.unwrap();
    let id = DeviceId::parse("863921034567890").unwrap();
    let new = NewDevice {
        id: id.clone(),
        tenant,
        wearer: Some(wearer),
        protocol: Protocol::Native,
        token_hash: Some(token::hash("t")),
    };
    store.register_device(&new).await.unwrap();
    let auth = store.device_auth(&id).await.unwrap().expect("device is found");
    assert_eq!(auth.tenant, tenant);
    assert_eq!(auth.wearer, Some(wearer));
    assert_eq!(auth.protocol, Protocol::Native);
    assert!(token::verify("t", auth.token_hash.as_deref().unwrap()));
    assert!(store.device_auth(&DeviceId::parse("other").unwrap()).await.unwrap().is_none());
}

async fn a_device_id_cannot_be_registered_in_two_tenants(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "w1").await;
    let other = store.create_tenant("Other kommun").await.unwrap();
    let again = NewDevice { id, tenant: other, wearer: None, protocol: Protocol::Watch, token_hash: None };
    assert!(matches!(store.register_device(&again).await, Err(StoreError::Conflict("device"))));
}

async fn a_device_for_an_unknown_tenant_is_refused(store: Arc<dyn Store>) {
    let new = NewDevice {
        id: DeviceId::parse("w2").unwrap(),
        tenant: TenantId::new(),
        wearer: None,
        protocol: Protocol::Gt06,
        token_hash: None,
    };
    assert!(matches!(store.register_device(&new).await, Err(StoreError::NotFound(_))));
}

async fn tenant_names_are_unique(store: Arc<dyn Store>) {
    store.create_tenant("Skövde").await.unwrap();
    assert!(matches!(store.create_tenant("Skövde").await, Err(StoreError::Conflict("tenant"))));
}

async fn fixes_round_trip_with_every_field(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "d1").await;
    let full = NewFix {
        fix: Fix {
            time: t0(),
            lat: 57.708_870_123,
            lon: -11.974_560_456,
            accuracy_m: Some(7.5),
            speed_mps: Some(1.25),
            course_deg: Some(359.5),
            altitude_m: Some(-3.0),
            battery_pct: Some(100),
            source: FixSource::Wifi,
        },
        late: true,
    };
    let sparse = fix(t0() - TimeDelta::seconds(60), 57.0);
    let received_at = t0() + TimeDelta::milliseconds(250);
    let fixes = FixBatch { device: id.clone(), received_at, fixes: vec![full.clone(), sparse.clone()] };
    assert_eq!(store.insert_fixes(&[fixes]).await.unwrap(), vec![2]);
    let stored = store.recent_fixes(&id, 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].fix, full.fix, "newest first, every field intact");
    assert!(stored[0].late);
    assert_eq!(stored[1].fix, sparse.fix);
    assert!(!stored[1].late);
    assert_eq!(stored[0].received_at, received_at);
}

async fn resent_fixes_are_stored_once_and_counted_as_duplicates(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "d1").await;
    let fixes: Vec<_> = (0..5).map(|i| fix(t0() - TimeDelta::seconds(i), 57.0)).collect();
    assert_eq!(store.insert_fixes(&[batch(&id, fixes[..3].to_vec())]).await.unwrap(), vec![3]);
    assert_eq!(store.insert_fixes(&[batch(&id, fixes.clone())]).await.unwrap(), vec![2]);
    assert_eq!(store.recent_fixes(&id, 100).await.unwrap().len(), 5);
}

async fn one_group_commit_reports_new_rows_per_batch(store: Arc<dyn Store>) {
    let (_, a) = device(&store, "a").await;
    let (_, b) = device(&store, "b").await;
    let t = t0();
    let batches = [
        batch(&a, vec![fix(t, 1.0), fix(t - TimeDelta::seconds(1), 1.0)]),
        batch(&b, vec![fix(t, 2.0)]),
        batch(&a, vec![fix(t, 1.0)]),
    ];
    assert_eq!(store.insert_fixes(&batches).await.unwrap(), vec![2, 1, 0]);
    assert_eq!(store.recent_fixes(&b, 10).await.unwrap()[0].fix.lat, 2.0);
}

async fn large_batches_are_split_into_several_statements(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "big").await;
    let fixes: Vec<_> = (0..2_500).map(|i| fix(t0() - TimeDelta::seconds(i), 57.0)).collect();
    assert_eq!(store.insert_fixes(&[batch(&id, fixes)]).await.unwrap(), vec![2_500]);
    assert_eq!(store.recent_fixes(&id, 5_000).await.unwrap().len(), 2_500);
}

/// A group commit of watch frames: a thousand requests of one fix each, from several devices,
/// written in a few multi-row statements; a resend in the same group (even one split off into
/// another statement) or of an earlier group counts as new for nobody after its first request.
async fn many_one_fix_requests_across_statements_keep_their_own_counts(store: Arc<dyn Store>) {
    let mut devices = Vec::new();
    for name in ["w0", "w1", "w2"] {
        devices.push(device(&store, name).await.1);
    }
    let t = t0();
    let at = |i: i64| t - TimeDelta::seconds(i / 3);
    let earlier = batch(&devices[0], vec![fix(at(600), 0.5)]);
    assert_eq!(store.insert_fixes(&[earlier]).await.unwrap(), vec![1]);
    let mut batches: Vec<FixBatch> =
        (0..1_200).map(|i| batch(&devices[i as usize % 3], vec![fix(at(i), 57.0)])).collect();
    batches.push(batch(&devices[0], vec![fix(at(0), 57.0)]));
    batches.push(batch(&devices[1], vec![fix(at(1), 57.0), fix(t + TimeDelta::seconds(1), 57.0)]));
    let counts = store.insert_fixes(&batches).await.unwrap();
    let mut expected = vec![1; 1_200];
    expected[600] = 0;
    expected.extend([0, 1]);
    assert_eq!(counts, expected);
    for d in &devices {
        let stored = store.recent_fixes(d, 1_000).await.unwrap().len();
        assert_eq!(stored, 400 + usize::from(d == &devices[1]), "{d}");
    }
}

fn alarm(device: &DeviceId, time: DateTime<Utc>, fix: Option<NewFix>) -> NewDeviceAlarm {
    NewDeviceAlarm { fix, ..device_alarm(device, DeviceAlarmKind::Sos, time, t0()) }
}

async fn a_resent_device_alarm_returns_the_stored_row(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "d1").await;
    let t = t0();
    let first = store.insert_device_alarm(&alarm(&id, t, None)).await.unwrap();
    assert!(!first.duplicate);
    let again = store.insert_device_alarm(&alarm(&id, t, None)).await.unwrap();
    assert_eq!(again.id, first.id);
    assert!(again.duplicate);
    let later = store.insert_device_alarm(&alarm(&id, t + TimeDelta::seconds(30), None)).await.unwrap();
    assert!(!later.duplicate);
    let stored = store.device_alarms(&id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].kind, DeviceAlarmKind::Sos);
    assert_eq!(stored[0].time, t);
}

async fn a_device_alarm_stores_its_fix_too(store: Arc<dyn Store>) {
    let (_, id) = device(&store, "d1").await;
    let t = t0();
    store.insert_device_alarm(&alarm(&id, t, Some(fix(t, 58.0)))).await.unwrap();
    assert_eq!(store.device_alarms(&id).await.unwrap()[0].fix_time, Some(t));
    assert_eq!(store.recent_fixes(&id, 1).await.unwrap()[0].fix.lat, 58.0);
    // A resend with the same fix neither fails on the fix nor duplicates it.
    assert!(store.insert_device_alarm(&alarm(&id, t, Some(fix(t, 58.0)))).await.unwrap().duplicate);
    assert_eq!(store.recent_fixes(&id, 10).await.unwrap().len(), 1);
}

/// Keep-alives of many watches are recorded in one statement: each device ends with its latest
/// time and the latest battery it reported, whatever order they came in; a device not named
/// keeps its own.
async fn devices_heard_together_keep_each_devices_latest_time_and_battery(store: Arc<dyn Store>) {
    let (tenant, a) = device(&store, "ka").await;
    let b = DeviceId::parse("kb").unwrap();
    let c = DeviceId::parse("kc").unwrap();
    for id in [&b, &c] {
        let new =
            NewDevice { id: id.clone(), tenant, wearer: None, protocol: Protocol::Watch, token_hash: None };
        store.register_device(&new).await.unwrap();
    }
    let t = t0();
    store.device_heard(&c, t, Some(55)).await.unwrap();
    let heard = |device: &DeviceId, secs: i64, battery_pct: Option<u8>| DeviceHeard {
        device: device.clone(),
        at: t + TimeDelta::seconds(secs),
        battery_pct,
    };
    let many: Vec<DeviceHeard> = (0..200)
        .map(|i| heard(if i % 2 == 0 { &a } else { &b }, i, (i < 150).then_some(i as u8 % 100)))
        .chain([heard(&a, 5, None)])
        .collect();
    store.devices_heard(&many).await.unwrap();
    let status = store.device_statuses(tenant, None).await.unwrap();
    let of = |d: &DeviceId| {
        let s = status.iter().find(|s| &s.id == d).unwrap();
        (s.last_heard_at, s.last_battery_pct)
    };
    assert_eq!(of(&a), (Some(t + TimeDelta::seconds(198)), Some(48)));
    assert_eq!(of(&b), (Some(t + TimeDelta::seconds(199)), Some(49)));
    assert_eq!(of(&c), (Some(t), Some(55)), "a device not heard keeps its own");
}

/// The engine's catch-up reads fixes by the time received: only those received since `since`,
/// in that order (ties by device, then fix time, so a late upload comes when it arrived), each
/// with its device's tenant, and page by page with every row once.
async fn fixes_received_since_come_in_the_order_received_page_by_page(store: Arc<dyn Store>) {
    let (ta, a) = device(&store, "ra").await;
    let (tb, b) = device(&store, "rb").await;
    let r = t0();
    let secs = TimeDelta::seconds;
    let request = |device: &DeviceId, received: i64, fixes: Vec<NewFix>| FixBatch {
        device: device.clone(),
        received_at: r + secs(received),
        fixes,
    };
    let batches = [
        request(&a, -600, vec![fix(r - secs(700), 1.0)]),
        request(&b, 0, vec![fix(r - secs(10), 2.0), fix(r - secs(9), 2.0)]),
        request(&a, 0, vec![fix(r - secs(5), 1.0)]),
        request(&a, 1, vec![fix(r - secs(20), 1.0)]),
    ];
    store.insert_fixes(&batches).await.unwrap();

    let (mut read, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = store.fixes_received_since(r - secs(60), after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        after = page.last().cloned();
        read.extend(page);
    }
    let keys: Vec<_> = read.iter().map(|f| (f.device.as_str(), f.fix.time, f.received_at)).collect();
    let expected = [
        ("ra", r - secs(5), r),
        ("rb", r - secs(10), r),
        ("rb", r - secs(9), r),
        ("ra", r - secs(20), r + secs(1)),
    ];
    assert_eq!(keys, expected, "not the fix received 10 minutes ago");
    assert_eq!(pages, 2);
    assert_eq!((read[0].tenant, read[1].tenant, read[0].wearer), (ta, tb, None));
}
