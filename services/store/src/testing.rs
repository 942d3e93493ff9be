//! Fresh databases for tests: a temporary SQLite file, or a PostgreSQL database created for
//! the test and dropped afterwards.
//!
//! PostgreSQL is found at `TRYGG_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! the server every development and CI machine runs). A missing server fails the test loudly:
//! a backend that silently skips its tests is a backend nobody tests.
//!
//! Also the few set-up steps the tests of several crates take alike (an account, a watch, a
//! tenant's settings), written once so a change to what they need is made in one place.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection};
use trygg_core::{Committed, DeviceAlarmKind, DeviceId, Fix, FixSource, TenantId, WearerId};
use uuid::Uuid;

use crate::{
    ConnectOptions, FixBatch, NewDevice, NewDeviceAlarm, NewFix, NewUser, Protocol, Role, Store,
    SupervisionSettings, TenantSettings, connect,
};

/// Runs each listed test body (an `async fn(Arc<dyn Store>)` in the invoking module) once on a
/// fresh SQLite file and once on a fresh PostgreSQL database, as tests `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { let db = $crate::testing::TestDb::sqlite(); super::$name(db.store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { let db = $crate::testing::TestDb::postgres().await; super::$name(db.store().await).await; })*
        }
    };
}

/// The administrative connection used to create and drop test databases.
pub fn admin_url() -> String {
    std::env::var("TRYGG_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub enum TestDb {
    /// A SQLite file in a temporary directory.
    Sqlite {
        /// The directory, removed on drop.
        dir: tempfile::TempDir,
        /// `sqlite://…` for the file.
        url: String,
    },
    /// A PostgreSQL database created for this test, dropped on drop.
    Postgres {
        /// Its name.
        name: String,
        /// `postgres://…` for it.
        url: String,
    },
}

impl TestDb {
    /// A new, empty SQLite database file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("trygg.db").display());
        Self::Sqlite { dir, url }
    }

    /// A new, empty PostgreSQL database. Panics, naming the URL, if PostgreSQL is unreachable.
    pub async fn postgres() -> Self {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required for these tests but {admin} is unreachable ({e}); start it or set TRYGG_TEST_PG_URL")
        });
        let name = format!("trygg_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self::Postgres { name, url }
    }

    /// The connection URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// Connects a store to this database (applying migrations).
    pub async fn store(&self) -> Arc<dyn Store> {
        connect(self.url(), &ConnectOptions::default()).await.expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Self::Postgres { name, .. } = self {
            let name = name.clone();
            // Drop may run inside a runtime, which cannot block on another: use a thread.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                    sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(_))) {
                eprintln!("warning: could not drop a test database");
            }
        }
    }
}

/// Adds an account of `role` (in `tenant`; `None` for an administrator) with a password hash
/// nobody can log in with, and returns its id.
pub async fn add_user(
    store: &dyn Store,
    tenant: Option<TenantId>,
    role: Role,
    email: &str,
    name: &str,
) -> Uuid {
    let new = NewUser { tenant, email: email.into(), name: name.into(), role, password_hash: "h".into() };
    store.add_user(&new).await.expect("add a user")
}

/// Registers watch `id` in `tenant`, bound to `wearer` from now on when given.
pub async fn add_watch(store: &dyn Store, tenant: TenantId, wearer: Option<WearerId>, id: &str) -> DeviceId {
    let id = DeviceId::parse(id).expect("a valid device id");
    let new = NewDevice { id: id.clone(), tenant, wearer, protocol: Protocol::Watch, token_hash: None };
    store.register_device(&new).await.expect("register a watch");
    id
}

/// A request's batch of `n` fixes of `device` at one place, a second apart, the newest at
/// `newest`, received then: bulk for a long commit.
pub fn fixes_back_from(device: &DeviceId, newest: DateTime<Utc>, n: i64) -> FixBatch {
    let fixes = (0..n)
        .map(|i| NewFix {
            fix: Fix { source: FixSource::Unknown, ..Fix::gps(newest - TimeDelta::seconds(i), 57.7, 11.97) },
            late: false,
        })
        .collect();
    FixBatch { device: device.clone(), received_at: newest, fixes }
}

/// An alarm of `kind` that `device` stamped `time` and the server received at `received_at`,
/// without a fix (add one with `NewDeviceAlarm { fix, ..device_alarm(..) }`).
pub fn device_alarm(
    device: &DeviceId,
    kind: DeviceAlarmKind,
    time: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> NewDeviceAlarm {
    NewDeviceAlarm { device: device.clone(), kind, time, received_at, clock_suspect: false, fix: None }
}

/// Stores `alarm` as ingest would and returns what ingest hands the alarm engine for it, its
/// device being of `tenant` and bound to `wearer`.
pub async fn commit_device_alarm(
    store: &dyn Store,
    tenant: TenantId,
    wearer: Option<WearerId>,
    alarm: &NewDeviceAlarm,
) -> Committed {
    let stored = store.insert_device_alarm(alarm).await.expect("store a device alarm");
    Committed::Alarm {
        tenant,
        wearer,
        device: alarm.device.clone(),
        alarm_id: stored.id,
        kind: alarm.kind,
        duplicate: stored.duplicate,
        fix: alarm.fix.as_ref().map(|f| f.fix.clone()),
    }
}

/// The settings the tests give a tenant (the defaults a new tenant is shown); change a field
/// with `TenantSettings { field, ..tenant_settings() }`.
pub fn tenant_settings() -> TenantSettings {
    TenantSettings {
        time_zone: "Europe/Stockholm".into(),
        exit_policy: "{}".into(),
        offline_after_secs: 900,
        battery_low_pct: 20,
        fix_retention_days: 30,
        on_site_limit_secs: 3600,
        repeat_join_secs: 900,
        fallback_team: None,
        fallback_alarm_centre_url: None,
        supervision: SupervisionSettings::default(),
    }
}
