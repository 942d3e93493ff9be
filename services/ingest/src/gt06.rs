//! The GT06 (Concox) TCP listener: one task per tracker connection.
//!
//! A connection starts with a login packet naming the IMEI; until a login is accepted, other
//! packets are dropped (and counted). The IMEI must be registered as a `gt06` device. Every
//! packet's data is committed before its acknowledgement is written.
//!
//! - The CRC is checked and a bad one counted, but the packet is still used (Traccar's published
//!   frames from real devices include bad CRCs; see `trygg_protocols::gt06`).
//! - The device clock: the device's configured UTC offset when set, else the time zone the login
//!   announced, else UTC.
//! - SOS, fall and removal from the terminal bits or the alarm byte are raised with or without a
//!   GPS fix. An alarm packet whose content cannot be read is raised as an SOS without position.
//! - A position without a satellite fix is stored as coarse (cell), never as GPS; 0/0 is no
//!   position at all.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use trygg_core::DeviceAlarmKind;
use trygg_protocols::gt06::{self as codec, FrameError, Message, Packet};
use trygg_store::Protocol;

use crate::IngestError;
use crate::device::{DeviceIngest, Session};
use crate::tcp::{Connection, Cut, next_frame};

const PROTOCOL: Protocol = Protocol::Gt06;

/// Serves one GT06 connection until it closes, misbehaves or the server stops.
pub(crate) async fn serve_connection(
    ctx: Arc<DeviceIngest>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    ctx.metrics.connection_opened(PROTOCOL);
    let mut conn = Connection::new(socket);
    // GT06 commands are not implemented; the channel only keeps the registry uniform.
    let (outgoing, mut commands) = mpsc::channel::<Vec<u8>>(8);
    let mut session: Option<(Session, u64)> = None;
    let max = ctx.config.max_frame_bytes;
    let reason = loop {
        let next = next_frame(
            &mut conn,
            |b| cut(b, max),
            ctx.config.read_timeout,
            &mut commands,
            &mut shutdown,
            &ctx.metrics,
            PROTOCOL,
            peer,
        )
        .await;
        let packet = match next {
            Ok(packet) => packet,
            Err(reason) => break reason,
        };
        ctx.metrics.frame(PROTOCOL, if packet.crc_ok { "ok" } else { "bad_crc" });
        let message = packet.message();

        if let Ok(Message::Login(login)) = &message {
            match &mut session {
                Some((s, _)) if s.device.as_str() != login.imei => {
                    ctx.metrics.refused(PROTOCOL, "device_id_changed");
                    break format!("device id changed from {} on the connection", s.device);
                }
                Some((s, _)) => {
                    // A repeated login of the same device: acknowledge it again.
                    s.announced_offset = login.utc_offset.or(s.announced_offset);
                }
                None => match Box::pin(ctx.identify(&login.imei, PROTOCOL)).await {
                    Ok(mut s) => {
                        s.announced_offset = login.utc_offset;
                        let connection = ctx.links.open(&s.device, PROTOCOL, "", outgoing.clone());
                        Box::pin(ctx.heard(&s, None)).await;
                        tracing::info!(device = %s.device, %peer, "GT06 tracker logged in");
                        session = Some((s, connection));
                    }
                    Err(refused) => break format!("device refused ({refused:?})"),
                },
            }
        }
        let Some((s, _)) = &mut session else {
            ctx.metrics.frame(PROTOCOL, "before_login");
            tracing::debug!(%peer, protocol = packet.protocol, "GT06 packet before login dropped");
            continue;
        };
        if let Err(refused) = Box::pin(ctx.refresh(s)).await {
            break format!("device no longer accepted ({refused:?})");
        }

        match Box::pin(handle_packet(&ctx, s, &packet, message)).await {
            Ok(()) => {
                if let Some(reply) = codec::reply_for(&packet)
                    && let Err(e) = conn.write(&reply).await
                {
                    break format!("writing a reply failed: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(device = %s.device, error = %e, "GT06 packet not stored; not acknowledged")
            }
        }
    };
    if let Some((s, connection)) = &session {
        ctx.links.close(&s.device, *connection);
        tracing::info!(device = %s.device, %peer, reason, "GT06 tracker disconnected");
    } else {
        tracing::debug!(%peer, reason, "GT06 connection closed before login");
    }
    ctx.metrics.connection_closed(PROTOCOL);
}

/// Frames GT06 bytes.
fn cut(buf: &[u8], max: usize) -> Cut<Packet> {
    match codec::decode_frame(buf, max) {
        Ok(None) => Cut::Incomplete,
        Ok(Some(d)) => Cut::Frame { frame: d.frame, consumed: d.consumed, skipped: d.skipped },
        Err(FrameError::Malformed { consumed, reason }) => Cut::Drop { consumed, reason },
        Err(e) => Cut::Close(e.to_string()),
    }
}

/// Stores what a packet carries. `Ok` means the acknowledgement may be sent.
async fn handle_packet(
    ctx: &DeviceIngest,
    s: &Session,
    packet: &Packet,
    message: Result<Message, codec::ContentError>,
) -> Result<(), IngestError> {
    let offset = s.utc_offset();
    match message {
        Ok(Message::Login(_) | Message::Other { .. }) => Ok(()),
        Ok(Message::Status(status)) => {
            ctx.heard(s, status.battery_pct).await;
            let alarms = status.device_alarms();
            if alarms.is_empty() { Ok(()) } else { ctx.raise(s, &alarms, Utc::now(), None).await }
        }
        Ok(Message::Location(location)) => match location.position.to_fix(offset) {
            Some(fix) => ctx.commit_fixes(s, vec![fix]).await,
            None => Ok(()),
        },
        Ok(Message::Alarm(alarm)) => {
            let fix = alarm.position.as_ref().and_then(|p| p.to_fix(offset));
            let kinds = alarm.status.device_alarms();
            if kinds.is_empty() {
                tracing::info!(device = %s.device, alarms = ?alarm.status.alarms(), "GT06 alarm packet without a device alarm");
                return match fix {
                    Some(fix) => ctx.commit_fixes(s, vec![fix]).await,
                    None => Ok(()),
                };
            }
            let time = match (&fix, &alarm.position) {
                (Some(f), _) => f.time,
                (None, Some(p)) => crate::device::device_time(p.time, offset),
                (None, None) => Utc::now(),
            };
            ctx.raise(s, &kinds, time, fix.as_ref()).await
        }
        Err(e) if matches!(packet.protocol, codec::ALARM | codec::ALARM_2 | codec::ALARM_3) => {
            ctx.metrics.frame(PROTOCOL, "unreadable");
            tracing::warn!(device = %s.device, error = %e, "Unreadable GT06 alarm packet raised as SOS without position");
            ctx.raise(s, &[DeviceAlarmKind::Sos], Utc::now(), None).await
        }
        Err(e) => {
            ctx.metrics.frame(PROTOCOL, "unreadable");
            tracing::debug!(device = %s.device, error = %e, "Unreadable GT06 packet skipped");
            Ok(())
        }
    }
}
