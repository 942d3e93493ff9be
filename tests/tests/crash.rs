//! The promise behind every ack: a fix acknowledged to a device is in the database, even if
//! trygg is killed with SIGKILL in the middle of a stream of requests.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Trygg, fix_at, register_native_device};
use serde_json::json;
use trygg_core::DeviceId;
use trygg_store::testing::TestDb;

const CLIENTS: i64 = 8;
const FIXES_PER_REQUEST: i64 = 5;

async fn acknowledged_fixes_survive_sigkill(db: TestDb) {
    let token = register_native_device(db.url(), "Kommun", "crash-watch");
    // A longer group-commit window keeps more fixes in flight (received, not yet committed,
    // not yet acknowledged) at the moment of the kill: the case an early ack would get wrong.
    let server = Trygg::start(db.url(), &["--commit-max-delay-ms", "20"]);
    let url = server.url("/api/v1/ingest/positions");
    let acked: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let base_ms = chrono::Utc::now().timestamp_millis() - 60_000;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, token, acked) = (url.clone(), token.clone(), acked.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                // Bounded: at most 10,000 requests per client, and it stops at the first failure.
                for request in 0..10_000 {
                    let seqs: Vec<i64> = (0..FIXES_PER_REQUEST).map(|i| (request * CLIENTS + client) * FIXES_PER_REQUEST + i).collect();
                    let body = json!({ "device": "crash-watch", "fixes": seqs.iter().map(|s| fix_at(base_ms, *s)).collect::<Vec<_>>() });
                    match http.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(resp) if resp.status() == 200 => acked.lock().unwrap().extend(seqs),
                        _ => return,
                    }
                }
            })
        })
        .collect();

    // Let the stream run, then kill in mid-flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 2_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 500, "the stream was running when killed ({} acked)", acked.len());

    // Restart on the same database (recovery runs), stop it, then look at what is stored.
    let restarted = Trygg::start(db.url(), &[]);
    assert!(restarted.terminate().success());
    let store = db.store().await;
    let stored = store.recent_fixes(&DeviceId::parse("crash-watch").unwrap(), 1_000_000).await.unwrap();
    store.close().await;
    let stored: HashSet<i64> = stored.iter().map(|f| f.fix.time.timestamp_millis() - base_ms).collect();
    let lost: Vec<_> = acked.difference(&stored).take(10).collect();
    assert!(lost.is_empty(), "{} acknowledged fixes lost, e.g. {lost:?}", acked.difference(&stored).count());
    eprintln!(
        "acknowledged {} fixes before SIGKILL; all stored ({} stored in total)",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_fixes_survive_sigkill() {
    acknowledged_fixes_survive_sigkill(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_fixes_survive_sigkill() {
    acknowledged_fixes_survive_sigkill(TestDb::postgres().await).await;
}
