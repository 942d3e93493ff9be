//! Configuration: command-line flags with `TRYGG_*` environment fallbacks.
//!
//! Every field says its unit in its name. Invalid values are refused before anything starts
//! (exit status 64, one line saying which setting and why). Secrets (a database password) are
//! never printed: use [`redact`] when logging a URL.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use trygg_api::BootstrapAdmin;
use trygg_core::FixPolicy;
use trygg_ingest::{CommitConfig, Limits};
use trygg_store::{ConnectOptions, Synchronous};

/// A setting that cannot be used; `serve` exits with status 64.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Where the database is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database: `sqlite://PATH` (embedded, created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "TRYGG_DATABASE_URL", default_value = "sqlite://trygg.db", hide_env_values = true)]
    pub database_url: String,
    /// Most open database connections.
    #[arg(long, env = "TRYGG_DB_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// SQLite only: `full` syncs every commit (survives power loss), `normal` syncs at
    /// checkpoints (survives a crash of trygg; a power loss may lose the last commits).
    #[arg(long, env = "TRYGG_SQLITE_SYNCHRONOUS", default_value = "full")]
    pub sqlite_synchronous: Synchronous,
    /// Longest wait on the database, in seconds: for a connection from the pool, for a lock
    /// (SQLite's busy timeout), for one statement (PostgreSQL's statement_timeout).
    #[arg(long, env = "TRYGG_DB_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub db_timeout_secs: u64,
}

impl DbArgs {
    /// Checks the URL and returns the connection options.
    pub fn options(&self) -> Result<ConnectOptions, ConfigError> {
        trygg_store::check_url(&self.database_url).map_err(|e| ConfigError(e.to_string()))?;
        Ok(ConnectOptions {
            max_connections: self.db_max_connections,
            sqlite_synchronous: self.sqlite_synchronous,
            busy_timeout: Duration::from_secs(self.db_timeout_secs),
            statement_timeout: Duration::from_secs(self.db_timeout_secs),
        })
    }
}

/// `trygg serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The database to use.
    #[command(flatten)]
    pub db: DbArgs,
    /// Address of the HTTP API: device ingest, health, metrics (port 0 picks a free port).
    #[arg(long, env = "TRYGG_HTTP_BIND", default_value = "127.0.0.1:8080")]
    pub http_bind: SocketAddr,
    /// Most open connections on the HTTP API listener; more wait in the listen backlog. Bounds
    /// the memory a flood of requests can take (each connection buffers up to ~0.4 MiB, plus a
    /// device body of up to --max-body-bytes while it is read).
    #[arg(long, env = "TRYGG_MAX_HTTP_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_http_connections: u64,
    /// Largest request body accepted from a device, in bytes.
    #[arg(long, env = "TRYGG_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(256..=64 << 20))]
    pub max_body_bytes: u64,
    /// Most fixes in one positions request.
    #[arg(long, env = "TRYGG_MAX_BATCH_FIXES", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch_fixes: u64,
    /// Group commit: commit once this many fixes wait.
    #[arg(long, env = "TRYGG_COMMIT_MAX_ROWS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub commit_max_rows: u64,
    /// Group commit: commit at the latest this many milliseconds after the first fix waits.
    #[arg(long, env = "TRYGG_COMMIT_MAX_DELAY_MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub commit_max_delay_ms: u64,
    /// Oldest fix accepted, in seconds: how long a watch may buffer without coverage.
    #[arg(long, env = "TRYGG_MAX_FIX_AGE_SECS", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub max_fix_age_secs: u64,
    /// Fixes older than this many seconds on arrival are stored as late (buffered).
    #[arg(long, env = "TRYGG_LATE_AFTER_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub late_after_secs: u64,
    /// Tolerated device clock skew into the future, in seconds.
    #[arg(long, env = "TRYGG_MAX_CLOCK_SKEW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub max_clock_skew_secs: u64,
    /// Longest a device request waits for the database (authentication, queueing, commit), in
    /// seconds; then it is answered 503 with Retry-After and the device resends.
    #[arg(long, env = "TRYGG_INGEST_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ingest_timeout_secs: u64,
    /// Most fixes waiting for a group commit; beyond it requests are answered 503 (bounds memory
    /// while the database is slow or away). At least --max-batch-fixes.
    #[arg(long, env = "TRYGG_INGEST_MAX_QUEUED_FIXES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub ingest_max_queued_fixes: u64,
    /// Seconds a task of the alarm path (committer, engine) may have work waiting without
    /// progress before it counts as stuck: /readyz fails naming it and trygg exits non-zero.
    #[arg(long, env = "TRYGG_TASK_STALL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub task_stall_secs: u64,
    /// TEST ONLY: inject a fault, `engine_exit_after_secs:N` (the alarm engine task ends N
    /// seconds after start). For black-box tests of supervision; never set it in production.
    #[arg(long, env = "TRYGG_TEST_FAULT", hide = true)]
    pub test_fault: Option<TestFault>,
    /// On SIGINT/SIGTERM, how many seconds to let in-flight requests finish.
    #[arg(long, env = "TRYGG_DRAIN_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub drain_timeout_secs: u64,
    /// The caseworker/staff API: tokens, login limits, retention.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Push to staff phones (FCM) and the alarm centre.
    #[command(flatten)]
    pub push: PushArgs,
    /// The device listeners.
    #[command(flatten)]
    pub devices: crate::device_config::DeviceArgs,
    /// The web console's base map.
    #[command(flatten)]
    pub console: crate::console::BaseMapArgs,
}

/// Push to staff phones over FCM HTTP v1.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The Firebase project's service-account key (JSON). Without it push is off: alarms are
    /// still raised, listed and escalated (to the alarm centre webhook), but no phone is pushed.
    #[arg(long, env = "TRYGG_FCM_CREDENTIALS")]
    pub fcm_credentials: Option<std::path::PathBuf>,
    /// Base URL of FCM; set it to a `trygg fake-fcm` to try push without Google.
    #[arg(long, env = "TRYGG_FCM_ENDPOINT", default_value = trygg_push::DEFAULT_ENDPOINT)]
    pub fcm_endpoint: String,
    /// Longest one FCM send (or alarm-centre POST) may take before it counts as failed and is
    /// retried. FCM answers in well under a second; a hanging FCM is noticed after this.
    #[arg(long, env = "TRYGG_PUSH_SEND_TIMEOUT_SECS", default_value_t = 4)]
    pub push_send_timeout_secs: u64,
    /// While FCM is down and a critical push waits, FCM is tried again at least this often.
    #[arg(long, env = "TRYGG_PUSH_OUTAGE_PROBE_SECS", default_value_t = 5)]
    pub push_outage_probe_secs: u64,
    /// Hosts the alarm-centre webhook may reach although they are not public https addresses
    /// (comma-separated names or IPs: an alarm centre on the municipality's own network, a test
    /// receiver); they may also use plain http. Empty: public https addresses only.
    #[arg(long, env = "TRYGG_WEBHOOK_ALLOW_HOSTS", default_value = "")]
    pub webhook_allow_hosts: String,
    /// Pushes (to different staff) and timers sent at once, at most.
    #[arg(long, env = "TRYGG_PUSH_CONCURRENCY", default_value_t = 32)]
    pub push_concurrency: usize,
    /// This node's name among those sharing the database (default: the host's name). Pushes
    /// and timers in flight are claimed under it, and at start trygg sends at once what its
    /// previous process left in flight, so each running node needs a name of its own.
    #[arg(long, env = "TRYGG_NODE_NAME", default_value_t = host_name())]
    pub node_name: String,
}

/// The host's name (Linux), else `trygg`: the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "trygg".to_owned())
}

/// Checked push settings.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The service account, or `None`: push is off.
    pub key: Option<trygg_push::ServiceAccountKey>,
    /// FCM's base URL.
    pub endpoint: String,
    /// How the delivery worker paces itself.
    pub worker: trygg_push::WorkerConfig,
}

impl PushArgs {
    /// Reads and checks the key file, if one is configured.
    pub fn config(&self) -> Result<PushConfig, ConfigError> {
        let key = self
            .fcm_credentials
            .as_ref()
            .map(|path| {
                trygg_push::ServiceAccountKey::from_file(path)
                    .map_err(|e| ConfigError(format!("TRYGG_FCM_CREDENTIALS: {e}")))
            })
            .transpose()?;
        if !(self.fcm_endpoint.starts_with("https://") || self.fcm_endpoint.starts_with("http://")) {
            return Err(ConfigError(format!(
                "TRYGG_FCM_ENDPOINT {:?} is not an http(s) URL",
                self.fcm_endpoint
            )));
        }
        let secs = |name: &str, v: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(ConfigError(format!("{name}: {v} is not within {}..={}", range.start(), range.end())))
            }
        };
        if !(1..=1024).contains(&self.push_concurrency) {
            return Err(ConfigError(format!(
                "TRYGG_PUSH_CONCURRENCY: {} is not within 1..=1024",
                self.push_concurrency
            )));
        }
        let node = self.node_name.trim();
        if node.is_empty() || node.len() > 100 || node.chars().any(char::is_control) {
            return Err(ConfigError(format!(
                "TRYGG_NODE_NAME {:?} must be 1 to 100 printable characters",
                self.node_name
            )));
        }
        let worker = trygg_push::WorkerConfig {
            node: node.to_owned(),
            send_timeout: secs("TRYGG_PUSH_SEND_TIMEOUT_SECS", self.push_send_timeout_secs, 1..=10)?,
            outage_probe: secs("TRYGG_PUSH_OUTAGE_PROBE_SECS", self.push_outage_probe_secs, 1..=60)?,
            concurrency: self.push_concurrency,
            webhook_allow_hosts: trygg_push::webhook::AllowHosts::parse(&self.webhook_allow_hosts),
            ..trygg_push::WorkerConfig::default()
        };
        Ok(PushConfig { key, endpoint: self.fcm_endpoint.clone(), worker })
    }
}

/// Settings of the caseworker/staff API: token signing, the first admin, the purge job.
#[derive(Clone, Args)]
pub struct ApiArgs {
    /// Key that signs API tokens (HS256), at least 32 bytes. Required unless --jwt-secret-file.
    #[arg(long, env = "TRYGG_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the token signing key (its bytes, a trailing newline dropped).
    #[arg(long, env = "TRYGG_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<std::path::PathBuf>,
    /// Seconds an API token is valid; after that the client logs in again.
    #[arg(long, env = "TRYGG_TOKEN_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub token_ttl_secs: u64,
    /// The first installation admin, `EMAIL:PASSWORD` (password ≥ 12 characters); created at
    /// start if no account has that email, never changed afterwards.
    #[arg(long, env = "TRYGG_BOOTSTRAP_ADMIN", hide_env_values = true)]
    pub bootstrap_admin: Option<String>,
    /// Login attempts allowed per minute from one source address (429 beyond it).
    #[arg(long, env = "TRYGG_LOGIN_PER_ADDRESS_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_per_address_per_minute: u32,
    /// Login attempts allowed per minute for one account (429 beyond it).
    #[arg(long, env = "TRYGG_LOGIN_PER_ACCOUNT_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_per_account_per_minute: u32,
    /// Seconds between runs of the fix purge (retention) and the zone index refresh.
    #[arg(long, env = "TRYGG_PURGE_INTERVAL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub purge_interval_secs: u64,
}

impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("purge_interval_secs", &self.purge_interval_secs)
            .finish_non_exhaustive()
    }
}

/// Checked API settings.
#[derive(Clone)]
pub struct ApiConfig {
    /// Token signing key.
    pub jwt_secret: Vec<u8>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// The first admin, if configured.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// Purge and zone refresh interval.
    pub purge_interval: Duration,
    /// Login attempt budgets.
    pub login_limits: trygg_api::login_guard::LoginLimits,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token_ttl", &self.token_ttl)
            .field("bootstrap_admin", &self.bootstrap_admin)
            .field("purge_interval", &self.purge_interval)
            .finish_non_exhaustive()
    }
}

impl ApiArgs {
    /// Reads the key and checks the settings.
    pub fn config(&self) -> Result<ApiConfig, ConfigError> {
        let jwt_secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| ConfigError(format!("--jwt-secret-file {}: {e}", path.display())))?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => {
                return Err(ConfigError(
                    "a token signing key is required: set TRYGG_JWT_SECRET (or --jwt-secret-file)".to_owned(),
                ));
            }
        };
        if jwt_secret.len() < trygg_api::auth::MIN_SECRET_BYTES {
            return Err(ConfigError(format!(
                "the token signing key must be at least {} bytes",
                trygg_api::auth::MIN_SECRET_BYTES
            )));
        }
        let bootstrap_admin = self
            .bootstrap_admin
            .as_deref()
            .map(|s| s.parse().map_err(|e| ConfigError(format!("TRYGG_BOOTSTRAP_ADMIN: {e}"))))
            .transpose()?;
        Ok(ApiConfig {
            jwt_secret,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            bootstrap_admin,
            purge_interval: Duration::from_secs(self.purge_interval_secs),
            login_limits: trygg_api::login_guard::LoginLimits {
                per_address_per_minute: self.login_per_address_per_minute,
                per_account_per_minute: self.login_per_account_per_minute,
            },
        })
    }
}

/// Checked `serve` settings, as the server uses them.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Database URL.
    pub database_url: String,
    /// Database connection options.
    pub connect: ConnectOptions,
    /// HTTP listen address.
    pub http_bind: SocketAddr,
    /// Most open connections on the HTTP API listener.
    pub max_http_connections: usize,
    /// Device request limits.
    pub limits: Limits,
    /// Group commit.
    pub commit: CommitConfig,
    /// Fix acceptance.
    pub policy: FixPolicy,
    /// Time given to in-flight requests at shutdown.
    pub drain_timeout: Duration,
    /// The caseworker/staff API.
    pub api: ApiConfig,
    /// Push to staff phones.
    pub push: PushConfig,
    /// Longest a device request waits for the database.
    pub ingest_timeout: Duration,
    /// How long a task may have work waiting without progress before it counts as stuck.
    pub stall_after: Duration,
    /// A fault to inject (tests only).
    pub test_fault: Option<TestFault>,
    /// The watch, GT06 and OsmAnd listeners.
    pub devices: crate::device_config::DeviceSettings,
    /// The web console's base map.
    pub base_map: crate::console::BaseMap,
}

/// A fault injected for black-box tests of supervision (`TRYGG_TEST_FAULT`, hidden from
/// `--help`). Never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFault {
    /// The alarm engine task ends this long after the server starts running.
    EngineExitAfter(Duration),
}

impl std::str::FromStr for TestFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("engine_exit_after_secs", n)) => n
                .parse()
                .map(|n| Self::EngineExitAfter(Duration::from_secs(n)))
                .map_err(|_| format!("{n:?} is not a number of seconds")),
            _ => Err(format!("unknown test fault {s:?}; expected engine_exit_after_secs:N")),
        }
    }
}

impl ServeArgs {
    /// Checks the settings against each other and builds the server configuration.
    pub fn config(&self) -> Result<ServeConfig, ConfigError> {
        if self.late_after_secs >= self.max_fix_age_secs {
            return Err(ConfigError(format!(
                "--late-after-secs ({}) must be below --max-fix-age-secs ({})",
                self.late_after_secs, self.max_fix_age_secs
            )));
        }
        if self.ingest_max_queued_fixes < self.max_batch_fixes {
            return Err(ConfigError(format!(
                "--ingest-max-queued-fixes ({}) must be at least --max-batch-fixes ({})",
                self.ingest_max_queued_fixes, self.max_batch_fixes
            )));
        }
        Ok(ServeConfig {
            database_url: self.db.database_url.clone(),
            connect: self.db.options()?,
            http_bind: self.http_bind,
            max_http_connections: usize::try_from(self.max_http_connections).unwrap_or(usize::MAX),
            limits: Limits {
                max_body_bytes: self.max_body_bytes as usize,
                max_batch_fixes: self.max_batch_fixes as usize,
            },
            commit: CommitConfig {
                max_rows: self.commit_max_rows as usize,
                max_delay: Duration::from_millis(self.commit_max_delay_ms),
                max_queued_fixes: self.ingest_max_queued_fixes as usize,
                // The database's own timeouts normally answer first; this bounds a server that
                // stops answering altogether.
                commit_timeout: Duration::from_secs(2 * self.db.db_timeout_secs),
                ..CommitConfig::default()
            },
            policy: FixPolicy {
                max_future: Duration::from_secs(self.max_clock_skew_secs),
                max_age: Duration::from_secs(self.max_fix_age_secs),
                late_after: Duration::from_secs(self.late_after_secs),
            },
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            api: self.api.config()?,
            push: self.push.config()?,
            ingest_timeout: Duration::from_secs(self.ingest_timeout_secs),
            stall_after: Duration::from_secs(self.task_stall_secs),
            test_fault: self.test_fault,
            devices: self.devices.settings()?,
            base_map: self.console.config()?,
        })
    }
}

/// The URL with any password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    // Parsed, not split: a password may hold `@` or `:`, or sit in the query string.
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://*** (unparseable URL, hidden)"),
            None => "*** (unparseable URL, hidden)".to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        ["pass", "secret", "key", "token"].iter().any(|s| name.contains(s))
    };
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_other_urls_kept() {
        assert_eq!(redact("postgres://trygg:s3cret@db:5432/trygg"), "postgres://trygg:***@db:5432/trygg");
        assert_eq!(redact("postgres://trygg@db/trygg"), "postgres://trygg@db/trygg");
        assert_eq!(redact("sqlite://trygg.db"), "sqlite://trygg.db");
    }

    #[test]
    fn a_password_with_at_signs_or_in_the_query_string_is_redacted_whole() {
        let at = redact("postgres://trygg:p@ss:w@rd@db:5432/trygg");
        assert_eq!(at, "postgres://trygg:***@db:5432/trygg");
        let query = redact("postgres://db/trygg?user=trygg&password=s3cret&sslmode=require");
        assert!(!query.contains("s3cret") && query.contains("sslmode=require"), "{query}");
        assert!(!redact("postgres://u:s3cret@[bad").contains("s3cret"));
    }
}
