//! The PostgreSQL backend, for installations that run several nodes or want a managed database.
//!
//! A commit returns once the WAL is flushed (with the default `synchronous_commit = on`), so an
//! acknowledged fix survives a crash of trygg, of PostgreSQL and a power loss of the database
//! host. Timestamps are `timestamptz`, ids `uuid`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use crate::dialect::Db;
use crate::{ConnectOptions, StoreError};

/// Connects to `url` and applies the migrations (under an advisory lock, so several nodes
/// starting at once apply them once).
pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Db, StoreError> {
    let connect = PgConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl(url.to_owned()))?;
    // Migrations may rewrite large tables: they run on their own connection, without the
    // statement timeout the pool's connections get.
    let mut migrating = tokio::time::timeout(options.busy_timeout, PgConnection::connect_with(&connect))
        .await
        .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
    sqlx::migrate!("../../migrations/postgres").run(&mut migrating).await?;
    migrating.close().await?;
    let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.options([("statement_timeout", statement_timeout.as_str())]))
        .await?;
    Ok(Db::Postgres(pool))
}
