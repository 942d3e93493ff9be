//! SQLite's WAL is copied back into the database file beside the writer: a commit no longer
//! waits for that copy (the writer checkpoints itself only past 100,000 WAL pages), so without
//! the checkpoint loop committed fixes would stay in the WAL file alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use trygg_store::testing::{TestDb, add_watch, fixes_back_from};

fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn committed_fixes_reach_the_database_file_without_another_commit() {
    let db = TestDb::sqlite();
    let file = PathBuf::from(db.url().strip_prefix("sqlite://").unwrap());
    let store = db.store().await;
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let device = add_watch(store.as_ref(), tenant, None, "8800000001").await;
    let before = file_len(&file);
    store.insert_fixes(&[fixes_back_from(&device, Utc::now(), 5_000)]).await.unwrap();

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
