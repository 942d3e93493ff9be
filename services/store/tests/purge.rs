//! The retention purge deletes a million old fixes while ingest keeps committing, on SQLite
//! **and** PostgreSQL: no commit fails (ingest would answer 503) and the commits' p99 stays
//! under 200 ms. One DELETE over the whole table (what the purge was) held SQLite's only write
//! lock for ~20 s at this size, far past the 5 s busy timeout.
//!
//! `TRYGG_PURGE_TEST_FIXES` changes the number of old fixes (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{DeviceAlarmKind, Fix};
use trygg_store::testing::{TestDb, add_watch, device_alarm};
use trygg_store::{FixBatch, NewDeviceAlarm, NewFix, Store};

/// Devices the old fixes are spread over.
const DEVICES: usize = 20;

fn fix(time: DateTime<Utc>) -> NewFix {
    NewFix { fix: Fix { accuracy_m: Some(10.0), ..Fix::gps(time, 58.39, 13.84) }, late: false }
}

async fn purge_while_ingest_runs(store: Arc<dyn Store>) {
    let total: usize =
        std::env::var("TRYGG_PURGE_TEST_FIXES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tenant = store.create_tenant("Skövde").await.unwrap();
    let mut devices = Vec::new();
    for i in 0..=DEVICES {
        devices.push(add_watch(&*store, tenant, None, &format!("watch-{i}")).await);
    }
    let live = devices.pop().unwrap();
    // Old fixes, one a second, 40 to 40+ days ago: past the default 30 days' retention.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let start = now - TimeDelta::days(40) - TimeDelta::seconds((total / DEVICES) as i64);
    let per_device = total / DEVICES;
    for device in &devices {
        for chunk in (0..per_device).collect::<Vec<_>>().chunks(5000) {
            let fixes = chunk.iter().map(|&s| fix(start + TimeDelta::seconds(s as i64))).collect();
            let batch = FixBatch { device: device.clone(), received_at: now, fixes };
            store.insert_fixes(&[batch]).await.unwrap();
        }
    }
    // One old SOS whose fix must stay.
    let kept = start + TimeDelta::seconds(7);
    let sos =
        NewDeviceAlarm { fix: Some(fix(kept)), ..device_alarm(&devices[0], DeviceAlarmKind::Sos, kept, now) };
    store.insert_device_alarm(&sos).await.unwrap();

    let purging = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let purged = store.purge_fixes(Utc::now(), 30).await.unwrap();
            (purged, started.elapsed())
        })
    };
    // Ingest: a commit of 20 fixes every 5 ms, as a group committer under light load does.
    let mut latencies = Vec::new();
    let mut t = Utc::now();
    while !purging.is_finished() {
        let fixes = (0..20).map(|i| fix(t + TimeDelta::milliseconds(i))).collect();
        t += TimeDelta::milliseconds(20);
        let batch = FixBatch { device: live.clone(), received_at: Utc::now(), fixes };
        let started = Instant::now();
        store.insert_fixes(&[batch]).await.expect("a commit during the purge (ingest would answer 503)");
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (purged, took) = purging.await.unwrap();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100).max(1) - 1];
    eprintln!(
        "purged {purged} fixes in {took:?}; {} commits meanwhile, p99 {p99:?}, max {:?}",
        latencies.len(),
        latencies.last().unwrap()
    );
    assert_eq!(purged as usize, per_device * DEVICES - 1, "every old fix but the SOS's");
    assert!(p99 < Duration::from_millis(200), "p99 commit latency during the purge: {p99:?}");
    let left = store.fixes_between(&devices[0], start - TimeDelta::days(1), None, 10).await.unwrap();
    assert_eq!(left.iter().map(|f| f.fix.time).collect::<Vec<_>>(), [kept], "the SOS's fix stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_million_old_fixes_are_purged_while_ingest_keeps_committing() {
    let db = TestDb::sqlite();
    purge_while_ingest_runs(db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_million_old_fixes_are_purged_while_ingest_keeps_committing() {
    let db = TestDb::postgres().await;
    purge_while_ingest_runs(db.store().await).await;
}
