//! The web console in a real browser: `node --test` with playwright-core drives Debian's
//! chromium against the real binary (its embedded console and API), on SQLite and PostgreSQL.
//!
//! The browser tests live in `console/tests/` (JavaScript, because that is what drives a
//! browser); this file is how the README's test command runs them: it starts `trygg serve`
//! with a bootstrap admin, installs the pinned test packages with `npm ci`, and runs the suite
//! with the server's URL. Each test file seeds its own kommun through the public API. A missing
//! chromium or node fails the test with the command that installs it: a browser test that
//! silently skips is a browser test that never runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ADMIN, JWT_SECRET, Trygg};
use trygg_store::testing::TestDb;

/// One browser suite at a time: two chromiums and two servers on a small CI machine make
/// timing-sensitive pages flaky, and `npm ci` must not run twice at once in one directory.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/tests")
}

/// The browser the suite drives: `TRYGG_CHROMIUM`, or Debian's package.
fn chromium() -> String {
    let path = std::env::var("TRYGG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&path).exists(),
        "the console's browser tests need chromium at {path}: install it with \
         `sudo apt-get install -y chromium` (Debian; .ci/run does this), or set TRYGG_CHROMIUM"
    );
    path
}

/// Runs `program args` in `dir`; panics with its output unless it succeeds.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): the console's browser tests need node and npm: `sudo apt-get install -y nodejs npm`")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn the_console_works_in_a_real_browser(db: TestDb, backend: &str) {
    let browser = chromium();
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = console_dir();
    run(&dir, "npm", &["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], &[]);
    let server = Trygg::start(db.url(), &["--bootstrap-admin", ADMIN]);
    let results = dir.join("results").join(backend);
    std::fs::create_dir_all(&results).unwrap();
    run(
        &dir,
        "node",
        &["--test", "--test-concurrency=1", "--test-reporter=spec"],
        &[
            ("TRYGG_URL", &server.url("")),
            ("TRYGG_ADMIN", ADMIN),
            ("TRYGG_JWT_SECRET", JWT_SECRET),
            ("TRYGG_CHROMIUM", &browser),
            ("TRYGG_RESULTS", results.to_str().unwrap()),
        ],
    );
}

#[tokio::test]
async fn sqlite_the_console_works_in_a_real_browser() {
    the_console_works_in_a_real_browser(TestDb::sqlite(), "sqlite").await;
}

#[tokio::test]
async fn postgres_the_console_works_in_a_real_browser() {
    the_console_works_in_a_real_browser(TestDb::postgres().await, "postgres").await;
}
