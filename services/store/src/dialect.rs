//! The one place where SQLite and PostgreSQL differ, so every query elsewhere is written once.
//!
//! Since migration 0010 both schemas use the same table and column names; what is left are
//! real differences, and they are all here:
//!
//! - **Value encoding.** Ids are `uuid` on PostgreSQL and text on SQLite; times are
//!   `timestamptz` on PostgreSQL and integer milliseconds since the epoch on SQLite; a duration
//!   used in time arithmetic (`al.trigger_time - $3`) is an `interval` on PostgreSQL and
//!   milliseconds on SQLite. A query binds [`Value`]s (a [`Uuid`], a [`DateTime`], a
//!   [`chrono::Duration`], text, numbers) and each backend encodes them its own way in
//!   [`Query`]'s two `bound_*` functions; rows are read back through [`Row`] the same way.
//! - **Write transactions.** SQLite takes the write lock at `begin immediate`
//!   ([`Db::begin_write`]) on the one connection of its [`Writer`], where the process's writers
//!   queue; PostgreSQL locks rows as it goes.
//! - **Claiming rows.** PostgreSQL claims queue rows `for update skip locked` so several
//!   workers (and later several nodes) never take the same row; SQLite has one writer, which
//!   serialises claims anyway ([`Db::skip_locked`]).
//!
//! `$n` placeholders, `on conflict … do update`, `returning` and `coalesce` mean the same to both
//! (a multi-row statement takes them from [`Tx::placeholder`], its size from
//! [`Tx::rows_per_statement`]).
//!
//! Why not a generic store over `sqlx::Database`: sqlx's bounds (`for<'q> Arguments<'q>:
//! IntoArguments`, `Encode`/`Decode`/`Type` for every bound type) are not implied by a trait,
//! so every query function would repeat a dozen `where` lines. Why not sqlx's `Any` driver: it
//! carries neither `uuid` nor `timestamptz`, so it would force both schemas down to text and
//! integers. Why not a query constant per dialect: that writes every query twice again. The
//! price of this seam is one `match` per statement, nothing next to a round trip.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{ColumnIndex, Decode, PgPool, Postgres, Sqlite, SqlitePool, Type};
use tokio::sync::{Mutex, OwnedMutexGuard};
use trygg_core::{TenantId, WearerId};
use uuid::Uuid;

use crate::StoreError;

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// An embedded SQLite file: connections that read, and the one that writes.
    Sqlite(SqlitePool, Writer),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

/// SQLite's one writer: a connection of its own, and the queue to it inside this process.
///
/// **Its own connection**, with a page cache large enough for ingest's working set
/// ([`crate::sqlite`]'s `WRITER_CACHE`): a group commit touches the newest page of every device
/// it carries, and on a pooled connection with SQLite's default 2 MB cache most of those pages
/// had to be read back from the file (or the WAL) every time. Giving every pooled connection the
/// large cache would hold it as many times over; readers touch few pages.
///
/// **The queue.** A SQLite writer that finds the lock taken polls for it, sleeping between tries
/// up to 100 ms (SQLite's busy handler), so a small write (the alarm engine's commit, the push
/// worker's claim) behind a group commit, or a group commit behind it, could wait up to 100 ms
/// past the moment the lock was free, with every write queued behind it. Writers of this
/// process wait here instead, in order, each entering the moment the one before lets go. The
/// busy handler is left for writers of other processes. Waiting here is bounded like a
/// connection from the pool: past the busy timeout it fails as [`sqlx::Error::PoolTimedOut`].
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    connection: SqlitePool,
    lock: Arc<Mutex<()>>,
    timeout: Duration,
}

impl Writer {
    /// The writer on `connection`, a pool of one connection; `timeout` bounds the queue.
    pub(crate) fn new(connection: SqlitePool, timeout: Duration) -> Self {
        Self { connection, lock: Arc::new(Mutex::new(())), timeout }
    }

    /// Waits for the writer's turn; the writer's connection is this process's until the guard
    /// drops.
    async fn enter(&self) -> Result<OwnedMutexGuard<()>, sqlx::Error> {
        tokio::time::timeout(self.timeout, self.lock.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }
}

/// A transaction of either backend; dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub(crate) enum Tx {
    /// On SQLite, on the writer's connection, holding the write lock (and the writer's turn,
    /// given up after the transaction ends: fields drop in order).
    Sqlite { tx: sqlx::Transaction<'static, Sqlite>, _entered: OwnedMutexGuard<()> },
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Db {
    /// Starts a transaction that will write. SQLite takes the write lock from its first
    /// statement (`begin immediate`): a deferred transaction that reads first cannot take the
    /// write lock once another connection has committed since (SQLite answers busy at once,
    /// without waiting for the busy timeout), so it would fail under concurrent writers instead
    /// of queueing. Before that, a SQLite writer waits its turn at the [`Writer`]. PostgreSQL's
    /// row locks and `for update skip locked` do the rest there.
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(_, writer) => {
                let entered = writer.enter().await?;
                Tx::Sqlite { tx: writer.connection.begin_with("begin immediate").await?, _entered: entered }
            }
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// How many write transactions can make progress at once: SQLite has one write lock;
    /// on PostgreSQL, writers of different rows overlap, up to the pool's size.
    pub(crate) fn parallel_writes(&self) -> usize {
        match self {
            Self::Sqlite(..) => 1,
            Self::Postgres(pool) => pool.options().get_max_connections() as usize,
        }
    }

    /// What ends a claim's row selection: ` for update skip locked` on PostgreSQL, so two
    /// workers never claim the same row; nothing on SQLite, whose single writer serialises claims.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self {
            Self::Sqlite(..) => "",
            Self::Postgres(_) => " for update skip locked",
        }
    }

    /// Waits for in-flight work and closes the connections.
    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(pool, writer) => {
                writer.connection.close().await;
                pool.close().await;
            }
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    /// Placeholder number `n`, for a multi-row statement (a group commit's insert).
    /// SQLite looks a `$n` up by name, a linear search per placeholder that makes a 6,000-value
    /// statement's parse quadratic, but takes `?n` by its number; PostgreSQL knows only `$n`.
    pub(crate) fn placeholder(&self, n: usize) -> String {
        match self {
            Self::Sqlite { .. } => format!("?{n}"),
            Self::Postgres(_) => format!("${n}"),
        }
    }

    /// How many rows of `columns` values one multi-row statement should carry.
    ///
    /// PostgreSQL: 500 rows, far under its 65,535 parameters; fewer statements are fewer round
    /// trips. SQLite: at most 256 values. sqlx binds each value after asking SQLite the
    /// parameter's name, which SQLite finds by a linear search of the statement's parameters,
    /// so binding n values costs n²: at 6,000 values that search took over a third of the
    /// server's CPU under watch load. 256 values keep it a few microseconds per row, next to
    /// the cost of one more statement on an in-process database.
    pub(crate) fn rows_per_statement(&self, columns: usize) -> usize {
        match self {
            Self::Sqlite { .. } => (256 / columns.max(1)).max(1),
            Self::Postgres(_) => 500,
        }
    }

    /// Commits the transaction.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite { tx, .. } => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Where a statement runs: on a pooled connection or inside a transaction.
#[derive(Debug)]
pub(crate) enum On<'c> {
    /// Any connection of the pool.
    Pool(&'c Db),
    /// The transaction's connection.
    Tx(&'c mut Tx),
}

impl<'c> From<&'c Db> for On<'c> {
    fn from(db: &'c Db) -> Self {
        Self::Pool(db)
    }
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        Self::Tx(tx)
    }
}

/// A value bound to a placeholder, encoded by each backend its own way.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    /// Text.
    Text(Option<Cow<'a, str>>),
    /// A 64-bit integer.
    Int(Option<i64>),
    /// A 16-bit integer (PostgreSQL `smallint` columns).
    Small(Option<i16>),
    /// A float.
    Real(Option<f64>),
    /// A boolean.
    Bool(Option<bool>),
    /// An id: `uuid` on PostgreSQL, text on SQLite.
    Id(Option<Uuid>),
    /// A time: `timestamptz` on PostgreSQL, milliseconds since the epoch on SQLite.
    Time(Option<DateTime<Utc>>),
    /// A duration to add to or subtract from a time column: `interval` on PostgreSQL,
    /// milliseconds on SQLite.
    Span(chrono::Duration),
}

/// `From` for a type and its `Option`, into one [`Value`] variant.
macro_rules! value_from {
    ($($t:ty => $variant:ident $(via $conv:expr)?),* $(,)?) => {$(
        impl<'a> From<$t> for Value<'a> {
            fn from(v: $t) -> Self {
                Value::$variant(Some(v).map($($conv)?))
            }
        }
        impl<'a> From<Option<$t>> for Value<'a> {
            fn from(v: Option<$t>) -> Self {
                Value::$variant(v.map($($conv)?))
            }
        }
    )*};
}

fn same<T>(v: T) -> T {
    v
}

value_from! {
    &'a str => Text via Cow::Borrowed,
    &'a String => Text via |s: &'a String| Cow::Borrowed(s.as_str()),
    String => Text via Cow::Owned,
    i64 => Int via same,
    i16 => Small via same,
    i32 => Int via i64::from,
    f64 => Real via same,
    bool => Bool via same,
    Uuid => Id via same,
    TenantId => Id via |t: TenantId| t.0,
    WearerId => Id via |w: WearerId| w.0,
    DateTime<Utc> => Time via same,
}

impl From<chrono::Duration> for Value<'_> {
    fn from(d: chrono::Duration) -> Self {
        Value::Span(d)
    }
}

/// A statement with its bound values, run with [`Query::execute`] or one of the fetches.
#[derive(Debug)]
pub(crate) struct Query<'a> {
    sql: Cow<'a, str>,
    args: Vec<Value<'a>>,
}

/// Prepares `sql` (lowercase, `$n` placeholders in binding order).
pub(crate) fn query<'a>(sql: impl Into<Cow<'a, str>>) -> Query<'a> {
    Query { sql: sql.into(), args: Vec::new() }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done(u64);

impl Done {
    /// How many rows it inserted, updated or deleted.
    pub(crate) fn rows_affected(self) -> u64 {
        self.0
    }
}

impl<'a> Query<'a> {
    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Value<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    fn bound_sqlite(&self) -> sqlx::query::Query<'_, Sqlite, SqliteArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for v in &self.args {
            q = match v {
                Value::Text(t) => q.bind(t.as_deref()),
                Value::Int(i) => q.bind(*i),
                Value::Small(i) => q.bind(*i),
                Value::Real(f) => q.bind(*f),
                Value::Bool(b) => q.bind(*b),
                Value::Id(id) => q.bind(id.map(|id| id.to_string())),
                Value::Time(t) => q.bind(t.map(|t| t.timestamp_millis())),
                Value::Span(d) => q.bind(d.num_milliseconds()),
            };
        }
        q
    }

    fn bound_postgres(&self) -> sqlx::query::Query<'_, Postgres, PgArguments> {
        let mut q = sqlx::query(&self.sql);
        for v in &self.args {
            q = match v {
                Value::Text(t) => q.bind(t.as_deref()),
                Value::Int(i) => q.bind(*i),
                Value::Small(i) => q.bind(*i),
                Value::Real(f) => q.bind(*f),
                Value::Bool(b) => q.bind(*b),
                Value::Id(id) => q.bind(*id),
                Value::Time(t) => q.bind(*t),
                Value::Span(d) => q.bind(*d),
            };
        }
        q
    }

    /// Runs a statement that returns no rows.
    pub(crate) async fn execute(self, on: impl Into<On<'_>>) -> Result<Done, sqlx::Error> {
        let done = match on.into() {
            On::Pool(Db::Sqlite(_, writer)) => {
                let _entered = writer.enter().await?;
                self.bound_sqlite().execute(&writer.connection).await?.rows_affected()
            }
            On::Pool(Db::Postgres(p)) => self.bound_postgres().execute(p).await?.rows_affected(),
            On::Tx(Tx::Sqlite { tx, .. }) => self.bound_sqlite().execute(&mut **tx).await?.rows_affected(),
            On::Tx(Tx::Postgres(tx)) => self.bound_postgres().execute(&mut **tx).await?.rows_affected(),
        };
        Ok(Done(done))
    }

    /// Every row.
    pub(crate) async fn fetch_all(self, on: impl Into<On<'_>>) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match on.into() {
            On::Pool(Db::Sqlite(p, _)) => rows(self.bound_sqlite().fetch_all(p).await?, Row::Sqlite),
            On::Pool(Db::Postgres(p)) => rows(self.bound_postgres().fetch_all(p).await?, Row::Postgres),
            On::Tx(Tx::Sqlite { tx, .. }) => {
                rows(self.bound_sqlite().fetch_all(&mut **tx).await?, Row::Sqlite)
            }
            On::Tx(Tx::Postgres(tx)) => {
                rows(self.bound_postgres().fetch_all(&mut **tx).await?, Row::Postgres)
            }
        })
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(self, on: impl Into<On<'_>>) -> Result<Option<Row>, sqlx::Error> {
        Ok(match on.into() {
            On::Pool(Db::Sqlite(p, _)) => self.bound_sqlite().fetch_optional(p).await?.map(Row::Sqlite),
            On::Pool(Db::Postgres(p)) => self.bound_postgres().fetch_optional(p).await?.map(Row::Postgres),
            On::Tx(Tx::Sqlite { tx, .. }) => {
                self.bound_sqlite().fetch_optional(&mut **tx).await?.map(Row::Sqlite)
            }
            On::Tx(Tx::Postgres(tx)) => {
                self.bound_postgres().fetch_optional(&mut **tx).await?.map(Row::Postgres)
            }
        })
    }

    /// The first row; [`sqlx::Error::RowNotFound`] if there is none.
    pub(crate) async fn fetch_one(self, on: impl Into<On<'_>>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(on).await?.ok_or(sqlx::Error::RowNotFound)
    }
}

fn rows<R>(rows: Vec<R>, wrap: fn(R) -> Row) -> Vec<Row> {
    rows.into_iter().map(wrap).collect()
}

/// A result row of either backend.
pub(crate) enum Row {
    /// From SQLite.
    Sqlite(SqliteRow),
    /// From PostgreSQL.
    Postgres(PgRow),
}

/// A column type both backends decode the same way (text, integers, floats, booleans).
pub(crate) trait Plain:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Plain for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl Row {
    /// Column `i`; panics, like [`sqlx::Row::get`], if the column is missing or of another type
    /// (a query and its reader disagreeing is a bug, not a data error).
    pub(crate) fn get<T: Plain, I>(&self, i: I) -> T
    where
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + std::fmt::Debug,
    {
        use sqlx::Row as _;
        match self {
            Self::Sqlite(r) => r.get(i),
            Self::Postgres(r) => r.get(i),
        }
    }
}

/// An id column.
pub(crate) fn get_uuid(r: &Row, i: usize) -> Result<Uuid, StoreError> {
    get_opt_uuid(r, i)?.ok_or(StoreError::Corrupt { what: "id", value: String::new() })
}

/// A nullable id column.
pub(crate) fn get_opt_uuid(r: &Row, i: usize) -> Result<Option<Uuid>, StoreError> {
    use sqlx::Row as _;
    match r {
        Row::Sqlite(r) => r
            .get::<Option<String>, _>(i)
            .map(|s| Uuid::parse_str(&s).map_err(|_| StoreError::Corrupt { what: "id", value: s }))
            .transpose(),
        Row::Postgres(r) => Ok(r.get(i)),
    }
}

/// A time column.
pub(crate) fn get_time(r: &Row, i: usize) -> Result<DateTime<Utc>, StoreError> {
    get_opt_time(r, i)?.ok_or(StoreError::Corrupt { what: "time", value: String::new() })
}

/// A nullable time column.
pub(crate) fn get_opt_time(r: &Row, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    use sqlx::Row as _;
    match r {
        Row::Sqlite(r) => r
            .get::<Option<i64>, _>(i)
            .map(|ms| {
                DateTime::from_timestamp_millis(ms)
                    .ok_or(StoreError::Corrupt { what: "time", value: ms.to_string() })
            })
            .transpose(),
        Row::Postgres(r) => Ok(r.get(i)),
    }
}
