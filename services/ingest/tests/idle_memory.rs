//! What an idle watch connection costs the server in heap: tens of thousands of watches stay
//! connected between their reports, so this is what a server's memory is made of (the load
//! benchmark's target is 4 KiB of server RSS per idle connection, everything included).
//!
//! This test binary counts every byte the Rust code has allocated and not freed (`stats_alloc`),
//! then connects watches to the real watch listener, each identified by a keep-alive and
//! answered, and divides what stayed allocated by the number of connections. The clients are
//! blocking `std` sockets, which allocate nothing, so only the server's side is counted. SQLite
//! allocates through its own `malloc` and is not counted.

mod common;

use std::alloc::System;
use std::io::{Read, Write};
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use trygg_ingest::{DeviceBinds, DeviceConfig, DeviceListeners};
use trygg_store::Protocol;
use trygg_store::testing::TestDb;

/// The system allocator, keeping count of what is allocated and freed.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed.
fn live_bytes() -> isize {
    let s = ALLOCATOR.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

/// Connections measured; enough that one-off allocations (a map growing, a pool connection)
/// weigh little per connection.
const WATCHES: usize = 400;

/// Heap per idle connection allowed: the 4 KiB of RSS less room for what is not the
/// connection's own (the alarm engine's state for the device, allocator overhead).
const BUDGET_BYTES: isize = 3 << 10;

fn watch_id(k: usize) -> String {
    format!("88{k:08}")
}

/// Connects `id`'s watch, sends its keep-alive and waits for the answer.
fn connect_and_identify(addr: &str, id: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let keepalive = format!("[3G*{id}*0002*LK]");
    s.write_all(keepalive.as_bytes()).unwrap();
    let mut reply = vec![0; keepalive.len()];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, keepalive.as_bytes(), "keep-alive answered");
    s
}

/// Bytes allocated now, once allocations have been still for a moment (the heard writer and
/// the pool flush on their own time).
async fn settled_live_bytes() -> isize {
    let mut last = live_bytes();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = live_bytes();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_identified_watch_connection_holds_at_most_3_kib_of_heap() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let tenant = store.create_tenant("t").await.unwrap();
    for k in 0..=WATCHES {
        common::register(&*store, tenant, &watch_id(k), Protocol::Watch, None).await;
    }
    let ctx = common::device_ingest(store.clone(), DeviceConfig::default());
    let binds = DeviceBinds { watch: Some("127.0.0.1:0".parse().unwrap()), gt06: None, osmand: None };
    let listeners = DeviceListeners::bind(binds, ctx).await.unwrap();
    let addr = listeners.local_addrs()[0].1.to_string();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(listeners.run(stopping));

    // One connection first, so what the first one sets up once (metric labels, pool
    // connections, the links map) is in the "before".
    let warm_addr = addr.clone();
    let warm = tokio::task::spawn_blocking(move || connect_and_identify(&warm_addr, &watch_id(WATCHES)))
        .await
        .unwrap();
    let before = settled_live_bytes().await;
    let open = tokio::task::spawn_blocking(move || {
        (0..WATCHES).map(|k| connect_and_identify(&addr, &watch_id(k))).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let after = settled_live_bytes().await;
    let per_connection = (after - before) / WATCHES as isize;
    eprintln!("{per_connection} bytes of heap per idle watch connection");
    assert!(
        per_connection <= BUDGET_BYTES,
        "an idle watch connection holds {per_connection} bytes of heap; the budget is {BUDGET_BYTES}"
    );

    drop((open, warm));
    stop.send(true).unwrap();
    served.await.unwrap();
}
