//! What the watch, GT06 and OsmAnd listeners share: who a device is, how its positions and
//! alarms are committed, the registry of open connections that server commands go through, and
//! the listeners' metrics.
//!
//! These protocols carry no credential: the device id is the only identity. So an id must be
//! registered, under the protocol it speaks, before anything it sends is stored; an unknown id is
//! refused, counted and remembered (when and over which protocol it was heard), so the tenant
//! admin who registers it later sees that it was heard before.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use trygg_core::{
    CommandError, DeviceAlarmKind, DeviceCommand, DeviceCommands, DeviceId, Fix, Freshness, TenantId,
    WearerId,
};
use trygg_store::{DeviceHeard, FixBatch, NewFix, Protocol};

use crate::alarm::{Sender, store_device_alarm, truncate_to_millis};
use crate::heard::HeardWriter;
use crate::{Committed, Ingest, IngestError};

/// Settings shared by the device listeners.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    /// Most open device connections, over all TCP listeners; more wait in the accept backlog.
    pub max_connections: usize,
    /// A connection that delivers no complete frame for this long is closed (mobile links go
    /// half-open without a FIN; watches send a keep-alive about every 5 minutes).
    pub read_timeout: Duration,
    /// Largest frame accepted; a connection sending a longer one is closed.
    pub max_frame_bytes: usize,
}

impl Default for DeviceConfig {
    /// 20,000 connections, 600 s, 64 KiB.
    fn default() -> Self {
        Self { max_connections: 20_000, read_timeout: Duration::from_secs(600), max_frame_bytes: 64 << 10 }
    }
}

/// Everything a device listener needs: cheap to clone.
#[derive(Debug, Clone)]
pub struct DeviceIngest {
    /// The same store, committer, sink and policy as native ingest.
    pub ingest: Ingest,
    /// Open connections, for server commands.
    pub links: DeviceLinks,
    /// Counters.
    pub metrics: DeviceMetrics,
    /// Limits and timeouts.
    pub config: DeviceConfig,
    /// Where "heard" records go, many devices per write.
    pub heard: HeardWriter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    protocol: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

/// The device listeners' Prometheus metrics. Labels are protocol names and fixed reasons, never
/// device ids.
#[derive(Debug, Clone)]
pub struct DeviceMetrics {
    connections: Family<ProtocolLabel, Counter>,
    open: Family<ProtocolLabel, Gauge>,
    refused: Family<Outcome, Counter>,
    frames: Family<Outcome, Counter>,
    garbage_bytes: Family<ProtocolLabel, Counter>,
    commands: Family<CommandLabel, Counter>,
}

impl DeviceMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            connections: Family::default(),
            open: Family::default(),
            refused: Family::default(),
            frames: Family::default(),
            garbage_bytes: Family::default(),
            commands: Family::default(),
        };
        registry.register(
            "trygg_device_connections",
            "Device TCP connections accepted, by protocol",
            m.connections.clone(),
        );
        registry.register("trygg_device_connections_open", "Device TCP connections open now", m.open.clone());
        registry.register(
            "trygg_device_refused",
            "Devices refused (unknown_device, wrong_protocol, bad_id, device_id_changed), by protocol",
            m.refused.clone(),
        );
        registry.register(
            "trygg_device_frames",
            "Device frames by outcome (ok, length_mismatch, bad_crc, malformed, before_login, unreadable)",
            m.frames.clone(),
        );
        registry.register(
            "trygg_device_garbage_bytes",
            "Bytes skipped before a frame start, by protocol",
            m.garbage_bytes.clone(),
        );
        registry.register(
            "trygg_device_commands",
            "Commands sent to devices, by command",
            m.commands.clone(),
        );
        m
    }

    /// Metrics registered nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }

    pub(crate) fn connection_opened(&self, protocol: Protocol) {
        let label = ProtocolLabel { protocol: protocol.as_str() };
        self.connections.get_or_create(&label).inc();
        self.open.get_or_create(&label).inc();
    }

    pub(crate) fn connection_closed(&self, protocol: Protocol) {
        self.open.get_or_create(&ProtocolLabel { protocol: protocol.as_str() }).dec();
    }

    pub(crate) fn refused(&self, protocol: Protocol, reason: &'static str) {
        self.refused.get_or_create(&Outcome { protocol: protocol.as_str(), outcome: reason }).inc();
    }

    pub(crate) fn frame(&self, protocol: Protocol, outcome: &'static str) {
        self.frames.get_or_create(&Outcome { protocol: protocol.as_str(), outcome }).inc();
    }

    pub(crate) fn garbage(&self, protocol: Protocol, bytes: usize) {
        if bytes > 0 {
            self.garbage_bytes
                .get_or_create(&ProtocolLabel { protocol: protocol.as_str() })
                .inc_by(bytes as u64);
        }
    }

    /// Devices refused for `reason` (test helper and `/metrics` reader).
    pub fn refused_count(&self, protocol: Protocol, reason: &'static str) -> u64 {
        self.refused.get_or_create(&Outcome { protocol: protocol.as_str(), outcome: reason }).get()
    }
}

/// An open connection a command can be written to.
#[derive(Debug)]
struct Link {
    connection: u64,
    protocol: Protocol,
    /// The watch's maker prefix (`3G`, `SG`, …), used in commands.
    maker: String,
    outgoing: Arc<Outgoing>,
}

/// Most commands waiting to be written on one connection.
const MAX_WAITING_COMMANDS: usize = 8;

/// The commands waiting to be written on one connection. A connection almost always has none,
/// and there are tens of thousands of them, so this is an empty queue and a `Notify`, some
/// hundred bytes, where a channel would hold a block of slots (about a kilobyte) for each.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    waiting: Mutex<VecDeque<Vec<u8>>>,
    ready: Notify,
}

impl Outgoing {
    /// Queues a command; `false` when the connection is gone (its task, which holds the other
    /// reference, has ended, however it ended) or already has enough waiting.
    fn push(self: &Arc<Self>, bytes: Vec<u8>) -> bool {
        let mut waiting = self.waiting.lock().expect("outgoing commands lock");
        if Arc::strong_count(self) < 2 || waiting.len() >= MAX_WAITING_COMMANDS {
            return false;
        }
        waiting.push_back(bytes);
        drop(waiting);
        self.ready.notify_one();
        true
    }

    /// The next command to write, once there is one. Cancel-safe: a command is taken from the
    /// queue only in the poll that returns it, and a wake-up missed while not polled is kept
    /// by the `Notify` for the next call.
    pub(crate) async fn next(&self) -> Vec<u8> {
        loop {
            if let Some(bytes) = self.waiting.lock().expect("outgoing commands lock").pop_front() {
                return bytes;
            }
            self.ready.notified().await;
        }
    }
}

/// The open device connections of this server, by device id: how a caseworker's command reaches
/// a watch. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DeviceLinks {
    links: Arc<Mutex<HashMap<DeviceId, Link>>>,
    next: Arc<AtomicU64>,
}

impl DeviceLinks {
    /// Sends a command on the device's open connection (queued to its connection task, which
    /// writes it between frames). Logged at info.
    pub fn send(&self, device: &DeviceId, command: DeviceCommand) -> Result<(), CommandError> {
        let links = self.links.lock().expect("device links lock");
        let link = links.get(device).ok_or(CommandError::NotConnected)?;
        let bytes = match link.protocol {
            Protocol::Watch => {
                // Traccar's encoder answers a `3G` watch with `SG`; other prefixes are echoed.
                let prefix = if link.maker == "3G" { "SG" } else { link.maker.as_str() };
                let encoded = match command {
                    DeviceCommand::Locate => {
                        trygg_protocols::watch::locate_now_command(prefix, device.as_str())
                    }
                    DeviceCommand::UploadInterval { secs } => {
                        trygg_protocols::watch::upload_interval_command(prefix, device.as_str(), secs)
                    }
                };
                encoded.map_err(|_| CommandError::Unsupported { protocol: "watch" })?
            }
            other => return Err(CommandError::Unsupported { protocol: other.as_str() }),
        };
        if !link.outgoing.push(bytes) {
            return Err(CommandError::NotConnected);
        }
        tracing::info!(%device, command = %command.describe(), "Command sent to device");
        Ok(())
    }

    /// Whether the device has an open connection here.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.links.lock().expect("device links lock").contains_key(device)
    }

    /// Registers a connection; a newer connection of the same device replaces an older one (the
    /// old one is usually half-open). Returns the connection's number for [`Self::close`].
    pub(crate) fn open(
        &self,
        device: &DeviceId,
        protocol: Protocol,
        maker: &str,
        outgoing: Arc<Outgoing>,
    ) -> u64 {
        let connection = self.next.fetch_add(1, Ordering::Relaxed);
        let link = Link { connection, protocol, maker: maker.to_owned(), outgoing };
        self.links.lock().expect("device links lock").insert(device.clone(), link);
        connection
    }

    /// Removes the connection, unless a newer one of the same device replaced it.
    pub(crate) fn close(&self, device: &DeviceId, connection: u64) {
        let mut links = self.links.lock().expect("device links lock");
        if links.get(device).is_some_and(|l| l.connection == connection) {
            links.remove(device);
        }
    }
}

impl DeviceCommands for DeviceLinks {
    fn send(&self, device: &DeviceId, command: DeviceCommand) -> Result<(), CommandError> {
        DeviceLinks::send(self, device, command)
    }
}

/// How often a connection re-reads its device's registration, so a watch rebound to another
/// wearer (or moved to another time zone) while connected is attributed correctly.
const PROFILE_REFRESH: Duration = Duration::from_secs(60);

/// Why a device was refused: the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The id is not registered (or not a valid id).
    Unknown,
    /// Registered under another protocol.
    WrongProtocol,
    /// The database did not answer; the device will reconnect.
    Unavailable,
}

/// An identified device on a connection (or one OsmAnd request).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) device: DeviceId,
    pub(crate) protocol: Protocol,
    pub(crate) tenant: TenantId,
    pub(crate) wearer: Option<WearerId>,
    /// The device's configured clock offset, if set.
    pub(crate) configured_offset: Option<FixedOffset>,
    /// The offset the device announced itself (GT06 login), used when none is configured.
    pub(crate) announced_offset: Option<FixedOffset>,
    loaded: Instant,
}

impl Session {
    /// The offset the device clock is read at: the configured one, else the one the device
    /// announced, else UTC.
    pub(crate) fn utc_offset(&self) -> FixedOffset {
        self.configured_offset
            .or(self.announced_offset)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("0 is valid"))
    }

    pub(crate) fn sender(&self) -> Sender {
        Sender { tenant: self.tenant, wearer: self.wearer, device: self.device.clone() }
    }
}

impl DeviceIngest {
    /// Identifies a device by the id it sent over `protocol`, counting and recording a refusal.
    pub(crate) async fn identify(&self, raw_id: &str, protocol: Protocol) -> Result<Session, Refused> {
        let Ok(device) = DeviceId::parse(raw_id) else {
            self.metrics.refused(protocol, "bad_id");
            tracing::info!(protocol = protocol.as_str(), "Device refused: the id is not a valid device id");
            return Err(Refused::Unknown);
        };
        let store = &self.ingest.store;
        let profile = match store.device_profile(&device).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, %device, "Looking a device up failed; closing its connection");
                return Err(Refused::Unavailable);
            }
        };
        let Some(profile) = profile else {
            self.metrics.refused(protocol, "unknown_device");
            tracing::info!(%device, protocol = protocol.as_str(), "Unregistered device refused");
            if let Err(e) = store.unregistered_heard(&device, protocol, Utc::now()).await {
                tracing::warn!(error = %e, %device, "Recording an unregistered device failed");
            }
            return Err(Refused::Unknown);
        };
        if profile.protocol != protocol {
            self.metrics.refused(protocol, "wrong_protocol");
            tracing::info!(
                %device,
                registered = profile.protocol.as_str(),
                spoke = protocol.as_str(),
                "Device refused: registered under another protocol"
            );
            return Err(Refused::WrongProtocol);
        }
        Ok(Session {
            device,
            protocol,
            tenant: profile.tenant,
            wearer: profile.wearer,
            configured_offset: profile.utc_offset_minutes.and_then(trygg_protocols::utc_offset_from_minutes),
            announced_offset: None,
            loaded: Instant::now(),
        })
    }

    /// Re-reads the device's registration when it is older than a minute. `Err` if the device
    /// is no longer registered under this protocol (close the connection).
    pub(crate) async fn refresh(&self, session: &mut Session) -> Result<(), Refused> {
        if session.loaded.elapsed() < PROFILE_REFRESH {
            return Ok(());
        }
        let announced = session.announced_offset;
        let fresh = self.identify(session.device.as_str(), session.protocol).await?;
        *session = Session { announced_offset: announced, ..fresh };
        Ok(())
    }

    /// Records that the device was heard, with the battery it reported, and hands the battery
    /// level to the sink (the battery rules judge it like a fix's); a failure is logged, never
    /// fatal (it is status, not data the device needs acknowledged).
    pub(crate) async fn heard(&self, session: &Session, battery_pct: Option<u8>) {
        let now = Utc::now();
        let heard = DeviceHeard { device: session.device.clone(), at: now, battery_pct };
        if let Err(e) = self.heard.record(heard).await {
            tracing::warn!(error = %e, device = %session.device, "Recording a device as heard failed");
        }
        if let Some(battery_pct) = battery_pct {
            tracing::debug!(device = %session.device, battery_pct, "Device battery");
            self.ingest.sink.committed(Committed::KeepAlive {
                tenant: session.tenant,
                wearer: session.wearer,
                device: session.device.clone(),
                at: now,
                battery_pct,
            });
        }
    }

    /// Commits positions through the group committer and hands them to the sink. Positions the
    /// fix policy refuses are counted and dropped (a resend would be refused the same way).
    pub(crate) async fn commit_fixes(&self, session: &Session, fixes: Vec<Fix>) -> Result<(), IngestError> {
        let ingest = &self.ingest;
        let now = Utc::now();
        let mut accepted = Vec::with_capacity(fixes.len());
        for fix in fixes.into_iter().map(truncate_to_millis) {
            match ingest.policy.check(&fix, now) {
                Ok(freshness) => accepted.push(NewFix { fix, late: freshness == Freshness::Late }),
                Err(e) => {
                    ingest.metrics.fix_rejected(e.code());
                    tracing::debug!(device = %session.device, error = %e, "Device position refused");
                }
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        ingest.metrics.fixes_received(accepted.len());
        let committed = accepted.iter().map(|f| f.fix.clone()).collect();
        let batch = FixBatch { device: session.device.clone(), received_at: now, fixes: accepted };
        ingest.committer.commit(batch, tokio::time::Instant::now() + ingest.timeout).await?;
        ingest.sink.committed(Committed::Fixes {
            tenant: session.tenant,
            wearer: session.wearer,
            device: session.device.clone(),
            fixes: committed,
            received_at: now,
        });
        Ok(())
    }

    /// Stores each alarm (with the position, if any) before the caller acknowledges.
    pub(crate) async fn raise(
        &self,
        session: &Session,
        kinds: &[DeviceAlarmKind],
        time: DateTime<Utc>,
        fix: Option<&Fix>,
    ) -> Result<(), IngestError> {
        for &kind in kinds {
            let stored = store_device_alarm(
                &self.ingest,
                session.sender(),
                kind,
                time,
                fix.cloned(),
                tokio::time::Instant::now() + self.ingest.timeout,
            )
            .await?;
            tracing::info!(
                device = %session.device,
                protocol = session.protocol.as_str(),
                %kind,
                alarm_id = stored.insert.id,
                duplicate = stored.insert.duplicate,
                with_position = fix.is_some() && stored.fix_error.is_none(),
                "Device alarm stored"
            );
        }
        Ok(())
    }
}

/// A device clock reading at `offset`, in UTC. A fixed offset has no gaps or folds.
pub(crate) fn device_time(time: chrono::NaiveDateTime, offset: FixedOffset) -> DateTime<Utc> {
    use chrono::TimeZone;
    match offset.from_local_datetime(&time).single() {
        Some(t) => t.with_timezone(&Utc),
        None => Utc.from_utc_datetime(&time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_wait_in_order_and_a_wake_up_missed_by_a_dropped_wait_is_kept() {
        let connection = Arc::new(Outgoing::default());
        let link = connection.clone();
        // A wait the connection's select! gave up on (it read a frame instead).
        drop(tokio::time::timeout(Duration::from_millis(10), connection.next()).await);
        assert!(link.push(b"CR".to_vec()) && link.push(b"UPLOAD,60".to_vec()));
        assert_eq!(connection.next().await, b"CR");
        assert_eq!(connection.next().await, b"UPLOAD,60");
        // Nothing left: the next wait waits.
        assert!(tokio::time::timeout(Duration::from_millis(10), connection.next()).await.is_err());
    }

    #[test]
    fn a_full_queue_or_an_ended_connection_refuses_commands() {
        let connection = Arc::new(Outgoing::default());
        let link = connection.clone();
        for _ in 0..MAX_WAITING_COMMANDS {
            assert!(link.push(b"CR".to_vec()));
        }
        assert!(!link.push(b"CR".to_vec()), "a ninth waiting command");
        drop(connection);
        link.waiting.lock().unwrap().clear();
        assert!(!link.push(b"CR".to_vec()), "the connection's task has ended");
    }
}
