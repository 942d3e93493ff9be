//! The watch ("3G", SeTracker/Beesure) TCP protocol: what the connection loop in [`crate::tcp`]
//! does differently for a watch.
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

use chrono::Utc;
use trygg_core::DeviceAlarmKind;
use trygg_protocols::watch::{self as codec, Frame, FrameError, Message};
use trygg_store::Protocol;

use crate::IngestError;
use crate::device::{DeviceIngest, Session};
use crate::tcp::{Cut, DeviceProtocol};

const PROTOCOL: Protocol = Protocol::Watch;

/// The watch protocol for the shared connection loop: every frame names its device.
pub(crate) struct Watch;

impl DeviceProtocol for Watch {
    type Frame = Frame;
    const PROTOCOL: Protocol = PROTOCOL;
    const NAME: &'static str = "Watch";

    fn cut(buf: &[u8], max: usize) -> Cut<Frame> {
        match codec::decode_frame(buf, max) {
            Ok(None) => Cut::Incomplete,
            Ok(Some(d)) => Cut::Frame { frame: d.frame, consumed: d.consumed, skipped: d.skipped },
            Err(FrameError::Malformed { consumed, reason }) => Cut::Drop { consumed, reason },
            Err(e) => Cut::Close(e.to_string()),
        }
    }

    fn outcome(frame: &Frame) -> &'static str {
        if frame.length_mismatch { "length_mismatch" } else { "ok" }
    }

    fn claimed_id(frame: &Frame) -> Option<&str> {
        Some(&frame.device_id)
    }

    fn maker(frame: &Frame) -> &str {
        &frame.maker
    }

    async fn store(ctx: &DeviceIngest, session: &Session, frame: &Frame) -> Result<(), IngestError> {
        handle_frame(ctx, session, frame).await
    }

    fn reply(frame: &Frame) -> Option<Vec<u8>> {
        codec::reply_for(frame)
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
