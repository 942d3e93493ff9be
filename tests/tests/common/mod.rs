//! Starting and stopping the real `trygg` binary.

#![allow(dead_code, unreachable_pub)] // each test file uses its own share of these helpers

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_trygg-under-test");

/// The token signing key every test server gets (`serve` refuses to start without one).
pub const JWT_SECRET: &str = "black-box-test-signing-key-of-enough-bytes";

/// Runs a one-shot `trygg` command (tenant, device, migrate, replay) to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("TRYGG_LOG", "warn").output().expect("run trygg")
}

/// Runs a one-shot command that must succeed and returns its stdout, trimmed.
pub fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "trygg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Creates a tenant and a native device; returns the device's token.
pub fn register_native_device(db_url: &str, tenant_name: &str, device: &str) -> String {
    let tenant = cli_ok(&["tenant", "create", "--database-url", db_url, tenant_name]);
    cli_ok(&["device", "register", "--database-url", db_url, "--tenant", &tenant, "--device", device])
}

/// A running `trygg serve`, killed when dropped.
pub struct Trygg {
    child: Child,
    pub base: String,
    /// The device listeners' addresses, by protocol (`watch`, `gt06`, `osmand`).
    pub devices: std::collections::HashMap<String, String>,
}

impl Trygg {
    /// Starts `trygg serve` on a free port and waits until it says where it listens.
    pub fn start(db_url: &str, extra: &[&str]) -> Self {
        Self::start_with_env(db_url, extra, &[])
    }

    /// Like [`start`](Self::start), with settings in the environment.
    pub fn start_with_env(db_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::env::var("TEST_LOG").is_ok();
        let stderr = if log { Stdio::inherit() } else { Stdio::null() };
        Self::spawn(db_url, extra, env, if log { "debug" } else { "warn" }, stderr)
    }

    /// Starts `trygg serve` logging at `level` to `stderr`, and reads the addresses it prints.
    fn spawn(db_url: &str, extra: &[&str], env: &[(&str, &str)], level: &str, stderr: Stdio) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--http-bind", "127.0.0.1:0", "--database-url", db_url])
            .args(extra)
            .envs(env.iter().copied())
            .env("TRYGG_LOG", level)
            .env("TRYGG_JWT_SECRET", JWT_SECRET)
            // Device listeners on free loopback ports, so tests never compete for 5093 and co.
            .env("TRYGG_WATCH_BIND", "127.0.0.1:0")
            .env("TRYGG_GT06_BIND", "127.0.0.1:0")
            .env("TRYGG_OSMAND_BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn trygg serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Every line is read (the device listeners' addresses follow the first), and stdout is
        // drained for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("trygg serve printed its address in time");
        let mut devices = std::collections::HashMap::new();
        while let Ok(more) = rx.recv_timeout(Duration::from_millis(300)) {
            let Some(rest) = more.strip_prefix("trygg ") else { break };
            if let Some((name, addr)) = rest.split_once(" listening on ") {
                devices.insert(name.to_owned(), addr.to_owned());
            }
        }
        let base = line
            .trim()
            .strip_prefix("trygg listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base, devices }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a signal with the system's `kill` command.
    fn signal(&self, name: &str) {
        let ok =
            Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(30))
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub fn kill9(mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(30));
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "trygg did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Trygg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON fix `seq` milliseconds after `base_ms`.
pub fn fix_at(base_ms: i64, seq: i64) -> Value {
    let time = chrono::DateTime::from_timestamp_millis(base_ms + seq).unwrap();
    json!({ "time": time.to_rfc3339(), "lat": 57.7 + seq as f64 * 1e-6, "lon": 11.97, "accuracy_m": 10.0 })
}

/// The bootstrap admin (`email:password`) the API tests start the server with.
pub const ADMIN: &str = "admin@kommun.test:correct horse battery";

/// A JSON client of one running server's `/api/v1`.
pub struct Client {
    pub http: reqwest::Client,
    pub server: Trygg,
}

impl Client {
    /// Any call: status and JSON body (null when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.server.url(&format!("/api/v1/{path}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// A call that must succeed.
    pub async fn ok(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, Some(token), body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }

    /// Logs in; the token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }
}

impl Trygg {
    /// Like [`Trygg::start`], with the server's log (at `info`) written to `log` instead of
    /// dropped: for tests that read what it said last.
    pub fn start_logged(db_url: &str, extra: &[&str], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(db_url, extra, &[], "info", file.into())
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (bounded) for the process to end by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.wait(limit)
    }
}

/// Creates a tenant, a wearer and a native device bound to the wearer; returns the tenant id
/// and the device's token.
pub fn register_worn_device(db_url: &str, tenant_name: &str, device: &str) -> (String, String) {
    let tenant = cli_ok(&["tenant", "create", "--database-url", db_url, tenant_name]);
    let wearer = cli_ok(&["wearer", "create", "--database-url", db_url, "--tenant", &tenant, "Dagny"]);
    let token = cli_ok(&[
        "device",
        "register",
        "--database-url",
        db_url,
        "--tenant",
        &tenant,
        "--device",
        device,
        "--wearer",
        &wearer,
    ]);
    (tenant, token)
}
