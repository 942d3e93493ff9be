//! Crash-only alarm path, from outside: when the alarm engine task ends (made to by the hidden
//! test-only fault `--test-fault engine_exit_after_secs:N`), trygg stops acknowledging device
//! alarms, `/readyz` names the engine while the process is still there to ask, and the process
//! exits with a non-zero status after a last log line. Restarted on the same database, it
//! raises every acknowledged SOS exactly once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Trygg, register_worn_device};
use serde_json::{Value, json};
use trygg_core::{DeviceId, TenantId};
use trygg_store::AlarmFilter;
use trygg_store::testing::TestDb;

const FAULT_AFTER_SECS: u64 = 3;

async fn a_dead_engine_ends_the_process_and_acknowledged_alarms_are_raised_once_after_restart(db: TestDb) {
    let (tenant, token) = register_worn_device(db.url(), "Skövde", "sos-watch");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trygg.log");
    let fault = format!("engine_exit_after_secs:{FAULT_AFTER_SECS}");
    let mut server = Trygg::start_logged(db.url(), &["--test-fault", &fault], &log);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let sos_url = server.url("/api/v1/ingest/alarms");
    let started = Instant::now();
    let base = chrono::Utc::now() - chrono::TimeDelta::seconds(30);
    let sos = |n: i64| json!({ "device": "sos-watch", "kind": "sos", "time": base + chrono::TimeDelta::milliseconds(n) });

    // Acknowledged while the engine lives.
    let first = http.post(&sos_url).bearer_auth(&token).json(&sos(0)).send().await.unwrap();
    assert_eq!(first.status(), 201);
    let mut acknowledged: HashSet<i64> = HashSet::from([0]);

    // Keep pressing SOS and asking /readyz until the process is gone.
    let mut engine_named = false;
    let mut refused_alarms = 0;
    let mut n = 1;
    let status = loop {
        if let Some(status) = server.exited() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "trygg did not exit after its engine ended");
        if let Ok(resp) = http.get(server.url("/readyz")).send().await {
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if code == 503 {
                assert!(body["failing"].as_array().unwrap().iter().any(|f| f == "engine"), "{body}");
                assert_eq!(body["tasks"]["engine"]["alive"], false, "{body}");
                engine_named = true;
            } else {
                assert_eq!(code, 200, "{body}");
                assert_eq!(body["tasks"]["engine"]["alive"], true, "{body}");
            }
        }
        if let Ok(resp) = http.post(&sos_url).bearer_auth(&token).json(&sos(n)).send().await {
            match resp.status().as_u16() {
                201 | 200 => {
                    acknowledged.insert(n);
                }
                503 => {
                    assert!(resp.headers().contains_key("retry-after"));
                    refused_alarms += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = started.elapsed();
    assert!(!status.success(), "a dead engine ends the process with a failure status, got {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("engine"), "the last line names the engine: {last:?}");
    eprintln!(
        "engine ended after {FAULT_AFTER_SECS} s; process exited {status} after {exited_after:?}; \
         /readyz named the engine: {engine_named}; {refused_alarms} SOS refused with 503; last line: {last}"
    );

    // Restart without the fault: recovery runs. Stop it, then look at what was raised.
    let restarted = Trygg::start(db.url(), &[]);
    // A device that got 503 resends; on the healthy server that is acknowledged.
    for m in 1..n {
        if !acknowledged.contains(&m) {
            let resp = reqwest::Client::new()
                .post(restarted.url("/api/v1/ingest/alarms"))
                .bearer_auth(&token)
                .json(&sos(m))
                .send()
                .await
                .unwrap();
            assert!([200, 201].contains(&resp.status().as_u16()), "{}", resp.status());
            acknowledged.insert(m);
        }
    }
    let store = db.store().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.pending_device_alarms().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "device alarms still unhandled after restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restarted.terminate().success());

    let device = DeviceId::parse("sos-watch").unwrap();
    let stored = store.device_alarms(&device).await.unwrap();
    assert_eq!(stored.len(), acknowledged.len(), "every acknowledged SOS is stored once");
    let tenant = TenantId::parse(&tenant).unwrap();
    let filter = AlarmFilter { limit: 1000, ..AlarmFilter::default() };
    let alarms = store.alarms(tenant, &filter).await.unwrap();
    let mut raised = 0;
    let mut handled = 0;
    for alarm in &alarms {
        for e in store.alarm_events(tenant, alarm.id).await.unwrap() {
            match e.event.kind.as_str() {
                "raised" => {
                    raised += 1;
                    handled += 1;
                }
                "repeated" => handled += 1,
                _ => {}
            }
        }
    }
    store.close().await;
    assert_eq!(raised, 1, "one SOS alarm, the later presses joined to it");
    assert_eq!(handled, stored.len(), "each stored SOS raised or joined exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_dead_engine_ends_the_process_and_acknowledged_alarms_are_raised_once_after_restart() {
    a_dead_engine_ends_the_process_and_acknowledged_alarms_are_raised_once_after_restart(TestDb::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_dead_engine_ends_the_process_and_acknowledged_alarms_are_raised_once_after_restart() {
    a_dead_engine_ends_the_process_and_acknowledged_alarms_are_raised_once_after_restart(
        TestDb::postgres().await,
    )
    .await;
}
