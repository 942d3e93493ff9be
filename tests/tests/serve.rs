//! `trygg serve` as an operator and a device see it: over HTTP, on SQLite and PostgreSQL.

mod common;

use common::{Trygg, cli, fix_at, register_native_device};
use serde_json::{Value, json};
use trygg_store::testing::TestDb;

async fn ingests_over_http_reports_metrics_and_stops_on_sigterm(db: TestDb) {
    let token = register_native_device(db.url(), "Skövde kommun", "watch-1");
    let server = Trygg::start(db.url(), &[]);
    let http = reqwest::Client::new();

    let health: Value = http.get(server.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let now = chrono::Utc::now().timestamp_millis();
    let body = json!({ "device": "watch-1", "fixes": [fix_at(now, 0), fix_at(now, 1000)] });
    let resp = http
        .post(server.url("/api/v1/ingest/positions"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 2);

    let sos = json!({ "device": "watch-1", "kind": "sos", "time": chrono::Utc::now() });
    let resp =
        http.post(server.url("/api/v1/ingest/alarms")).bearer_auth(&token).json(&sos).send().await.unwrap();
    assert_eq!(resp.status(), 201);

    let bad = http
        .post(server.url("/api/v1/ingest/positions"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let missing = http.get(server.url("/api/v1/nothing-here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.json::<Value>().await.unwrap()["error"].is_string());

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for expected in [
        "trygg_ingest_fixes_committed_total 2",
        "trygg_ingest_alarms_received_total{kind=\"sos\"} 1",
        "trygg_ingest_requests_rejected_total{reason=\"unauthenticated\"} 1",
        "trygg_ingest_commit_seconds_count",
    ] {
        assert!(metrics.contains(expected), "metrics lack {expected}:\n{metrics}");
    }

    let status = server.terminate();
    assert!(status.success(), "SIGTERM ends serve with status 0, got {status}");
    let store = db.store().await;
    let device = trygg_core::DeviceId::parse("watch-1").unwrap();
    assert_eq!(store.recent_fixes(&device, 10).await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test]
async fn sqlite_serve_ingests_over_http_and_stops_on_sigterm() {
    ingests_over_http_reports_metrics_and_stops_on_sigterm(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_serve_ingests_over_http_and_stops_on_sigterm() {
    ingests_over_http_reports_metrics_and_stops_on_sigterm(TestDb::postgres().await).await;
}

#[test]
fn invalid_configuration_exits_64_with_one_line() {
    for args in [
        &["serve", "--http-bind", "not-an-address"][..],
        &["serve", "--database-url", "mysql://localhost/trygg"],
        &["serve", "--max-batch-fixes", "0"],
        &["serve", "--late-after-secs", "900", "--max-fix-age-secs", "600"],
        &["serve", "--sqlite-synchronous", "off"],
        &["serve", "--no-such-flag"],
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?} explains itself in one line: {stderr}");
    }
}

#[test]
fn an_unusable_setting_exits_64_naming_it() {
    for (args, named) in [
        (&["--base-map", "xyz", "--base-map-url", "https://t.example/{z}/{x}.png"][..], "TRYGG_BASE_MAP_URL"),
        (
            &["--base-map", "style", "--base-map-url", "https://s.example/style.json"],
            "TRYGG_BASE_MAP_ATTRIBUTION",
        ),
        (&["--base-map", "osm"], "--base-map"),
        (&["--node-name", " "], "TRYGG_NODE_NAME"),
    ] {
        let out = std::process::Command::new(common::BIN)
            .arg("serve")
            .args(args)
            .env("TRYGG_JWT_SECRET", "a-signing-key-long-enough-for-hs256-tokens")
            .env("TRYGG_DATABASE_URL", "sqlite://never-opened.db")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} names {named}: {stderr}");
    }
}

#[test]
fn environment_variables_configure_serve_too() {
    let out = std::process::Command::new(common::BIN)
        .arg("serve")
        .env("TRYGG_HTTP_BIND", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn a_device_id_cannot_be_registered_in_a_second_tenant() {
    let db = TestDb::sqlite();
    register_native_device(db.url(), "Lerum", "imei-1");
    let other = common::cli_ok(&["tenant", "create", "--database-url", db.url(), "Alingsås"]);
    let out =
        cli(&["device", "register", "--database-url", db.url(), "--tenant", &other, "--device", "imei-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("device already exists"));
}

#[test]
fn migrate_prepares_an_empty_database() {
    let db = TestDb::sqlite();
    assert_eq!(common::cli_ok(&["migrate", "--database-url", db.url()]), "migrations applied");
    // And is harmless to repeat.
    assert_eq!(common::cli_ok(&["migrate", "--database-url", db.url()]), "migrations applied");
}

#[test]
fn help_never_prints_the_database_url_or_its_password() {
    for command in ["serve", "migrate"] {
        let out = std::process::Command::new(common::BIN)
            .args([command, "--help"])
            .env("TRYGG_DATABASE_URL", "postgres://trygg:s3cret@db.internal/trygg")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command} --help");
        assert!(text.contains("--database-url"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("db.internal"), "{command} --help: {text}");
    }
}
