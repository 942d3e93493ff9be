//! Storage for trygg: SQLite embedded (the default: one file, nothing to operate) or
//! PostgreSQL (several nodes, larger municipalities), behind one [`Store`] made of focused
//! traits.
//!
//! Every query is written once, in the module of the trait it serves, as an ordinary function
//! of [`SqlStore`]; the few real differences between the two databases (how ids and times are
//! encoded, `begin immediate`, `for update skip locked`) are in [`dialect`]. Both backends run
//! the same behaviour tests. sqlx's runtime-checked queries keep the build free of a database
//! at compile time. Migrations are embedded in the binary and applied by [`connect`].

use std::fmt::Debug;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use trygg_core::{DeviceAlarmKind, DeviceId};

use crate::dialect::{Db, query};

pub mod accounts;
pub mod alarms;
pub mod devices;
mod dialect;
mod directory;
pub mod fixes;
pub mod outbox;
mod postgres;
mod sqlite;
pub mod token;

#[cfg(feature = "testing")]
pub mod testing;

pub use accounts::{AccountState, Accounts};
pub use alarms::{
    Alarm, AlarmEvent, AlarmFilter, Alarms, DEADLINE_LOW_BATTERY, DEADLINE_OFFLINE, DEADLINE_TEST_ALARM,
    DeadlineChange, DueDeadline, EngineCommit, NewAlarm, NewAlarmEvent, PendingDeviceAlarm, Position,
    PushToken, ReceivedFix, Signal, SignalOutcome, Stamp, StepOutcome, StepRequest, ZoneStateRow,
};
pub use devices::{
    DeviceAuth, DeviceBinding, DeviceCommandLog, DeviceHeard, DeviceProfile, DeviceStatus, Devices, NewDevice,
};
pub use directory::{
    AccessEntry, Binding, Consent, ConsentGiver, DEFAULT_OFFLINE_AFTER_SECS, DEFAULT_REPEAT_JOIN_SECS,
    DeviceInfo, Directory, NewConsent, NewUser, Responder, ResponderPlan, ResponderTarget, Role, StoredZone,
    SupervisionSettings, Team, Tenant, TenantSettings, User, Wearer, WearerFields, ZoneFields,
};
pub use fixes::{
    AlarmInsert, FixBatch, Fixes, NewDeviceAlarm, NewFix, PURGE_BATCH, StoredDeviceAlarm, StoredFix,
};
pub use outbox::{
    EscalateOutcome, Escalation, Outbox, OutboxRow, PushSettings, ReceiptOutcome, Timer, TimerKind,
};
pub use sqlite::Synchronous;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend we speak or cannot be parsed.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    BadUrl(String),
    /// A row with the same unique key exists (a device id bound elsewhere, a tenant name taken).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The row is in the wrong state for the change (binding a bound device, unbinding an unbound one).
    #[error("{0}")]
    WrongState(&'static str),
    /// A referenced row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database refused or failed the operation.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A migration failed to apply.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back into a domain type (corrupt or foreign data).
    #[error("stored {what} is invalid: {value:?}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The stored text.
        value: String,
    },
}

/// The wire protocol a device speaks; decides how it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// trygg's own JSON/protobuf HTTP API; authenticates with a device token.
    Native,
    /// The 3G "watch" TCP protocol.
    Watch,
    /// The GT06 binary TCP protocol.
    Gt06,
    /// OsmAnd HTTP (phones, trackers).
    Osmand,
}

impl Protocol {
    /// Every protocol, in a stable order.
    pub const ALL: [Self; 4] = [Self::Native, Self::Watch, Self::Gt06, Self::Osmand];

    /// The name used in the database and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Watch => "watch",
            Self::Gt06 => "gt06",
            Self::Osmand => "osmand",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown protocol {s:?}; expected native, watch, gt06 or osmand"))
    }
}

impl StoreError {
    /// The database refused this operation's own data (a unique, foreign-key, not-null or check
    /// constraint; a referenced row missing; a row in the wrong state): the same operation fails
    /// again, while others may succeed. Anything else (no connection, a timeout, a lock that was
    /// not granted, a lost server) says nothing about the data: retried later it may succeed.
    pub fn is_constraint(&self) -> bool {
        match self {
            Self::Conflict(_) | Self::WrongState(_) | Self::NotFound(_) => true,
            Self::Database(sqlx::Error::Database(e)) => !matches!(e.kind(), sqlx::error::ErrorKind::Other),
            _ => false,
        }
    }
}

/// Everything trygg stores, on SQLite or PostgreSQL alike: the focused traits together, so one
/// handle (`Arc<dyn Store>`) serves every part. Each part is a trait of its own, in its own
/// module with its queries: [`Fixes`] (fixes and device alarms), [`Directory`] (the
/// caseworker's data), [`Devices`] (what the listeners know about a device), [`Accounts`],
/// [`Alarms`] (alarms, events, the engine's state) and [`Outbox`] (pushes and timers). Their
/// methods are callable on a `dyn Store` without importing them.
#[async_trait]
pub trait Store:
    Fixes + Directory + Devices + Accounts + Alarms + Outbox + Debug + Send + Sync + 'static
{
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Waits for in-flight work and closes the connections.
    async fn close(&self);

    /// How many write transactions can make progress at once: one on SQLite (one write lock),
    /// several on PostgreSQL.
    fn parallel_writes(&self) -> usize;
}

/// The store over either backend: every trait's queries run through [`dialect`], which holds
/// the few differences between SQLite and PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Db,
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        query("select 1").execute(&self.db).await?;
        Ok(())
    }

    async fn close(&self) {
        self.db.close().await;
    }

    fn parallel_writes(&self) -> usize {
        self.db.parallel_writes()
    }
}

/// Connection settings that apply to both backends.
///
/// Every wait on the database is bounded, so an unavailable database turns into errors the
/// caller can answer (ingest: 503 and `Retry-After`), never into requests that hang.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a lock (SQLite's busy timeout) or a connection from the pool (both;
    /// this includes connecting, so a server that refuses connections fails within it).
    pub busy_timeout: Duration,
    /// PostgreSQL: the longest one statement may run (`statement_timeout`), so a lock held
    /// elsewhere or a stalled query frees its connection. Migrations run without it (the
    /// retention purge's statements are small batches).
    pub statement_timeout: Duration,
    /// SQLite's `synchronous` setting: what a commit survives.
    pub sqlite_synchronous: Synchronous,
}

impl Default for ConnectOptions {
    /// 5 s: long against a healthy commit (milliseconds), short enough that a device asked to
    /// resend hears so before its own request times out.
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            sqlite_synchronous: Synchronous::Full,
        }
    }
}

/// Connects to `url` (`sqlite://PATH` creates the file; `postgres://…`) and applies the
/// migrations.
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Arc<dyn Store>, StoreError> {
    let db = if url.starts_with("sqlite:") {
        sqlite::connect(url, options).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::connect(url, options).await?
    } else {
        return Err(StoreError::BadUrl(url.to_owned()));
    };
    Ok(Arc::new(SqlStore { db }))
}

/// Tells whether `url` names a backend [`connect`] speaks, without connecting.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    let ok = url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
    if ok { Ok(()) } else { Err(StoreError::BadUrl(url.to_owned())) }
}

fn parse_kind(s: String) -> Result<DeviceAlarmKind, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt { what: "alarm kind", value: s })
}

fn parse_protocol(s: String) -> Result<Protocol, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt { what: "protocol", value: s })
}

fn parse_source(s: String) -> Result<trygg_core::FixSource, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt { what: "fix source", value: s })
}

fn parse_text<T: FromStr>(what: &'static str, s: String) -> Result<T, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt { what, value: s })
}

fn parse_device(s: String) -> Result<DeviceId, StoreError> {
    DeviceId::parse(&s).map_err(|_| StoreError::Corrupt { what: "device id", value: s })
}

/// A stored integer back into the narrower type it was written from.
fn narrow<T: TryFrom<i64>>(what: &'static str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt { what, value: v.to_string() })
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound("tenant or wearer"),
        _ => StoreError::Database(e),
    }
}
