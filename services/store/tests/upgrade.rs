//! A SQLite database made by the release before migration 0010 (migrations 0001–0008, one row
//! in every table, with that release's column names) upgrades in place: every row is still
//! there afterwards, and the store finds it under the new names. PostgreSQL's 0010 changes
//! nothing (its names were already these), so only SQLite has something to upgrade.

use std::collections::BTreeMap;

use chrono::DateTime;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use trygg_core::{DeviceAlarmKind, DeviceId, FixSource, TenantId, WearerId};
use trygg_store::testing::TestDb;
use trygg_store::{ConnectOptions, connect};
use uuid::Uuid;

/// The last migration of the release before 0010.
const RELEASE_VERSION: &str = "0008";

/// Builds the old release's schema with its own migration files (0001–0008, as released).
async fn old_release_database(url: &str) -> SqliteConnection {
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let released = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name[..4] <= *RELEASE_VERSION {
            std::fs::copy(&path, released.path().join(&name)).unwrap();
        }
    }
    let options: SqliteConnectOptions = url.parse().unwrap();
    let mut conn = options.create_if_missing(true).foreign_keys(false).connect().await.unwrap();
    Migrator::new(released.path()).await.unwrap().run(&mut conn).await.unwrap();
    conn
}

async fn row_counts(conn: &mut SqliteConnection) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' \
         and name <> '_sqlx_migrations' order by name",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut counts = BTreeMap::new();
    for table in tables {
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&mut *conn).await.unwrap();
        counts.insert(table, n);
    }
    counts
}

#[tokio::test]
async fn a_database_of_the_previous_release_keeps_every_row_through_the_upgrade() {
    let db = TestDb::sqlite();
    let mut old = old_release_database(db.url()).await;
    sqlx::raw_sql(include_str!("fixtures/sqlite_release_0008.sql")).execute(&mut old).await.unwrap();
    let before = row_counts(&mut old).await;
    assert!(before.values().all(|&n| n > 0), "the fixture fills every table: {before:?}");
    old.close().await.unwrap();

    let store = connect(db.url(), &ConnectOptions::default()).await.expect("the upgrade applies");
    store.close().await;
    let mut upgraded = db.url().parse::<SqliteConnectOptions>().unwrap().connect().await.unwrap();
    // Tables added by later migrations start empty; every table of the release keeps its rows.
    let mut after = row_counts(&mut upgraded).await;
    after.retain(|table, _| before.contains_key(table));
    assert_eq!(after, before, "every table keeps its rows");
    upgraded.close().await.unwrap();

    // The renamed columns read back through the store, with their values.
    let store = connect(db.url(), &ConnectOptions::default()).await.unwrap();
    let ms = |v: i64| DateTime::from_timestamp_millis(v).unwrap();
    let tenant = TenantId(Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap());
    let wearer = WearerId(Uuid::parse_str("00000000-0000-4000-8000-000000000031").unwrap());
    let device = DeviceId::parse("watch-1").unwrap();

    assert_eq!(store.tenant(tenant).await.unwrap().unwrap().name, "Skövde kommun");
    assert_eq!(store.wearer(tenant, wearer).await.unwrap().unwrap().fields.note, "Portkod 1234");
    assert_eq!(store.device_auth(&device).await.unwrap().unwrap().wearer, Some(wearer));

    let fixes = store.recent_fixes(&device, 10).await.unwrap();
    assert_eq!(fixes.len(), 2);
    assert_eq!(
        (fixes[0].fix.time, fixes[0].received_at, fixes[0].late),
        (ms(1767229100000), ms(1767229101500), true)
    );
    assert_eq!((fixes[1].fix.time, fixes[1].received_at), (ms(1767229000000), ms(1767229001000)));
    assert_eq!((fixes[1].fix.battery_pct, fixes[1].fix.source), (Some(81), FixSource::Gps));

    let alarms = store.device_alarms(&device).await.unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!((alarms[0].id, alarms[0].kind), (7, DeviceAlarmKind::Sos));
    assert_eq!((alarms[0].time, alarms[0].received_at), (ms(1767229100000), ms(1767229101500)));
    assert_eq!(alarms[0].fix_time, Some(ms(1767229100000)));
    assert_eq!(store.last_heard(&device).await.unwrap(), Some(ms(1767229101500)), "the newest receipt");

    // New rows go in next to the old ones under the new names.
    let again = store.create_tenant("Mariestads kommun").await.unwrap();
    assert!(store.tenant(again).await.unwrap().is_some());
    store.close().await;
}
