//! The real `trygg serve` the HTTP benchmarks drive, and CPU time from `/proc`: one copy for
//! every benchmark, so they start, measure and stop the server alike.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;
use serde_json::{Value, json};

/// A `trygg serve` child process on a free port; killed if still running when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The rest of the server's stdout: the device listeners' address lines.
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Starts `bin serve` on 127.0.0.1:0 against `url` with 16 database connections, after
    /// `configure` added its flags and environment, and waits for the address line. With `log`,
    /// the server's stderr goes there and a failed start quotes it.
    pub fn start(
        bin: &str,
        url: &str,
        log: Option<&Path>,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--http-bind",
                "127.0.0.1:0",
                "--database-url",
                url,
                "--db-max-connections",
                "16",
            ])
            .stdout(Stdio::piped());
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log)?);
        }
        configure(&mut command);
        let mut child = command.spawn().with_context(|| format!("starting {bin}"))?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        stdout.read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("trygg listening on ")
            .with_context(|| {
                let log = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
                format!("unexpected {line:?}; server log: {log}")
            })?
            .to_owned();
        Ok(Self { child, base, stdout })
    }

    /// The address a device listener announced (`trygg watch listening on ADDR`); the server
    /// prints them right after its first line.
    pub fn device_listener(&mut self, name: &str) -> anyhow::Result<std::net::SocketAddr> {
        let prefix = format!("trygg {name} listening on ");
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                anyhow::bail!("the server announced no {name} listener");
            }
            if let Some(addr) = line.trim().strip_prefix(&prefix) {
                return Ok(addr.parse()?);
            }
        }
    }

    /// The exit status, if the server has ended on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in bytes, from `/proc/PID/status`.
pub fn process_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// User + system CPU seconds of process `pid`, from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds of this process, 0 if `/proc` cannot be read.
pub fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

fn stat_cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the parenthesised command name (which may hold spaces); utime and stime are
    // the 14th and 15th of the line, 11 and 12 after the name.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The CPU model and core count, for a results file.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    });
    json!({ "cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) })
}

/// A fresh database for one benchmark run: a SQLite file in a temporary directory, or a
/// PostgreSQL database created on the server `pg_admin` points at (dropped by [`Self::drop_it`]).
#[derive(Debug)]
pub struct Database {
    /// The URL `trygg serve` is given.
    pub url: String,
    pg_name: Option<String>,
    /// The temporary directory (the SQLite file, logs, credentials).
    pub dir: tempfile::TempDir,
}

impl Database {
    /// Creates it; `tag` names the PostgreSQL database with this process id.
    pub async fn create(backend: &str, pg_admin: &str, tag: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if backend == "sqlite" {
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            return Ok(Self { url, pg_name: None, dir });
        }
        anyhow::ensure!(backend == "postgres", "unknown backend {backend} (sqlite or postgres)");
        let name = format!("trygg_{tag}_{}", std::process::id());
        psql(pg_admin, &format!("drop database if exists {name} with (force)")).await?;
        psql(pg_admin, &format!("create database {name}")).await?;
        let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(b, _)| b);
        Ok(Self { url: format!("{base}/{name}"), pg_name: Some(name), dir })
    }

    /// The PostgreSQL database's name, if it is one.
    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    /// Drops the PostgreSQL database (the temporary directory goes with `self`).
    pub async fn drop_it(self, pg_admin: &str) {
        if let Some(name) = self.pg_name {
            let _ = psql(pg_admin, &format!("drop database if exists {name} with (force)")).await;
        }
    }
}

/// Runs one statement on the PostgreSQL server `admin` points at.
pub async fn psql(admin: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(admin).await.with_context(|| format!("PostgreSQL at {admin}"))?;
    sqlx::query(sql).execute(&mut conn).await?;
    Ok(())
}
