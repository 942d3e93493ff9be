//! The embedded SQLite backend: one file in WAL mode.
//!
//! WAL lets readers run beside the single writer; ingest's group commit keeps that writer busy
//! with few, large transactions. `synchronous` decides what a commit survives: `full` (the
//! default) syncs the WAL on every commit, so an acknowledged fix survives a power loss;
//! `normal` syncs only at checkpoints, so it survives a process crash but a power loss may
//! take the last commits.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::dialect::Db;
use crate::{ConnectOptions, StoreError};

/// SQLite's `synchronous` pragma, as far as trygg offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Sync the WAL on every commit: survives process crash and power loss.
    Full,
    /// Sync at checkpoints: survives a process crash; a power loss can lose recent commits.
    Normal,
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("unknown synchronous mode {s:?}; expected full or normal")),
        }
    }
}

/// Opens (creating if needed) the database at `url` and applies the migrations.
pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Db, StoreError> {
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|_| StoreError::BadUrl(url.to_owned()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match options.sqlite_synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(options.busy_timeout);
    migrate(&connect).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.foreign_keys(true))
        .await?;
    Ok(Db::Sqlite(pool))
}

/// Applies the migrations on a connection of their own with foreign keys off: SQLite changes a
/// column's constraints only by rebuilding its table (create, copy, drop, rename), and with
/// foreign keys on, dropping the old table would check (and renaming would rewrite) every other
/// table's references to it. `foreign_key_check` afterwards proves every reference still holds.
async fn migrate(connect: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = connect.clone().foreign_keys(false).connect().await?;
    sqlx::migrate!("../../migrations/sqlite").run(&mut conn).await?;
    let broken = sqlx::query("pragma foreign_key_check").fetch_all(&mut conn).await?;
    if let Some(row) = broken.first() {
        let table: String = row.get(0);
        return Err(StoreError::Corrupt { what: "reference after migrating", value: table });
    }
    conn.close().await?;
    Ok(())
}
