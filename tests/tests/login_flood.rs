//! Login abuse against the real binary: a flood of wrong-password logins leaves the server's
//! memory bounded and the rest of the API answering, and attempts beyond a source address's or an
//! account's budget get 429 with `Retry-After`.
//!
//! An argon2id check takes ~19 MiB; before the hashing cap, 400 concurrent wrong logins grew the
//! process by 7.2 GiB. `TRYGG_TEST_LOGIN_FLOOD` sets the flood's size (default 1,000).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{ADMIN, Client, Trygg};
use serde_json::json;
use trygg_store::testing::TestDb;

/// Most the server's resident memory may grow during the flood.
const RSS_GROWTH_LIMIT_MIB: u64 = 160;

/// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_logins_leaves_memory_bounded_and_the_api_answering() {
    let n: usize = std::env::var("TRYGG_TEST_LOGIN_FLOOD").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let db = TestDb::sqlite();
    // Budgets out of the way (set through the environment, which an older binary ignores): the
    // hashing cap alone must bound memory, whatever addresses and accounts an attacker uses.
    let server = Trygg::start_with_env(
        db.url(),
        &["--bootstrap-admin", ADMIN],
        &[
            ("TRYGG_LOGIN_PER_ADDRESS_PER_MINUTE", "1000000"),
            ("TRYGG_LOGIN_PER_ACCOUNT_PER_MINUTE", "1000000"),
        ],
    );
    let pid = server.pid();
    let c = Client { http: reqwest::Client::new(), server };
    let (email, password) = ADMIN.split_once(':').unwrap();
    let admin = c.login(email, password).await;
    let baseline = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(baseline));
    let flooding = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, flooding) = (peak.clone(), flooding.clone());
        tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let url = c.server.url("/api/v1/auth/login");
    let mut logins = Vec::new();
    for i in 0..n {
        let (http, url) = (reqwest::Client::new(), url.clone());
        let body = json!({ "email": format!("user{}@kommun.test", i % 50), "password": "wrong password!" });
        logins.push(tokio::spawn(async move {
            // A request that got no answer at all counts as its error, so a failure says why.
            http.post(&url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().to_string())
                .unwrap_or_else(|e| format!("{e:?}"))
        }));
    }
    // Meanwhile the rest of the API answers, promptly.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let (status, _) = tokio::time::timeout(
            Duration::from_secs(10),
            c.call(reqwest::Method::GET, "tenants", Some(&admin), None),
        )
        .await
        .expect("an API call answered during the flood");
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
    }
    let mut statuses = BTreeMap::new();
    for login in logins {
        *statuses.entry(login.await.unwrap()).or_insert(0) += 1;
    }
    flooding.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(baseline) / 1024;
    eprintln!("{n} wrong logins: {statuses:?}; RSS grew {growth_mib} MiB; slowest other call {slowest:?}");
    assert!(
        growth_mib <= RSS_GROWTH_LIMIT_MIB,
        "RSS grew {growth_mib} MiB (limit {RSS_GROWTH_LIMIT_MIB}): {statuses:?}"
    );
    assert!(slowest < Duration::from_secs(2), "an API call took {slowest:?} during the flood");
    let answers = ["401 Unauthorized", "503 Service Unavailable"];
    assert!(statuses.keys().all(|s| answers.contains(&s.as_str())), "{statuses:?}");
}

#[tokio::test]
async fn logins_beyond_the_address_or_account_budget_get_429_with_retry_after() {
    let db = TestDb::sqlite();
    let server = Trygg::start(
        db.url(),
        &["--login-per-account-per-minute", "3", "--login-per-address-per-minute", "5"],
    );
    let http = reqwest::Client::new();
    let url = server.url("/api/v1/auth/login");
    let attempt = async |email: &str| {
        let resp = http
            .post(&url)
            .json(&json!({ "email": email, "password": "wrong password!" }))
            .send()
            .await
            .unwrap();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (resp.status().as_u16(), retry)
    };
    for _ in 0..3 {
        assert_eq!(attempt("a@kommun.test").await, (401, None));
    }
    let (status, retry) = attempt("a@kommun.test").await;
    assert_eq!(status, 429, "the account's budget is spent");
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
    assert_eq!(attempt("b@kommun.test").await.0, 401, "another account, the address's fifth attempt");
    let (status, retry) = attempt("c@kommun.test").await;
    assert_eq!(status, 429, "the address's budget is spent");
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
}
