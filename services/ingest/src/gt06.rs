//! The GT06 (Concox) TCP protocol: what the connection loop in [`crate::tcp`] does differently
//! for a tracker.
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

use chrono::Utc;
use trygg_core::DeviceAlarmKind;
use trygg_protocols::gt06::{self as codec, ContentError, FrameError, Message, Packet};
use trygg_store::Protocol;

use crate::IngestError;
use crate::device::{DeviceIngest, Session};
use crate::tcp::{Cut, DeviceProtocol};

const PROTOCOL: Protocol = Protocol::Gt06;

/// The GT06 protocol for the shared connection loop: a login packet names the device. GT06
/// commands are not implemented; the loop's command channel only keeps the registry uniform.
pub(crate) struct Gt06;

/// A packet and its content, read once for both the login check and storing.
pub(crate) struct Read {
    packet: Packet,
    message: Result<Message, ContentError>,
}

impl DeviceProtocol for Gt06 {
    type Frame = Read;
    const PROTOCOL: Protocol = PROTOCOL;
    const NAME: &'static str = "GT06 tracker";

    fn cut(buf: &[u8], max: usize) -> Cut<Read> {
        match codec::decode_frame(buf, max) {
            Ok(None) => Cut::Incomplete,
            Ok(Some(d)) => {
                let read = Read { message: d.frame.message(), packet: d.frame };
                Cut::Frame { frame: read, consumed: d.consumed, skipped: d.skipped }
            }
            Err(FrameError::Malformed { consumed, reason }) => Cut::Drop { consumed, reason },
            Err(e) => Cut::Close(e.to_string()),
        }
    }

    fn outcome(read: &Read) -> &'static str {
        if read.packet.crc_ok { "ok" } else { "bad_crc" }
    }

    fn claimed_id(read: &Read) -> Option<&str> {
        match &read.message {
            Ok(Message::Login(login)) => Some(&login.imei),
            _ => None,
        }
    }

    /// A login may announce the device's time zone; a repeated login without one keeps the
    /// earlier.
    fn identified(session: &mut Session, read: &Read) {
        if let Ok(Message::Login(login)) = &read.message {
            session.announced_offset = login.utc_offset.or(session.announced_offset);
        }
    }

    async fn store(ctx: &DeviceIngest, session: &Session, read: &Read) -> Result<(), IngestError> {
        handle_packet(ctx, session, &read.packet, &read.message).await
    }

    fn reply(read: &Read) -> Option<Vec<u8>> {
        codec::reply_for(&read.packet)
    }
}

/// Stores what a packet carries. `Ok` means the acknowledgement may be sent.
async fn handle_packet(
    ctx: &DeviceIngest,
    s: &Session,
    packet: &Packet,
    message: &Result<Message, ContentError>,
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
