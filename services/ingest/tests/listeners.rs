//! Bad input against the real device listeners on port 0 (SQLite): garbage, truncated and
//! malformed frames, a 10 MB line without a terminator, a slow sender, 2,000 idle connections, a
//! connection that switches device id. After each, the server still serves a good watch, and
//! every acknowledged frame is in the database.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trygg_core::DeviceId;
use trygg_ingest::{DeviceBinds, DeviceConfig, DeviceListeners, DeviceMetrics};
use trygg_store::testing::TestDb;
use trygg_store::{Protocol, Store};

struct Setup {
    _db: TestDb,
    store: Arc<dyn Store>,
    watch: String,
    gt06: String,
    metrics: DeviceMetrics,
    stop: tokio::sync::watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

const WATCH: &str = "8800000015";

async fn setup(read_timeout: Duration) -> Setup {
    let any = Some("127.0.0.1:0".parse().unwrap());
    let binds = DeviceBinds { watch: any, gt06: any, osmand: None };
    let (setup, _) = setup_with(binds, DeviceConfig { read_timeout, ..DeviceConfig::default() }).await;
    setup
}

/// The listeners of `binds` on `config`, and every bound address by protocol name.
async fn setup_with(binds: DeviceBinds, config: DeviceConfig) -> (Setup, Vec<(&'static str, String)>) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let tenant = store.create_tenant("t").await.unwrap();
    for (id, protocol) in
        [(WATCH, Protocol::Watch), ("8800000016", Protocol::Watch), ("864717003283581", Protocol::Gt06)]
    {
        common::register(&*store, tenant, id, protocol, None).await;
    }
    let ctx = common::device_ingest(store.clone(), config);
    let device_metrics = ctx.metrics.clone();
    let listeners = DeviceListeners::bind(binds, ctx).await.unwrap();
    let addrs: Vec<_> = listeners.local_addrs().into_iter().map(|(name, a)| (name, a.to_string())).collect();
    let find =
        |n: &str| addrs.iter().find(|(name, _)| *name == n).map(|(_, a)| a.clone()).unwrap_or_default();
    let (watch, gt06) = (find("watch"), find("gt06"));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(listeners.run(stopping));
    (Setup { _db: db, store, watch, gt06, metrics: device_metrics, stop, served }, addrs)
}

/// A UD frame for `WATCH` at the current time plus `offset_s`, with a correct length.
fn ud(offset_s: i64) -> String {
    let t = (Utc::now() + chrono::TimeDelta::seconds(offset_s)).format("%d%m%y,%H%M%S");
    let content = format!("UD,{t},A,57.700000,N,11.970000,E,0,0,0,5,100,80,0,0,00000000,0,0");
    format!("[3G*{WATCH}*{:04X}*{content}]", content.len())
}

async fn read_reply(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut out[got..])).await {
            Ok(Ok(k)) if k > 0 => got += k,
            _ => break,
        }
    }
    out.truncate(got);
    out
}

/// Whether the server closes the connection within `within`.
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), s.read(&mut buf)).await
        {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// A good watch still gets its keep-alive answered.
async fn a_good_watch_is_served(setup: &Setup) {
    let mut s = TcpStream::connect(&setup.watch).await.unwrap();
    s.write_all(format!("[3G*{WATCH}*0002*LK]").as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut s, 23).await, format!("[3G*{WATCH}*0002*LK]").as_bytes());
}

async fn stored(setup: &Setup) -> usize {
    setup.store.recent_fixes(&DeviceId::parse(WATCH).unwrap(), 10_000).await.unwrap().len()
}

#[tokio::test]
async fn garbage_truncated_and_malformed_frames_never_stop_the_good_ones() {
    let setup = setup(Duration::from_secs(60)).await;
    let mut s = TcpStream::connect(&setup.watch).await.unwrap();
    // Garbage, a broken header, a lone bracket, then a good keep-alive split across writes.
    s.write_all(b"\x00\xff garbage \r\n[3G*0002*LK][x").await.unwrap();
    s.write_all(format!("[3G*{WATCH}*00").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"02*LK]").await.unwrap();
    assert_eq!(read_reply(&mut s, 23).await, format!("[3G*{WATCH}*0002*LK]").as_bytes());
    // A wrong length field is counted, not refused: the frame is stored.
    let bad_len = ud(0).replacen("*00", "*FF", 1);
    s.write_all(bad_len.as_bytes()).await.unwrap();
    // A truncated frame, then the connection closes.
    s.write_all(b"[3G*8800000015*0040*UD,0101").await.unwrap();
    drop(s);

    // GT06: a wrong length, a bad CRC (decoded anyway: login acknowledged), garbage.
    let mut g = TcpStream::connect(&setup.gt06).await.unwrap();
    g.write_all(&[0x78, 0x78, 0x02, 0x01, 0x0D, 0x0A, 0x13, 0x37]).await.unwrap();
    let mut login = vec![
        0x78, 0x78, 0x0D, 0x01, 0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81, 0x00, 0x09, 0x00, 0x00, 0x0D,
        0x0A,
    ];
    g.write_all(&login).await.unwrap();
    assert_eq!(read_reply(&mut g, 10).await, [0x78, 0x78, 0x05, 0x01, 0x00, 0x09, 0x55, 0x94, 0x0D, 0x0A]);
    login.truncate(9);
    g.write_all(&login).await.unwrap();
    drop(g);

    a_good_watch_is_served(&setup).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stored(&setup).await < 1 {
        assert!(Instant::now() < deadline, "the frame with a wrong length field was not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_ten_megabyte_line_without_a_terminator_closes_only_that_connection() {
    let setup = setup(Duration::from_secs(60)).await;
    let mut s = TcpStream::connect(&setup.watch).await.unwrap();
    let mut line = format!("[3G*{WATCH}*FFFF*UD,").into_bytes();
    line.resize(10 << 20, b'7');
    // The server closes while we are still writing: the write may fail, which is the point.
    let _ = tokio::time::timeout(Duration::from_secs(20), s.write_all(&line)).await;
    assert!(closed(&mut s, Duration::from_secs(10)).await, "the connection is closed at the frame cap");
    let mut g = TcpStream::connect(&setup.gt06).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), g.write_all(&vec![0x55; 10 << 20])).await;
    assert!(closed(&mut g, Duration::from_secs(10)).await, "bytes without a GT06 start are capped too");
    a_good_watch_is_served(&setup).await;
}

#[tokio::test]
async fn a_slow_sender_holds_up_nobody_and_times_out() {
    let setup = setup(Duration::from_millis(1500)).await;
    let mut slow = TcpStream::connect(&setup.watch).await.unwrap();
    slow.write_all(b"[3G*88000").await.unwrap();
    // Meanwhile a good watch is answered at once.
    let started = Instant::now();
    a_good_watch_is_served(&setup).await;
    assert!(started.elapsed() < Duration::from_secs(1), "the slow sender held up another watch");
    // One byte now and then is not a frame: the read timeout closes the slow connection.
    for b in b"0015*0002*L" {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed(&mut slow, Duration::from_secs(5)).await, "the slow sender timed out");
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_the_listener_serving() {
    let setup = setup(Duration::from_secs(60)).await;
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(TcpStream::connect(&setup.watch).await.unwrap());
    }
    let started = Instant::now();
    a_good_watch_is_served(&setup).await;
    assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    drop(idle);
}

/// The OsmAnd HTTP listener is bounded by the device connection limit: with its one slot
/// held by an open client, the next waits in the backlog and is answered once the first leaves.
#[tokio::test]
async fn osmand_connections_wait_past_the_device_connection_limit() {
    let binds = DeviceBinds { osmand: Some("127.0.0.1:0".parse().unwrap()), ..DeviceBinds::default() };
    let (_setup, addrs) =
        setup_with(binds, DeviceConfig { max_connections: 1, ..DeviceConfig::default() }).await;
    let osmand = &addrs[0].1;
    let request = format!(
        "GET /?id={WATCH}&lat=57.7&lon=11.97&timestamp={} HTTP/1.1\r\nHost: t\r\n\r\n",
        Utc::now().timestamp()
    );
    let mut answer = [0u8; 9];
    let mut first = TcpStream::connect(osmand).await.unwrap();
    first.write_all(request.as_bytes()).await.unwrap();
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 ", "the first client is answered and keeps its connection");

    let mut second = TcpStream::connect(osmand).await.unwrap();
    second.write_all(request.as_bytes()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(700), second.read(&mut answer)).await;
    assert!(waited.is_err(), "answered past the limit: {waited:?}");
    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut answer)).await;
    assert!(matches!(answered, Ok(Ok(_))), "not answered after the slot freed: {answered:?}");
    assert_eq!(&answer, b"HTTP/1.1 ");
}

#[tokio::test]
async fn a_connection_that_switches_device_id_is_closed_and_keeps_what_was_acknowledged() {
    let setup = setup(Duration::from_secs(60)).await;
    let mut s = TcpStream::connect(&setup.watch).await.unwrap();
    s.write_all(format!("[3G*{WATCH}*0002*LK]").as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut s, 23).await.len(), 23);
    // A position, then a keep-alive whose reply proves the position was handled first.
    s.write_all(ud(0).as_bytes()).await.unwrap();
    s.write_all(format!("[3G*{WATCH}*0002*LK]").as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut s, 23).await.len(), 23);
    s.write_all(b"[3G*8800000016*0002*LK]").await.unwrap();
    assert!(closed(&mut s, Duration::from_secs(5)).await, "a switched id closes the connection");
    assert_eq!(setup.metrics.refused_count(Protocol::Watch, "device_id_changed"), 1);
    assert_eq!(stored(&setup).await, 1, "the acknowledged position is kept");

    // An unknown id is refused, counted, and remembered as heard.
    let mut u = TcpStream::connect(&setup.watch).await.unwrap();
    u.write_all(b"[3G*1111111111*0002*LK]").await.unwrap();
    assert!(closed(&mut u, Duration::from_secs(5)).await);
    assert_eq!(setup.metrics.refused_count(Protocol::Watch, "unknown_device"), 1);
    // A GT06 tracker talking to the watch port is refused as registered under another protocol.
    let mut wrong = TcpStream::connect(&setup.watch).await.unwrap();
    wrong.write_all(b"[3G*864717003283581*0002*LK]").await.unwrap();
    assert!(closed(&mut wrong, Duration::from_secs(5)).await);
    assert_eq!(setup.metrics.refused_count(Protocol::Watch, "wrong_protocol"), 1);

    a_good_watch_is_served(&setup).await;
    let _ = setup.stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), setup.served)
        .await
        .expect("listeners drain on shutdown")
        .unwrap();
}
