//! Feeds arbitrary bytes to the GT06 frame decoder the way a listener would: decode, act on the
//! packet, advance, repeat. Any panic, or a decoded packet that does not re-encode to itself, is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trygg_protocols::gt06::{FrameError, Message, Packet, decode_frame, reply_for};
use trygg_protocols::utc_offset_from_minutes;

fuzz_target!(|data: &[u8]| {
    let offset = utc_offset_from_minutes(0).unwrap();
    let mut rest = data;
    loop {
        match decode_frame(rest, 2048) {
            Ok(Some(d)) => {
                assert!(d.consumed > 0 && d.consumed <= rest.len());
                match d.frame.message() {
                    Ok(Message::Location(l)) => drop(l.position.to_fix(offset)),
                    Ok(Message::Alarm(a)) => {
                        let _ = a.status.device_alarms();
                        let _ = a.position.and_then(|p| p.to_fix(offset));
                    }
                    _ => {}
                }
                let _ = reply_for(&d.frame);
                let again = decode_frame(&d.frame.encode().unwrap(), usize::MAX).unwrap().unwrap();
                assert_eq!(again.frame, Packet { crc_ok: true, ..d.frame });
                rest = &rest[d.consumed..];
            }
            Err(FrameError::Malformed { consumed, .. }) => {
                assert!(consumed > 0 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
