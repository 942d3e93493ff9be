//! Storage for trygg: one [`Store`] trait with an embedded SQLite implementation (the default,
//! one file, nothing to operate) and a PostgreSQL implementation (several nodes, larger
//! municipalities).
//!
//! Both run the same behaviour tests. SQL lives next to its use in the backend modules; sqlx's
//! runtime-checked queries keep the build free of a database at compile time. Migrations are
//! embedded in the binary and applied by [`connect`].

use std::fmt::Debug;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use trygg_core::{DeviceAlarmKind, DeviceId, Fix, TenantId, WearerId};

pub mod accounts;
pub mod alarms;
pub mod devices;
mod directory;
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
    PushToken, Signal, SignalOutcome, Stamp, StepOutcome, StepRequest, ZoneStateRow,
};
pub use devices::{DeviceBinding, DeviceCommandLog, DeviceProfile, DeviceStatus, Devices};
pub use directory::{
    AccessEntry, Binding, Consent, ConsentGiver, DEFAULT_OFFLINE_AFTER_SECS, DEFAULT_REPEAT_JOIN_SECS,
    DeviceInfo, Directory, NewConsent, NewUser, Responder, ResponderPlan, ResponderTarget, Role, StoredZone,
    SupervisionSettings, Team, Tenant, TenantSettings, User, Wearer, WearerFields, ZoneFields,
};
pub use outbox::{
    EscalateOutcome, Escalation, Outbox, OutboxRow, PushSettings, ReceiptOutcome, Timer, TimerKind,
};
pub use postgres::PgStore;
pub use sqlite::{SqliteStore, Synchronous};

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

/// A device to register.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// The id the device reports.
    pub id: DeviceId,
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The wearer it is bound to, if any yet.
    pub wearer: Option<WearerId>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Hash of its token ([`token::hash`]); native devices only.
    pub token_hash: Option<String>,
}

/// What ingest needs to know about a device to accept its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The wearer it is bound to.
    pub wearer: Option<WearerId>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Hash of its token, if it has one.
    pub token_hash: Option<String>,
}

/// A validated fix ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFix {
    /// The fix.
    pub fix: Fix,
    /// Whether it arrived late (a buffered upload).
    pub late: bool,
}

/// The fixes of one request: they commit together, in one group commit with other requests.
#[derive(Debug, Clone)]
pub struct FixBatch {
    /// The device that sent them.
    pub device: DeviceId,
    /// When the server received them.
    pub received_at: DateTime<Utc>,
    /// The fixes.
    pub fixes: Vec<NewFix>,
}

/// A fix as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFix {
    /// The fix.
    pub fix: Fix,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// Whether it arrived late.
    pub late: bool,
}

/// An alarm raised by a device, to store.
#[derive(Debug, Clone)]
pub struct NewDeviceAlarm {
    /// The device.
    pub device: DeviceId,
    /// What kind of alarm.
    pub kind: DeviceAlarmKind,
    /// The device's time for the alarm: with device and kind, the key that recognises resends.
    pub time: DateTime<Utc>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// The device clock was outside the accepted window.
    pub clock_suspect: bool,
    /// The position sent with the alarm, stored as a fix too.
    pub fix: Option<NewFix>,
}

/// A device alarm as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeviceAlarm {
    /// Its row id.
    pub id: i64,
    /// What kind of alarm.
    pub kind: DeviceAlarmKind,
    /// The device's time for it.
    pub time: DateTime<Utc>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// The device clock was outside the accepted window.
    pub clock_suspect: bool,
    /// The time of the fix sent with it, if any.
    pub fix_time: Option<DateTime<Utc>>,
}

/// The outcome of storing a device alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInsert {
    /// The row id of the alarm (the existing row for a resend).
    pub id: i64,
    /// It was a resend of an alarm already stored.
    pub duplicate: bool,
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

/// The storage operations trygg needs, implemented for SQLite and PostgreSQL alike. The
/// caseworker's data is in the [`Directory`] part, alarms in the [`Alarms`] part, the push
/// worker's queue and timers in the [`Outbox`] part.
#[async_trait]
pub trait Store: Directory + Alarms + Outbox + Devices + Accounts + Debug + Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a tenant; its name must be unique.
    async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError>;

    /// Creates a wearer in a tenant.
    async fn create_wearer(&self, tenant: TenantId, name: &str) -> Result<WearerId, StoreError>;

    /// Registers a device. Fails with [`StoreError::Conflict`] if the id is registered
    /// anywhere, in this tenant or another.
    async fn register_device(&self, device: &NewDevice) -> Result<(), StoreError>;

    /// Looks a device up for authentication.
    async fn device_auth(&self, id: &DeviceId) -> Result<Option<DeviceAuth>, StoreError>;

    /// Stores the batches in **one** transaction and returns, per batch, how many fixes
    /// were new (the rest were already stored: resends).
    async fn insert_fixes(&self, batches: &[FixBatch]) -> Result<Vec<u64>, StoreError>;

    /// The newest fixes of a device, newest first.
    async fn recent_fixes(&self, device: &DeviceId, limit: u32) -> Result<Vec<StoredFix>, StoreError>;

    /// Stores a device alarm and its fix in one transaction; a resend returns the stored row.
    async fn insert_device_alarm(&self, alarm: &NewDeviceAlarm) -> Result<AlarmInsert, StoreError>;

    /// The alarms a device raised, oldest first.
    async fn device_alarms(&self, device: &DeviceId) -> Result<Vec<StoredDeviceAlarm>, StoreError>;

    /// Deletes fixes older than their tenant's retention (`default_retention_days` for a tenant
    /// without settings) at `now`, except fixes attached to a device alarm and fixes in a
    /// critical alarm's trail ([`alarms::TRAIL_BEFORE`] its trigger until it closes, at most
    /// [`alarms::TRAIL_AFTER_MAX`] after it, so a forgotten open alarm does not keep its device's
    /// fixes forever; technical alerts keep no trail). Returns how many.
    ///
    /// Deletes device by device in batches of [`PURGE_BATCH`] fixes, each its own short
    /// transaction, so ingest's commits wait at most one batch (SQLite has one writer).
    async fn purge_fixes(&self, now: DateTime<Utc>, default_retention_days: u32) -> Result<u64, StoreError>;

    /// Waits for in-flight work and closes the connections.
    async fn close(&self);
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
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, options).await?))
    } else {
        Err(StoreError::BadUrl(url.to_owned()))
    }
}

/// Tells whether `url` names a backend [`connect`] speaks, without connecting.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    let ok = url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
    if ok { Ok(()) } else { Err(StoreError::BadUrl(url.to_owned())) }
}

/// Fixes deleted per statement by [`Store::purge_fixes`].
pub const PURGE_BATCH: i64 = 2000;

/// Runs `delete_batch(device, cutoff)` — which deletes at most [`PURGE_BATCH`] of the device's
/// purgeable fixes older than `cutoff` — for each device until a batch comes back short.
///
/// After each batch it pauses three times as long as the batch took, so the purge holds the
/// database at most a quarter of the time: a SQLite writer that found it locked retries on a
/// back-off of up to 100 ms, and a mere yield would let the purge take the lock again first.
async fn purge_in_batches<F, Fut>(
    devices: Vec<(String, DateTime<Utc>)>,
    mut delete_batch: F,
) -> Result<u64, StoreError>
where
    F: FnMut(String, DateTime<Utc>) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut purged = 0;
    for (device, cutoff) in devices {
        loop {
            let started = std::time::Instant::now();
            let n = delete_batch(device.clone(), cutoff).await?;
            purged += n;
            tokio::time::sleep(started.elapsed() * 3).await;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
    }
    Ok(purged)
}

/// Each device with the time before which its fixes are past its tenant's retention.
async fn purge_cutoffs<'e, DB, E>(
    db: E,
    now: DateTime<Utc>,
    default_retention_days: u32,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row as _;
    let rows = sqlx::query(
        "select d.id, coalesce(s.fix_retention_days, $1) from devices d \
         left join tenant_settings s on s.tenant_id = d.tenant_id order by d.id",
    )
    .bind(i64::from(default_retention_days))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let days: i64 = r.try_get(1)?;
            Ok((r.try_get(0)?, now - chrono::Duration::days(days)))
        })
        .collect()
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

fn parse_id<T>(
    what: &'static str,
    s: String,
    f: impl FnOnce(&str) -> Result<T, uuid::Error>,
) -> Result<T, StoreError> {
    f(&s).map_err(|_| StoreError::Corrupt { what, value: s })
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound("tenant or wearer"),
        _ => StoreError::Database(e),
    }
}
