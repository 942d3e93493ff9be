//! Seeded property tests: encode then decode is the identity for both TCP envelopes, and no
//! input — random bytes, truncated or mutated real frames, random query strings — makes any
//! decoder panic or mis-advance. Seeds are fixed so a failure reproduces; the fuzz targets in
//! `fuzz/` explore further.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::{gt06, osmand, utc_offset_from_minutes, watch};

const CASES: usize = 2000;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn pick(rng: &mut StdRng, alphabet: &[u8], min: usize, max: usize) -> String {
    let n = rng.gen_range(min..=max);
    (0..n).map(|_| char::from(*alphabet.choose(rng).unwrap())).collect()
}

const HEADER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:#!";
const HEX: &[u8] = b"0123456789abcdefABCDEF";

fn random_watch_frame(rng: &mut StdRng) -> watch::Frame {
    let maker = pick(rng, HEADER, 2, 2);
    let id = pick(rng, HEADER, 1, 20);
    let index = rng.gen_bool(0.3).then(|| pick(rng, HEX, 4, 4));
    let len = rng.gen_range(0..300);
    let mut content: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    // `[MM*ID*LLLL*CONTENT]` where CONTENT starts with 4 hex digits and `*` reads as the ZJ form:
    // the protocol's own ambiguity (Traccar reads it the same way), so it is not generated.
    if index.is_none()
        && content.len() >= 5
        && content[..4].iter().all(u8::is_ascii_hexdigit)
        && content[4] == b'*'
    {
        content[4] = b',';
    }
    let mut frame = watch::Frame::new(&maker, &id, index.as_deref(), &content).unwrap();
    if rng.gen_bool(0.3) {
        frame.declared_len = rng.r#gen();
        frame.length_mismatch = usize::from(frame.declared_len) != frame.content.len();
    }
    frame
}

#[test]
fn watch_frames_round_trip_through_encode_and_decode() {
    let mut rng = rng(1);
    for _ in 0..CASES {
        let frame = random_watch_frame(&mut rng);
        let garbage = pick(&mut rng, b"xyz \r\n\x00]*", 0, 10);
        let mut wire = garbage.clone().into_bytes();
        wire.extend(frame.encode().unwrap());
        let d = watch::decode_frame(&wire, 4096).unwrap().unwrap();
        assert_eq!(d.frame, frame);
        assert_eq!((d.consumed, d.skipped), (wire.len(), garbage.len()));
    }
}

#[test]
fn concatenated_watch_frames_come_out_in_order() {
    let mut rng = rng(2);
    for _ in 0..200 {
        let frames: Vec<watch::Frame> =
            (0..rng.gen_range(1..6)).map(|_| random_watch_frame(&mut rng)).collect();
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
        let mut rest = &wire[..];
        for f in &frames {
            let d = watch::decode_frame(rest, 4096).unwrap().unwrap();
            assert_eq!(&d.frame, f);
            rest = &rest[d.consumed..];
        }
        assert!(rest.is_empty());
    }
}

#[test]
fn watch_commands_and_replies_decode_to_what_was_meant() {
    let mut rng = rng(3);
    for _ in 0..CASES {
        let maker = pick(&mut rng, HEADER, 2, 2);
        let id = pick(&mut rng, b"0123456789", 10, 15);
        let secs: u32 = rng.r#gen();
        let wire = watch::upload_interval_command(&maker, &id, secs).unwrap();
        let f = watch::decode_frame(&wire, 4096).unwrap().unwrap().frame;
        assert_eq!(
            (f.maker.as_str(), f.device_id.as_str(), f.index.as_deref()),
            (maker.as_str(), id.as_str(), None)
        );
        assert_eq!(f.content, format!("UPLOAD,{secs}").into_bytes());
        assert!(!f.length_mismatch);

        let index = rng.gen_bool(0.5).then(|| pick(&mut rng, HEX, 4, 4));
        let (kind, reply) = *[("LK,1,2,3", "LK"), ("AL_LTE,x", "AL"), ("TKQ2", "TKQ2"), ("INIT", "INIT,1")]
            .choose(&mut rng)
            .unwrap();
        let incoming = watch::Frame::new(&maker, &id, index.as_deref(), kind.as_bytes()).unwrap();
        let wire = watch::reply_for(&incoming).unwrap();
        let r = watch::decode_frame(&wire, 4096).unwrap().unwrap().frame;
        assert_eq!((r.maker, r.device_id, r.index), (maker, id, index));
        assert_eq!(r.content, reply.as_bytes());
        assert!(!r.length_mismatch);
    }
}

fn random_packet(rng: &mut StdRng) -> gt06::Packet {
    let extended = rng.gen_bool(0.3);
    let len = if extended { rng.gen_range(0..700) } else { rng.gen_range(0..=250) };
    let payload: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    gt06::Packet { extended, protocol: rng.r#gen(), payload, serial: rng.r#gen(), crc_ok: true }
}

#[test]
fn gt06_packets_round_trip_through_encode_and_decode() {
    let mut rng = rng(4);
    for _ in 0..CASES {
        let packet = random_packet(&mut rng);
        let garbage: Vec<u8> = (0..rng.gen_range(0..10)).map(|_| rng.gen_range(0..0x78)).collect();
        let mut wire = garbage.clone();
        wire.extend(packet.encode().unwrap());
        let d = gt06::decode_frame(&wire, 2048).unwrap().unwrap();
        assert_eq!(d.frame, packet);
        assert_eq!((d.consumed, d.skipped), (wire.len(), garbage.len()));

        if let Some(reply) = gt06::reply_for(&packet) {
            let r = gt06::decode_frame(&reply, 64).unwrap().unwrap().frame;
            assert_eq!(
                (r.protocol, r.serial, r.payload.len(), r.crc_ok),
                (packet.protocol, packet.serial, 0, true)
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_a_gt06_packet_is_caught_by_the_crc_or_the_framing() {
    let mut rng = rng(5);
    for _ in 0..CASES {
        let packet = random_packet(&mut rng);
        let mut wire = packet.encode().unwrap();
        let header = if packet.extended { 4 } else { 3 };
        // Any bit between the length and the CRC: the length itself changes the framing.
        let at = rng.gen_range(header..wire.len() - 4);
        wire[at] ^= 1 << rng.gen_range(0..8);
        let d = gt06::decode_frame(&wire, 2048).unwrap().unwrap();
        assert!(!d.frame.crc_ok);
    }
}

fn exercise_watch(buf: &[u8], max: usize, offset: chrono::FixedOffset) {
    let mut rest = buf;
    loop {
        match watch::decode_frame(rest, max) {
            Ok(Some(d)) => {
                assert!(d.consumed > 0 && d.consumed <= rest.len() && d.skipped < d.consumed);
                let f = &d.frame;
                if let watch::Message::Position { record: Ok(r), .. } = f.message() {
                    let _ = r.position.to_fix(offset);
                    let _ = r.status.device_alarms();
                }
                let _ = watch::reply_for(f);
                // Whatever was decoded encodes back to itself.
                let again = watch::decode_frame(&f.encode().unwrap(), usize::MAX).unwrap().unwrap();
                assert_eq!(&again.frame, f);
                rest = &rest[d.consumed..];
            }
            Err(watch::FrameError::Malformed { consumed, .. }) => {
                assert!(consumed > 0 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fn exercise_gt06(buf: &[u8], max: usize, offset: chrono::FixedOffset) {
    let mut rest = buf;
    loop {
        match gt06::decode_frame(rest, max) {
            Ok(Some(d)) => {
                assert!(d.consumed > 0 && d.consumed <= rest.len() && d.skipped < d.consumed);
                match d.frame.message() {
                    Ok(gt06::Message::Location(l)) => drop(l.position.to_fix(offset)),
                    Ok(gt06::Message::Alarm(a)) => {
                        let _ = a.status.device_alarms();
                        let _ = a.position.and_then(|p| p.to_fix(offset));
                    }
                    _ => {}
                }
                let _ = gt06::reply_for(&d.frame);
                let again = gt06::decode_frame(&d.frame.encode().unwrap(), usize::MAX).unwrap().unwrap();
                assert_eq!(again.frame, gt06::Packet { crc_ok: true, ..d.frame });
                rest = &rest[d.consumed..];
            }
            Err(gt06::FrameError::Malformed { consumed, .. }) => {
                assert!(consumed > 0 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fn real_watch_frames() -> Vec<Vec<u8>> {
    crate::watch::tests::REAL_FRAMES.iter().map(|f| f.as_bytes().to_vec()).collect()
}

fn real_gt06_frames() -> Vec<Vec<u8>> {
    crate::gt06::tests::REAL_FRAMES.iter().map(|h| crate::gt06::tests::bytes(h)).collect()
}

fn mutate(rng: &mut StdRng, frame: &[u8], alphabet: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..5) {
            0 if !out.is_empty() => {
                let at = rng.gen_range(0..out.len());
                out[at] = *alphabet.choose(rng).unwrap();
            }
            1 if !out.is_empty() => {
                let at = rng.gen_range(0..out.len());
                out.remove(at);
            }
            2 => {
                let at = rng.gen_range(0..=out.len());
                out.insert(at, *alphabet.choose(rng).unwrap());
            }
            3 => out.truncate(rng.gen_range(0..=out.len())),
            _ => {
                let at = rng.gen_range(0..=out.len());
                let copy = out.clone();
                out.splice(at..at, copy.into_iter().take(rng.gen_range(0..40)));
            }
        }
    }
    out
}

#[test]
fn no_input_makes_a_tcp_decoder_panic() {
    let mut rng = rng(6);
    let watch_alphabet: Vec<u8> = b"[]*,.-0123456789ABCDEFNSEWVULKTQ_ \x7d\x01\x02\x05\xff".to_vec();
    let gt06_alphabet: Vec<u8> = (0..=255).collect();
    let watch_real = real_watch_frames();
    let gt06_real = real_gt06_frames();
    for case in 0..CASES * 2 {
        let offset = utc_offset_from_minutes(rng.gen_range(-1439..=1439)).unwrap();
        let max = rng.gen_range(0..2048);

        let random: Vec<u8> = (0..rng.gen_range(0..512)).map(|_| rng.r#gen()).collect();
        exercise_watch(&random, max, offset);
        exercise_gt06(&random, max, offset);

        let base = watch_real.choose(&mut rng).unwrap();
        let mut mutated = mutate(&mut rng, base, &watch_alphabet);
        if case % 3 == 0 {
            mutated.extend(watch_real.choose(&mut rng).unwrap());
        }
        exercise_watch(&mutated, max.max(64), offset);

        let base = gt06_real.choose(&mut rng).unwrap();
        let mut mutated = mutate(&mut rng, base, &gt06_alphabet);
        if case % 3 == 0 {
            mutated.extend(gt06_real.choose(&mut rng).unwrap());
        }
        exercise_gt06(&mutated, max.max(64), offset);
    }
}

#[test]
fn every_truncation_of_real_frames_is_safe() {
    let offset = utc_offset_from_minutes(60).unwrap();
    for frame in real_watch_frames() {
        for cut in 0..=frame.len() {
            exercise_watch(&frame[..cut], 4096, offset);
            exercise_watch(&frame[cut..], 4096, offset);
        }
    }
    for frame in real_gt06_frames() {
        for cut in 0..=frame.len() {
            exercise_gt06(&frame[..cut], 4096, offset);
            exercise_gt06(&frame[cut..], 4096, offset);
        }
    }
}

#[test]
fn no_query_makes_the_osmand_parser_panic() {
    let mut rng = rng(7);
    let keys = [
        "id",
        "deviceid",
        "timestamp",
        "lat",
        "lon",
        "location",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "batt",
        "charge",
        "alarm",
        "valid",
        "x",
    ];
    let values = b"0123456789.-+eE:TZ, %2Bx&=";
    for _ in 0..CASES * 2 {
        let query: Vec<String> = (0..rng.gen_range(0..8))
            .map(|_| format!("{}={}", keys.choose(&mut rng).unwrap(), pick(&mut rng, values, 0, 24)))
            .collect();
        let query = query.join("&");
        if let Ok(r) = osmand::parse_form(query.as_bytes()) {
            assert!(!r.device_id.is_empty());
            assert!(r.battery_pct.is_none_or(|b| b <= 100));
            let _ = r.to_fix(chrono::Utc::now());
            let _ = r.device_alarm();
        }
        let random: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect();
        let _ = osmand::parse_request("", &random);
    }
}
