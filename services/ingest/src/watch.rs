//! The watch ("3G", SeTracker/Beesure) TCP listener: one task per watch connection.
//!
//! The first frame names the device; it must be registered as a `watch` device, and every later
//! frame on the connection must carry the same id (else the connection is closed). Each frame's
//! data is committed before its reply is written: a watch that gets no reply resends.
//!
//! Where the best-known open implementation drops a safety alarm, this one does not:
//! - an `AL*` frame raises its SOS, fall and removal alarms **all** (not only the first bit),
//!   with or without a GPS fix (no fix: the alarm is stored without position);
//! - an `AL*` frame with no alarm bit set, or whose body cannot be read, raises an SOS: the
//!   wearer may have pressed the button, and a false SOS costs a phone call, a lost one a life;
//! - alarm bits in position frames (`UD`, `UD2`, …) raise alarms too;
//! - buffered re-uploads (`UD2`) are stored (the fix policy flags them late) and their alarms
//!   raised; nothing is dropped for being old;
//! - the device clock is read at the device's configured UTC offset.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use trygg_core::DeviceAlarmKind;
use trygg_protocols::watch::{self as codec, Frame, FrameError, Message};
use trygg_store::Protocol;

use crate::IngestError;
use crate::device::{DeviceIngest, Session};
use crate::tcp::{Connection, Cut, next_frame};

const PROTOCOL: Protocol = Protocol::Watch;

/// Serves one watch connection until it closes, misbehaves or the server stops.
pub(crate) async fn serve_connection(
    ctx: Arc<DeviceIngest>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    ctx.metrics.connection_opened(PROTOCOL);
    let mut conn = Connection::new(socket);
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
        let frame = match next {
            Ok(frame) => frame,
            Err(reason) => break reason,
        };
        ctx.metrics.frame(PROTOCOL, if frame.length_mismatch { "length_mismatch" } else { "ok" });

        // Identity: the first frame names the device; later frames must name the same one.
        match &mut session {
            None => match Box::pin(ctx.identify(&frame.device_id, PROTOCOL)).await {
                Ok(s) => {
                    let connection = ctx.links.open(&s.device, PROTOCOL, &frame.maker, outgoing.clone());
                    Box::pin(ctx.heard(&s, None)).await;
                    tracing::info!(device = %s.device, %peer, "Watch connected");
                    session = Some((s, connection));
                }
                Err(refused) => break format!("device refused ({refused:?})"),
            },
            Some((s, _)) if s.device.as_str() != frame.device_id => {
                ctx.metrics.refused(PROTOCOL, "device_id_changed");
                break format!("device id changed from {} on the connection", s.device);
            }
            Some((s, _)) => {
                if let Err(refused) = Box::pin(ctx.refresh(s)).await {
                    break format!("device no longer accepted ({refused:?})");
                }
            }
        }
        let Some((s, _)) = &session else { continue };

        match Box::pin(handle_frame(&ctx, s, &frame)).await {
            Ok(()) => {
                if let Some(reply) = codec::reply_for(&frame)
                    && let Err(e) = conn.write(&reply).await
                {
                    break format!("writing a reply failed: {e}");
                }
            }
            // Nothing was stored: no reply, so the watch resends. The connection stays.
            Err(e) => {
                tracing::warn!(device = %s.device, error = %e, "Watch frame not stored; not acknowledged")
            }
        }
    };
    if let Some((s, connection)) = &session {
        ctx.links.close(&s.device, *connection);
        tracing::info!(device = %s.device, %peer, reason, "Watch disconnected");
    } else {
        tracing::debug!(%peer, reason, "Watch connection closed before it was identified");
    }
    ctx.metrics.connection_closed(PROTOCOL);
}

/// Frames watch bytes.
fn cut(buf: &[u8], max: usize) -> Cut<Frame> {
    match codec::decode_frame(buf, max) {
        Ok(None) => Cut::Incomplete,
        Ok(Some(d)) => Cut::Frame { frame: d.frame, consumed: d.consumed, skipped: d.skipped },
        Err(FrameError::Malformed { consumed, reason }) => Cut::Drop { consumed, reason },
        Err(e) => Cut::Close(e.to_string()),
    }
}

/// Stores what a frame carries. `Ok` means the reply may be sent.
async fn handle_frame(ctx: &DeviceIngest, s: &Session, frame: &Frame) -> Result<(), IngestError> {
    match frame.message() {
        Message::Link(link) => {
            if let Some(battery) = link.battery_pct {
                tracing::info!(device = %s.device, battery, "Watch keep-alive battery");
            }
            ctx.heard(s, link.battery_pct).await;
            Ok(())
        }
        Message::Position { kind, record } => {
            let alarm_frame = codec::is_alarm_kind(&kind);
            match record {
                Ok(record) => {
                    let fix = record.position.to_fix(s.utc_offset());
                    let alarms = if alarm_frame {
                        record.status.alarm_frame_alarms()
                    } else {
                        record.status.device_alarms()
                    };
                    if record.status.low_battery() || record.status.power_cut() {
                        tracing::info!(device = %s.device, status = ?record.status, "Watch reports low battery or power cut");
                    }
                    if alarms.is_empty() {
                        match fix {
                            Some(fix) => ctx.commit_fixes(s, vec![fix]).await,
                            None => {
                                tracing::debug!(device = %s.device, %kind, "Position frame without coordinates");
                                Ok(())
                            }
                        }
                    } else {
                        let time = fix.as_ref().map_or_else(
                            || crate::device::device_time(record.position.time, s.utc_offset()),
                            |f| f.time,
                        );
                        ctx.raise(s, &alarms, time, fix.as_ref()).await
                    }
                }
                Err(e) if alarm_frame => {
                    ctx.metrics.frame(PROTOCOL, "unreadable");
                    tracing::warn!(device = %s.device, error = %e, "Unreadable alarm frame raised as SOS without position");
                    ctx.raise(s, &[DeviceAlarmKind::Sos], Utc::now(), None).await
                }
                Err(e) => {
                    ctx.metrics.frame(PROTOCOL, "unreadable");
                    tracing::debug!(device = %s.device, error = %e, "Unreadable position frame skipped");
                    Ok(())
                }
            }
        }
        Message::Init | Message::VoiceQuery { .. } | Message::Other { .. } => Ok(()),
    }
}
