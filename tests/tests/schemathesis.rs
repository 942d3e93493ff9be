//! The API contract, checked from outside: Schemathesis (`--checks all`) runs against the
//! served `/api/v1/openapi.json` of the real binary, once with a caseworker's token and once
//! with a staff member's, on a tenant with a wearer, a device and a raised alarm, and the test
//! fails on any failure it reports (an undocumented status, a schema-valid request refused, an
//! invalid one accepted, an answer that does not match its schema, a 500).
//!
//! Schemathesis is a Python tool: its exact version and every dependency's hash are pinned in
//! `tests/schemathesis/requirements.txt`, installed by this test into a virtualenv under the
//! target directory (once; again when the requirements change), never by hand. Its settings,
//! including what is left out and why, are in `tests/schemathesis/schemathesis.toml`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{ADMIN, Client, Trygg};
use reqwest::Method;
use serde_json::json;
use trygg_store::testing::TestDb;

/// The project's Schemathesis files.
fn files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis")
}

/// Holds the install lock file while alive: the tests of this file may run as threads of one
/// process (`cargo test`) or as separate processes (`cargo nextest`), and only one may build
/// the virtualenv. A lock older than an install can take is left by a killed run and is taken over.
struct InstallLock(PathBuf);

impl InstallLock {
    fn take(path: PathBuf) -> Self {
        let started = Instant::now();
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > Duration::from_secs(600)) {
                        let _ = std::fs::remove_file(&path);
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(900),
                        "waited 15 min for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("create {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes sure the pinned Schemathesis is installed in a virtualenv under the target directory
/// and returns its executable. Tests of this file share it; the first one installs it.
fn schemathesis() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_thread = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _one_process = InstallLock::take(tmp.join("schemathesis-venv.lock"));
    let venv = tmp.join("schemathesis-venv");
    let requirements = files().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("read tests/schemathesis/requirements.txt");
    let stamp = venv.join("installed-requirements.txt");
    let exe = venv.join("bin").join("schemathesis");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && exe.exists() {
        return exe;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e} (is python3 installed?)"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv), "python3 -m venv");
    let pip = venv.join("bin").join("pip");
    run(
        Command::new(&pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "--no-deps",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/schemathesis/requirements.txt",
    );
    std::fs::write(&stamp, wanted).unwrap();
    exe
}

/// What Schemathesis is pointed at: a tenant set up through the API, with the ids of its
/// resources so that operations on `{id}` reach real ones, not only 404s.
struct Tenant {
    caseworker: String,
    staff: String,
    device_token: String,
    ids: Vec<(&'static str, String)>,
}

async fn set_up(c: &Client) -> Tenant {
    let admin = c.login("admin@kommun.test", "correct horse battery").await;
    let tenant = c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Skövde" }))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = |email: &str, role: &str| json!({ "email": email, "name": email, "role": role, "password": "a long password", "tenant": tenant });
    c.ok(Method::POST, "users", &admin, Some(user("hanna@skovde.test", "caseworker"))).await;
    let sven =
        c.ok(Method::POST, "users", &admin, Some(user("sven@skovde.test", "staff"))).await["id"].clone();
    let cw = c.login("hanna@skovde.test", "a long password").await;
    let staff = c.login("sven@skovde.test", "a long password").await;

    let team = c.ok(Method::POST, "teams", &cw, Some(json!({ "name": "Hemtjänst Norr" }))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok(Method::PUT, &format!("teams/{team}/members"), &cw, Some(json!({ "members": [sven] }))).await;
    let wearer = c
        .ok(
            Method::POST,
            "wearers",
            &cw,
            Some(json!({ "name": "Dagny", "note": "Portkod 4711", "team": team })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_wearer = c.ok(Method::POST, "wearers", &cw, Some(json!({ "name": "Gösta" }))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": "Dnr 2026/1" });
    let consent = c.ok(Method::POST, &format!("wearers/{wearer}/consents"), &cw, Some(consent)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let device =
        c.ok(Method::POST, "devices", &cw, Some(json!({ "id": "dagny-watch", "protocol": "native" }))).await;
    let device_token = device["token"].as_str().unwrap().to_owned();
    c.ok(Method::POST, "devices/dagny-watch/bind", &cw, Some(json!({ "wearer": wearer }))).await;
    let zone = json!({
        "name": "Hemma", "kind": "stay_inside", "radius_m": 100,
        "geometry": { "type": "Point", "coordinates": [13.8462, 58.3903] },
    });
    let zone = c.ok(Method::POST, &format!("wearers/{wearer}/zones"), &cw, Some(zone)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let sos = json!({
        "device": "dagny-watch", "kind": "sos", "time": Utc::now().to_rfc3339(),
        "fix": { "time": Utc::now().to_rfc3339(), "lat": 58.3903, "lon": 13.8462, "accuracy_m": 8.0 },
    });
    let sent = c
        .http
        .post(c.server.url("/api/v1/ingest/alarms"))
        .bearer_auth(&device_token)
        .json(&sos)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201, "the SOS is stored");
    let deadline = Instant::now() + Duration::from_secs(20);
    let alarm = loop {
        let list = c.ok(Method::GET, "alarms", &cw, None).await;
        if let Some(id) = list[0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the SOS was raised as an alarm in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Tenant {
        caseworker: cw,
        staff,
        device_token,
        ids: vec![
            ("TENANT", tenant),
            ("WEARER", wearer),
            ("OTHER_WEARER", other_wearer),
            ("STAFF", sven.as_str().unwrap().to_owned()),
            ("CONSENT", consent),
            ("ZONE", zone),
            ("TEAM", team),
            ("DEVICE", "dagny-watch".to_owned()),
            ("ALARM", alarm),
        ],
    }
}

/// Runs Schemathesis with `token` against a fresh server on `db` and fails with its report on
/// any failure.
async fn schemathesis_finds_nothing(db: TestDb, role: &str) {
    let exe = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        server: Trygg::start(db.url(), &["--bootstrap-admin", ADMIN]),
    };
    let tenant = set_up(&c).await;
    let token = if role == "staff" { &tenant.staff } else { &tenant.caseworker };
    let reports = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(exe);
    // Whatever Schemathesis writes goes into the temporary directory, not the checkout.
    cmd.current_dir(reports.path())
        .arg("--config-file")
        .arg(files().join("schemathesis.toml"))
        .arg("run")
        .arg(c.server.url("/api/v1/openapi.json"))
        .arg("--url")
        .arg(&c.server.base)
        .arg("--report-dir")
        .arg(reports.path())
        .env("TRYGG_ST_TOKEN", token)
        .env("TRYGG_ST_DEVICE_TOKEN", &tenant.device_token)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    for (name, id) in &tenant.ids {
        cmd.env(format!("TRYGG_ST_{name}"), id);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run schemathesis")).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("schemathesis as {role}: {:?}, took {:.0?}", out.status, started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis as {role} reported failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_as_a_caseworker() {
    schemathesis_finds_nothing(TestDb::sqlite(), "caseworker").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_as_staff() {
    schemathesis_finds_nothing(TestDb::postgres().await, "staff").await;
}
