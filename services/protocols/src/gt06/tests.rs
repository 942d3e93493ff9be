//! Unit tests with real frames. Unless noted, each frame is copied from Traccar's published test
//! suite (traccar/traccar `src/test/java/org/traccar/protocol/Gt06ProtocolDecoderTest.java`):
//! the wire facts, not Traccar's code.

use chrono::{FixedOffset, NaiveDate};
use trygg_core::{DeviceAlarmKind, FixSource};

use super::*;

const MAX: usize = 1024;

pub(crate) const LOGIN_PLAIN: &str = "78780D01086471700328358100093F040D0A";
pub(crate) const LOGIN_TZ_WEST: &str = "787811010864717003664467100f190a0002c6d20d0a";
pub(crate) const LOGIN_TZ_EAST_BAD_CRC: &str = "787811010123456789012345100B3201000171930D0A";
pub(crate) const HEARTBEAT_CHARGING: &str = "78780a13c40604000201298f5b0d0a";
pub(crate) const HEARTBEAT_16_BYTE: &str = "7878151330802b00000642014f0008720000802b5ee4d4c90d0a";
pub(crate) const GPS_LBS_12: &str =
    "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a";
pub(crate) const GPS_LBS_12_BAD_CRC: &str =
    "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A";
pub(crate) const GPS_10: &str = "787819100B031A0B1B31CC027AC7FD0C4657BF0115210001001CC6070D0A";
pub(crate) const GPS_LBS_22: &str =
    "787822220F0C1D023305C9027AC8180C46586000140001CC00287D001F71000001000820860D0A";
pub(crate) const GPS_LBS_22_NO_FIX: &str =
    "787822221106160a1016c60278019407c7783800040001940504700046fc01030100065f570d0a";
pub(crate) const ALARM_16_REMOVED: &str =
    "7878251613020C12141AC5027951430C2A16F60014000900000000001A00007C550300020002F1E70D0A";
pub(crate) const ALARM_16_QUIET: &str =
    "787825160B051B093523CF027AC8360C4657B30014000901CC00266A001E1740050400020008D7B10D0A";
pub(crate) const ALARM_16_POWER_CUT: &str =
    "7878251610051b0f1c34c5022515d504b5dcd20738080902d4022bdf009cba5006640201006759680d0a";
pub(crate) const ALARM_16_NO_LBS: &str = "78784A1614051C150204EC02777E560C2A2A2A5314AF000000000000040000000000000000000000000000000000000000000000000000000000000000000000000000007E061B0982004B24C00D0A";
pub(crate) const ALARM_26: &str =
    "7878252612030C063816C3026C10540C38C9700144030901CC002866000EEE0C06040302000DA2DB0D0A";
pub(crate) const ALARM_27: &str =
    "78782727110c0b0e170f850450059107f461ae001c7e0a81360104cb8a00bef32806030c02ff000316b10d0a";
/// A GPS packet whose length is one short and that has neither serial nor CRC.
pub(crate) const GPS_10_NO_SERIAL: &str = "7878121011091c0b1b2999058508040097a89e0034520d0a";
/// A Wi-Fi packet with a zero length byte.
pub(crate) const WIFI_ZERO_LENGTH: &str = "787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a";

/// The frames that decode, for the property tests too.
pub(crate) const REAL_FRAMES: &[&str] = &[
    LOGIN_PLAIN,
    LOGIN_TZ_WEST,
    LOGIN_TZ_EAST_BAD_CRC,
    HEARTBEAT_CHARGING,
    HEARTBEAT_16_BYTE,
    GPS_LBS_12,
    GPS_LBS_12_BAD_CRC,
    GPS_10,
    GPS_LBS_22,
    GPS_LBS_22_NO_FIX,
    ALARM_16_REMOVED,
    ALARM_16_QUIET,
    ALARM_16_POWER_CUT,
    ALARM_16_NO_LBS,
    ALARM_26,
    ALARM_27,
];

pub(crate) fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn packet(hex: &str) -> Packet {
    let b = bytes(hex);
    let d = decode_frame(&b, MAX).unwrap().unwrap();
    assert_eq!((d.consumed, d.skipped), (b.len(), 0), "{hex}");
    d.frame
}

fn message(hex: &str) -> Message {
    packet(hex).message().unwrap_or_else(|e| panic!("{hex}: {e}"))
}

fn alarm(hex: &str) -> Alarm {
    match message(hex) {
        Message::Alarm(a) => a,
        other => panic!("{hex}: {other:?}"),
    }
}

fn location(hex: &str) -> Location {
    match message(hex) {
        Message::Location(l) => l,
        other => panic!("{hex}: {other:?}"),
    }
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, s).unwrap()
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

#[test]
fn real_frames_decode_and_bad_crcs_are_flagged_not_refused() {
    let bad: Vec<&str> = REAL_FRAMES.iter().copied().filter(|h| !packet(h).crc_ok).collect();
    assert_eq!(bad, [LOGIN_TZ_EAST_BAD_CRC, GPS_LBS_12_BAD_CRC]);
    for hex in REAL_FRAMES {
        packet(hex).message().unwrap_or_else(|e| panic!("{hex}: {e}"));
        assert!(reply_for(&packet(hex)).is_some(), "{hex} expects an acknowledgement");
    }
}

#[test]
fn login_with_serial_0001_gets_the_documented_reply() {
    let login = Packet::new(LOGIN, &bytes("0864717003283581"), 1);
    assert_eq!(reply_for(&login).unwrap(), bytes("787805010001d9dc0d0a"));
}

#[test]
fn login_reads_a_15_digit_imei_and_the_optional_time_zone() {
    let p = packet(LOGIN_PLAIN);
    assert_eq!((p.protocol, p.serial), (LOGIN, 9));
    assert_eq!(
        p.message().unwrap(),
        Message::Login(Login { imei: "864717003283581".into(), model: None, utc_offset: None })
    );

    let Message::Login(west) = message(LOGIN_TZ_WEST) else { panic!() };
    assert_eq!(west.imei, "864717003664467");
    assert_eq!(west.model, Some(0x100f));
    assert_eq!(west.utc_offset, FixedOffset::west_opt(4 * 3600));

    let Message::Login(east) = message(LOGIN_TZ_EAST_BAD_CRC) else { panic!() };
    assert_eq!(east.imei, "123456789012345");
    assert_eq!(east.utc_offset, FixedOffset::east_opt(8 * 3600));

    let not_bcd = Packet::new(LOGIN, &bytes("0A64717003283581"), 1);
    assert!(not_bcd.message().is_err());
}

#[test]
fn a_heartbeat_reports_charging_battery_and_signal() {
    let p = packet(HEARTBEAT_CHARGING);
    let Ok(Message::Status(s)) = p.message() else { panic!() };
    assert_eq!(s.charging(), Some(true));
    assert_eq!((s.voltage_level, s.battery_pct, s.gsm_signal), (Some(6), Some(100), Some(4)));
    assert!(s.alarms().is_empty());
    let mut expected = vec![0x78, 0x78, 0x05, STATUS, 0x01, 0x29];
    expected.extend(crc_and_end(STATUS, 0x0129));
    assert_eq!(reply_for(&p).unwrap(), expected);

    let Message::Status(other) = message(HEARTBEAT_16_BYTE) else { panic!() };
    assert_eq!(other.battery_pct, Some(6));
}

fn crc_and_end(protocol: u8, serial: u16) -> Vec<u8> {
    let [s0, s1] = serial.to_be_bytes();
    let crc = crc16_x25(&[0x05, protocol, s0, s1]);
    let mut out = crc.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x0D, 0x0A]);
    out
}

#[test]
fn a_gps_lbs_packet_decodes_position_and_cell() {
    let l = location(GPS_LBS_12);
    let p = &l.position;
    assert_eq!(p.time, at(2015, 10, 20, 14, 21, 11));
    assert!(p.valid);
    assert!((p.lat - 54.94535).abs() < 1e-5 && (p.lon - 24.01762).abs() < 1e-5, "{p:?}");
    assert_eq!((p.satellites, p.speed_kmh, p.course_deg), (Some(5), Some(0.0), Some(0.0)));
    assert_eq!(l.cell, Some(Cell { mcc: 246, mnc: 1, lac: 0x6e, cid: 0x55da }));
    let fix = p.to_fix(utc()).unwrap();
    assert_eq!(fix.source, FixSource::Gps);
    assert_eq!(fix.time.to_rfc3339(), "2015-10-20T14:21:11+00:00");
}

#[test]
fn a_bad_crc_packet_is_still_decoded_and_acknowledged() {
    let p = packet(GPS_LBS_12_BAD_CRC);
    assert!(!p.crc_ok);
    let Ok(Message::Location(l)) = p.message() else { panic!() };
    assert_eq!(l.position.time, at(2011, 8, 29, 17, 46, 16));
    assert_eq!(l.position.satellites, Some(12));
    assert!(reply_for(&p).is_some());
}

#[test]
fn gps_only_and_extended_packets_decode() {
    let g = location(GPS_10);
    assert_eq!(g.position.time, at(2011, 3, 26, 11, 27, 49));
    assert!(g.position.valid);
    assert!(g.position.lat > 23.0 && g.position.lon > 114.0);
    assert_eq!(g.cell, None);

    let e = location(GPS_LBS_22);
    assert_eq!(e.position.time, at(2015, 12, 29, 2, 51, 5));
    assert_eq!(e.cell, Some(Cell { mcc: 460, mnc: 0, lac: 0x287D, cid: 0x1F71 }));
    assert_eq!(e.buffered, Some(true));
    assert_eq!(packet(GPS_LBS_22).serial, 8);
}

#[test]
fn a_position_without_the_valid_bit_is_not_presented_as_gps() {
    let l = location(GPS_LBS_22_NO_FIX);
    assert!(!l.position.valid);
    assert_eq!(l.buffered, Some(true));
    let fix = l.position.to_fix(utc()).unwrap();
    assert_ne!(fix.source, FixSource::Gps);
    assert_eq!(fix.accuracy_m, Some(crate::CELL_ACCURACY_M));
}

#[test]
fn alarm_packets_report_every_alarm_source() {
    let removed = alarm(ALARM_16_REMOVED);
    assert_eq!(removed.status.device_alarms(), [DeviceAlarmKind::WatchRemoved]);
    assert_eq!(removed.status.battery_pct, None, "voltage level 0x55 is not 0-6");
    assert_eq!(removed.position.unwrap().time, at(2019, 2, 12, 18, 20, 26));

    let power = alarm(ALARM_16_POWER_CUT);
    assert_eq!(power.status.alarms(), [Gt06Alarm::PowerCut]);
    assert!(power.status.device_alarms().is_empty());
    assert_eq!(power.status.battery_pct, Some(100));

    let quiet = alarm(ALARM_16_QUIET);
    assert!(quiet.status.alarms().is_empty());
    assert_eq!(quiet.status.battery_pct, Some(83));
    assert_eq!(quiet.position.unwrap().battery_pct, Some(83));

    let padded = alarm(ALARM_16_NO_LBS);
    assert_eq!((padded.cell, padded.status.battery_pct), (None, Some(100)));

    let a26 = alarm(ALARM_26);
    assert_eq!(a26.status.alarms(), [Gt06Alarm::Vibration]);
    assert_eq!(a26.cell, Some(Cell { mcc: 460, mnc: 0, lac: 0x2866, cid: 0x0EEE }));

    let a27 = alarm(ALARM_27);
    assert_eq!(a27.cell, Some(Cell { mcc: 310, mnc: 260, lac: 0xcb8a, cid: 0xbef3 }));
    assert!(a27.status.alarms().contains(&Gt06Alarm::Tampering));
}

#[test]
fn sos_and_fall_alarm_bytes_become_device_alarms() {
    // Derived from ALARM_16_QUIET with the alarm byte set (and the CRC recomputed).
    let quiet = packet(ALARM_16_QUIET);
    for (code, kind) in
        [(0x01, DeviceAlarmKind::Sos), (0x23, DeviceAlarmKind::Fall), (0x18, DeviceAlarmKind::WatchRemoved)]
    {
        let mut payload = quiet.payload.clone();
        payload[30] = code;
        let wire = Packet::new(ALARM, &payload, quiet.serial).encode().unwrap();
        let d = decode_frame(&wire, MAX).unwrap().unwrap();
        assert!(d.frame.crc_ok);
        let Ok(Message::Alarm(a)) = d.frame.message() else { panic!() };
        assert_eq!(a.status.device_alarms(), [kind]);
        assert_eq!(reply_for(&d.frame).unwrap()[3], ALARM);
    }
    // SOS in the terminal bits and the alarm byte at once is reported once.
    let both =
        Status { terminal: Some(TerminalInfo(0b0010_0000)), alarm: Some(AlarmCode(1)), ..Status::default() };
    assert_eq!(both.device_alarms(), [DeviceAlarmKind::Sos]);
    let low = Status {
        terminal: Some(TerminalInfo(0b0001_1000)),
        alarm: Some(AlarmCode(0x19)),
        ..Status::default()
    };
    assert_eq!(low.alarms(), [Gt06Alarm::LowBattery]);
}

#[test]
fn an_alarm_with_an_impossible_gps_date_still_carries_its_status() {
    let quiet = packet(ALARM_16_QUIET);
    let mut payload = quiet.payload.clone();
    payload[..6].fill(0);
    payload[30] = 0x01;
    let a = match Packet::new(ALARM, &payload, 1).message().unwrap() {
        Message::Alarm(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.position, None);
    assert_eq!(a.status.device_alarms(), [DeviceAlarmKind::Sos]);
}

#[test]
fn unknown_protocols_are_reported_and_not_acknowledged() {
    let info = packet("797900089400000002e852d70d0a");
    assert!(info.extended);
    assert_eq!(info.message().unwrap(), Message::Other { protocol: 0x94 });
    assert_eq!(reply_for(&info), None);
}

#[test]
fn frames_are_cut_one_by_one_after_skipping_garbage() {
    let mut buf = b"\x00\x01hello".to_vec();
    for hex in [LOGIN_PLAIN, HEARTBEAT_CHARGING, ALARM_26] {
        buf.extend_from_slice(&bytes(hex));
    }
    let first = decode_frame(&buf, MAX).unwrap().unwrap();
    assert_eq!(first.skipped, 7);
    let mut rest = &buf[first.consumed..];
    let mut protocols = vec![first.frame.protocol];
    while let Some(d) = decode_frame(rest, MAX).unwrap() {
        assert_eq!(d.skipped, 0);
        protocols.push(d.frame.protocol);
        rest = &rest[d.consumed..];
    }
    assert_eq!(protocols, [LOGIN, STATUS, ALARM_2]);
    assert!(rest.is_empty());
}

#[test]
fn a_truncated_frame_needs_more_bytes() {
    for hex in REAL_FRAMES {
        let b = bytes(hex);
        for cut in 0..b.len() {
            assert_eq!(decode_frame(&b[..cut], MAX), Ok(None), "{hex} cut at {cut}");
        }
    }
    // Traccar's test suite has a login whose length says 13 where 10 bytes follow.
    assert_eq!(decode_frame(&bytes("78780d010359339075005244340d0a"), MAX), Ok(None));
}

#[test]
fn frames_whose_length_does_not_fit_are_malformed_and_resynchronise() {
    for hex in [GPS_10_NO_SERIAL, WIFI_ZERO_LENGTH] {
        let mut buf = bytes(hex);
        buf.extend_from_slice(&bytes(HEARTBEAT_CHARGING));
        let Err(FrameError::Malformed { consumed, .. }) = decode_frame(&buf, MAX) else { panic!("{hex}") };
        assert_eq!(consumed, 2);
        let next = decode_frame(&buf[consumed..], MAX).unwrap().unwrap();
        assert_eq!(next.frame.protocol, STATUS, "{hex}");
        assert_eq!(next.consumed, buf.len() - consumed);
    }
}

#[test]
fn an_oversized_length_is_refused_from_the_header_alone() {
    assert_eq!(
        decode_frame(&[0x79, 0x79, 0xFF, 0xFF], MAX),
        Err(FrameError::TooLarge { len: 65541, max: MAX })
    );
    let mut big = vec![0x79, 0x79, 0xFF, 0xFF];
    big.resize(10 * 1024 * 1024, 0);
    assert!(matches!(decode_frame(&big, MAX), Err(FrameError::TooLarge { .. })));
    let garbage = vec![0u8; 10 * 1024 * 1024];
    assert_eq!(decode_frame(&garbage, MAX), Err(FrameError::NoFrameStart { skipped: garbage.len() }));
    assert_eq!(decode_frame(&garbage[..MAX], MAX), Ok(None));
}

#[test]
fn short_payloads_are_content_errors_not_panics() {
    for protocol in [LOGIN, STATUS, GPS, GPS_LBS, GPS_LBS_2, ALARM, ALARM_2, ALARM_3] {
        for len in 0..40 {
            let _ = Packet::new(protocol, &vec![0x11; len], 1).message();
        }
        assert!(Packet::new(protocol, &[], 1).message().is_err());
    }
    // Traccar's test suite: a 0x12 packet with no payload at all.
    assert!(packet("787805120099abec0d0a").message().is_err());
}

#[test]
fn the_long_form_round_trips_and_replies_in_kind() {
    let p = Packet::new(0x94, &[7; 300], 0xBEEF);
    assert!(p.extended);
    let wire = p.encode().unwrap();
    assert_eq!(&wire[..4], &[0x79, 0x79, 0x01, 0x31]);
    assert_eq!(decode_frame(&wire, 4096).unwrap().unwrap().frame, p);
    let short = Packet { extended: false, ..p };
    assert_eq!(short.encode(), Err(FrameError::PayloadTooLong { len: 300, form: "78 78" }));
    let ext_status = Packet { extended: true, ..Packet::new(STATUS, &[0xC4, 6, 4, 0, 2], 3) };
    assert_eq!(&reply_for(&ext_status).unwrap()[..5], &[0x79, 0x79, 0x00, 0x05, STATUS]);
}
