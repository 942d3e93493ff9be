//! SQLite writers of one process take the write lock in the order they asked for it, each the
//! moment the one before lets go. Left to SQLite's busy handler they would poll for it, sleeping
//! up to 100 ms between tries, and take it in whatever order their sleeps happened to end.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use trygg_core::DeviceAlarmKind;
use trygg_store::testing::{TestDb, add_watch, device_alarm, fixes_back_from};

#[tokio::test]
async fn writers_behind_a_long_commit_take_the_lock_in_the_order_they_asked_for_it() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let device = add_watch(store.as_ref(), tenant, None, "8800000001").await;
    let t0 = Utc::now();

    // A long commit: 50,000 fixes hold the write lock for a good part of a second.
    let long = {
        let (store, batch) = (store.clone(), fixes_back_from(&device, t0, 50_000));
        tokio::spawn(async move { store.insert_fixes(&[batch]).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Eight small writes ask for the lock one after another while the long commit holds it.
    let mut writers = Vec::new();
    for k in 0..8 {
        let store = store.clone();
        let alarm = device_alarm(&device, DeviceAlarmKind::Sos, t0 + TimeDelta::seconds(k), t0);
        writers.push(tokio::spawn(async move { store.insert_device_alarm(&alarm).await }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!long.is_finished(), "the long commit ended before the writers queued: the test proves nothing");

    long.await.unwrap().unwrap();
    let mut ids = Vec::new();
    for writer in writers {
        ids.push(writer.await.unwrap().unwrap().id);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "row ids in the order the writers asked for the lock");
    store.close().await;
}
