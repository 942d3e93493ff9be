//! SQLite's WAL is copied back into the database file beside the writer: a commit no longer
//! waits for that copy (the writer checkpoints itself only past 100,000 WAL pages), so without
//! the checkpoint loop committed fixes would stay in the WAL file alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use trygg_core::{DeviceId, Fix, FixSource};
use trygg_store::testing::TestDb;
use trygg_store::{FixBatch, NewDevice, NewFix, Protocol};

fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn committed_fixes_reach_the_database_file_without_another_commit() {
    let db = TestDb::sqlite();
    let file = PathBuf::from(db.url().strip_prefix("sqlite://").unwrap());
    let store = db.store().await;
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let device = DeviceId::parse("8800000001").unwrap();
    let new =
        NewDevice { id: device.clone(), tenant, wearer: None, protocol: Protocol::Watch, token_hash: None };
    store.register_device(&new).await.unwrap();
    let t0 = Utc::now();
    let fixes = (0..5_000)
        .map(|i| NewFix {
            fix: Fix { source: FixSource::Unknown, ..Fix::gps(t0 - TimeDelta::seconds(i), 57.7, 11.97) },
            late: false,
        })
        .collect();
    let before = file_len(&file);
    store.insert_fixes(&[FixBatch { device, received_at: t0, fixes }]).await.unwrap();

    // 5,000 fixes are some 100 pages: far below the writer's own checkpoint threshold.
    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&file) < before + (200 << 10) {
        assert!(
            Instant::now() < deadline,
            "the database file is still {} bytes ({before} before the commit): the WAL was not checkpointed",
            file_len(&file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
}
