//! The embedded SQLite backend: one file in WAL mode.
//!
//! WAL lets readers run beside the single writer; ingest's group commit keeps that writer busy
//! with few, large transactions. `synchronous` decides what a commit survives: `full` (the
//! default) syncs the WAL on every commit, so an acknowledged fix survives a power loss;
//! `normal` syncs only at checkpoints, so it survives a process crash but a power loss may
//! take the last commits. Copying the WAL back into the database file (the checkpoint) is done
//! by a loop beside the writer, not by the commit that fills the WAL (see
//! [`WRITER_CHECKPOINT_PAGES`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::dialect::{Db, Writer};
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

/// Opens (creating if needed) the database at `url`, applies the migrations and starts the
/// checkpoint loop.
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
    let connect = connect.foreign_keys(true).pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES);
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.clone())
        .await?;
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.pragma("cache_size", WRITER_CACHE))
        .await?;
    tokio::spawn(checkpoint_loop(pool.clone()));
    Ok(Db::Sqlite(pool, Writer::new(writer, options.busy_timeout)))
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

/// WAL pages after which a commit checkpoints itself (SQLite's default is 1,000). The
/// checkpoint loop copies the WAL back beside the writer, so the writer only checkpoints what
/// that loop has not yet copied, and rarely: at 10,000 watch fixes/s a commit of ~1,000 fixes
/// touches ~1,000 pages, so the default made every commit checkpoint (copy its pages into the
/// database file and sync it) while holding up the next one. 100,000 pages (~400 MB of WAL at
/// 4 KiB pages) is how far the WAL may grow before the writer's own checkpoint lets it start
/// over from the beginning.
const WRITER_CHECKPOINT_PAGES: &str = "100000";

/// The writer connection's page cache (SQLite's `cache_size`, negative: in KiB): 64 MiB, where
/// SQLite's default is 2 MB. The fixes table is clustered by (device, time), so a group commit
/// writes into the newest page of each device it carries: at M3's load (19,900 watches) a
/// working set of some 20,000 leaf pages, ~80 MB, plus the interior pages above them. With the
/// default cache nearly every row's page was read back from the WAL or the file first. 64 MiB
/// took the commit cost per fix from 64 to 51 µs at that load; 128 MiB measured no better
/// (README, Performance).
const WRITER_CACHE: &str = "-65536";

/// How often the checkpoint loop copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies committed WAL pages back into the database file every [`CHECKPOINT_EVERY`], on a pool
/// connection of its own, so the writer's commits do not wait for it. `passive` waits for
/// nobody: it copies what no reader still needs and leaves the rest for the next round. Ends
/// when the pool is closed.
async fn checkpoint_loop(pool: sqlx::SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("pragma wal_checkpoint(passive)").execute(&pool).await {
            tracing::warn!(error = %e, "Checkpointing the SQLite WAL failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::query;

    #[tokio::test]
    async fn writes_run_on_the_writer_with_its_large_cache_and_reads_keep_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("trygg.db").display());
        let db = connect(&url, &ConnectOptions::default()).await.unwrap();
        let cache_size = |r: crate::dialect::Row| r.get::<i64, _>(0).to_string();

        let mut tx = db.begin_write().await.unwrap();
        assert_eq!(cache_size(query("pragma cache_size").fetch_one(&mut tx).await.unwrap()), WRITER_CACHE);
        // While the writer's transaction is open, readers still answer, from their own cache.
        let read = query("pragma cache_size").fetch_one(&db).await.unwrap();
        assert_ne!(cache_size(read), WRITER_CACHE);
        tx.commit().await.unwrap();
        db.close().await;
    }
}
