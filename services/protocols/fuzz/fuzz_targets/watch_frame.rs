//! Feeds arbitrary bytes to the watch frame decoder the way a listener would: decode, act on the
//! frame, advance, repeat. Any panic, or a decoded frame that does not re-encode to itself, is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trygg_protocols::utc_offset_from_minutes;
use trygg_protocols::watch::{FrameError, Message, decode_frame, reply_for};

fuzz_target!(|data: &[u8]| {
    let offset = utc_offset_from_minutes(120).unwrap();
    let mut rest = data;
    loop {
        match decode_frame(rest, 4096) {
            Ok(Some(d)) => {
                assert!(d.consumed > 0 && d.consumed <= rest.len());
                if let Message::Position { record: Ok(r), .. } = d.frame.message() {
                    let _ = r.position.to_fix(offset);
                    let _ = r.status.device_alarms();
                }
                let _ = reply_for(&d.frame);
                let again = decode_frame(&d.frame.encode().unwrap(), usize::MAX).unwrap().unwrap();
                assert_eq!(again.frame, d.frame);
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
