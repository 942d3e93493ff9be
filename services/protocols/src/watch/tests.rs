//! Unit tests with real frames. Unless noted, each frame is copied from Traccar's published test
//! suite (traccar/traccar `src/test/java/org/traccar/protocol/WatchProtocolDecoderTest.java`
//! and `WatchFrameDecoderTest.java`): the wire facts, not Traccar's code.

use chrono::{FixedOffset, NaiveDate};
use trygg_core::{DeviceAlarmKind, FixSource};

use super::*;

const MAX: usize = 64 * 1024;

fn frame(raw: &str) -> Frame {
    let d = decode_frame(raw.as_bytes(), MAX).unwrap().unwrap();
    assert_eq!(d.consumed, raw.len(), "{raw}");
    assert_eq!(d.skipped, 0);
    d.frame
}

fn record(raw: &str) -> (String, PositionRecord) {
    match frame(raw).message() {
        Message::Position { kind, record } => (kind, record.unwrap_or_else(|e| panic!("{raw}: {e}"))),
        other => panic!("{raw}: not a position: {other:?}"),
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

// WatchProtocolDecoderTest.java
const UD2_GPS: &str =
    "[3G*9031853319*004E*UD2,220322,055105,A,22.761162,N,114.360192,E,0,0,47,14,100,64,0,0,00000008,0,0]";
const UD2_ONE_CELL_BAD_LEN: &str = "[SG*9159059735*0066*UD2,230322,082138,A,59.55285,N,016.66185,E,0.0,000,26,14,80,70,0,50,00000000,1,1,240,7,34505,80806406,,00]";
const UD_WEST_BAD_LEN: &str = "[SG*9059056143*0053*UD,251021,223408,A,41.46500,N,081.53128,W,0.926,000,0,00,70,70,0,50,00000000,0,1,,,,00]";
const UD_LTE_CELL_WIFI: &str = "[3G*2104326058*00E9*UD_LTE,300621,135101,A,32.162652,N,34.888748,E,30.84,265.158,65.621,18,100,83,0,0,00000000,1,1,425,01,10223,8012811,100,3,ES4104,22:74:1d:39:64:ff,-46,metropoline-wifi,a8:3f:a1:e0:66:ba,-89,Egged.co.il,00:0c:42:51:cf:cd,-81,1.7055488]";
const ALCUSTOMER1_REMOVED: &str = "[3G*358839237678820*0122*ALCUSTOMER1,251120,081821,V,0.0,N,0.0,E,2.58,317.462,35.147,14,100,2,11089,0,00100008,1,1,460,01,42308,101992452,100,5,shizhou1,44:56:e2:03:ea:2a,-69,FART3,30:0d:9e:bb:fa:4d,-70,ZKY-A209,88:c3:97:c1:f4:7f,-73,ChinaNet-HNeD,e8:84:c6:21:7c:dc,-77,,30:45:96:10:14:5d,-79,1.2035439]";
const UD_WCDMA_V_WIFI: &str = "[3G*0304187088*0100*UD_WCDMA,100720,094202,V,0.0,N,0.0,E,22.0,0,-1,21,75,92,0,0,00000000,1,1,425,01,10192,1282125,75,5,Inet,04:f0:21:46:1f:57,-54,iNetSecurity,00:1e:42:25:2f:3e,-71,Gilad,58:d5:6e:9d:1b:af,-80,weekend,14:ae:db:cb:99:25,-82,advancemed1,04:f0:21:4c:c8:3e,-89,0.0]";
const AL_SOS_V_ZERO: &str = "[3G*8809008845*00C0*AL,271219,094744,V,00.000000,N, 0.0000000,E,0.00,0.0,0.0,0,100,81,0,0,00010000,7,0,460,0,9336,3981,141,9336,3912,141,9336,3982,140,9765,4233,134,9765,4071,134,9765,4321,134,9336,4353,132,0,0.0]";
const ZJ_AL_REMOVED: &str = "[ZJ*014111001332708*0075*0064*AL,040418,052156,A,22.536207,N,113.938673,E,0,0,0,5,100,82,1000,50,00100000,1,255,460,0,9340,3663,35]";
const AL_FALL: &str = "[3G*8308373902*0080*AL,230817,095346,A,47.083950,N,15.4821850,E,7.60,273.8,0.0,4,15,44,0,0,00200010,2,255,232,1,7605,42530,118,7605,58036,119,0,65.8]";
const WT_V_COORDS: &str = "[3G*6005412902*011F*WT,170517,133811,V,18.512200,N,73.7750283,E,0.00,0.0,0.0,0,92,82,4262,0,00000010,2,1,404,22,10125,8301,141,10125,13921,122,5,Skynet,28:c6:8e:be:87:c0,-60,Intel Wi-Fi,4c:60:de:32:3d:38,-70,Nirvanic-2,40:e3:d6:4a:d9:c2,-73,A4-Guest,40:e3:d6:4a:d9:c4,-73,A4Idatix,40:e3:d6:4a:d9:c3,-73,13.8]";
const UD2_NEGATIVE_WITH_N: &str = "[3G*6105117105*008D*UD2,210716,231601,V,-33.480366,N,-70.7630692,E,0.00,0.0,0.0,0,100,34,0,0,00000000,3,255,730,2,29731,54315,167,29731,54316,162,29731,54317,145]";
const UD_SOUTH_EMPTY_HEMISPHERE: &str = "[SG*9081000548*00A9*UD,110116,113639,V,16.479064,S,68.119072,,0.7593,000,99,00,80,80,0,50,00000000,5,1,736,2,10103,10732,153,10103,11061,152,10103,11012,152,10103,10151,150,10103,10731,143,,00]";
const AL_LOW_BATTERY_4_DIGIT_STATUS: &str = "[SG*8800000015*0087*AL,220414,134652,A,22.571707,N,113.8613968,E,0.1,0.0,100,7,60,90,1000,50,0001,4,1,460,0,9360,4082,131,9360,4092,148,9360,4091,143,9360,4153,141]";
const ZJ_UD_CELL_ONLY: &str = "[ZJ*014111001350304*0033*0064*UD,070318,020827,V,00.000000,N,000.000000,E,0,0,0,0,100,19,1000,50,00000000,1,255,460,0,9346,5223,42]";
const UD_WIFI_ONLY: &str = "[3G*8800000015*00DD*UD,010120,025946,V,0.0,N,0.0,E,22.0,0,-1,0,100,98,0,0,00000000,0,5,eduroam,f4:db:e6:d2:a8:00,-53,eduroam,f4:db:e6:da:d0:80,-79,eduroam,78:0c:f0:24:f9:80,-82,Lions,b0:be:76:0a:05:9a,-82,tubs-guest,0,-53,0.0]";
const LK_BATTERY: &str = "[3G*4700186508*000B*LK,0,10,100]";
const LK_TWO_VALUES_BAD_LEN: &str = "[SG*9081000548*0009*LK,0,100]";
const LK_BARE: &str = "[SG*8800000015*0002*LK]";
const TKQ: &str = "[3G*8800000015*0003*TKQ]";

/// All the frames above, for the property tests too.
pub(crate) const REAL_FRAMES: &[&str] = &[
    UD2_GPS,
    UD2_ONE_CELL_BAD_LEN,
    UD_WEST_BAD_LEN,
    UD_LTE_CELL_WIFI,
    ALCUSTOMER1_REMOVED,
    UD_WCDMA_V_WIFI,
    AL_SOS_V_ZERO,
    ZJ_AL_REMOVED,
    AL_FALL,
    WT_V_COORDS,
    UD2_NEGATIVE_WITH_N,
    UD_SOUTH_EMPTY_HEMISPHERE,
    AL_LOW_BATTERY_4_DIGIT_STATUS,
    ZJ_UD_CELL_ONLY,
    UD_WIFI_ONLY,
    LK_BATTERY,
    LK_TWO_VALUES_BAD_LEN,
    LK_BARE,
    TKQ,
];

#[test]
fn every_real_frame_decodes_and_its_length_field_is_only_flagged() {
    let mismatched: Vec<&str> =
        REAL_FRAMES.iter().copied().filter(|raw| frame(raw).length_mismatch).collect();
    assert_eq!(
        mismatched,
        [
            UD2_ONE_CELL_BAD_LEN,
            UD_WEST_BAD_LEN,
            ALCUSTOMER1_REMOVED,
            UD_SOUTH_EMPTY_HEMISPHERE,
            AL_LOW_BATTERY_4_DIGIT_STATUS,
            UD_WIFI_ONLY,
            LK_TWO_VALUES_BAD_LEN
        ]
    );
    for raw in REAL_FRAMES {
        if let Message::Position { record, .. } = frame(raw).message() {
            record.unwrap_or_else(|e| panic!("{raw}: {e}"));
        }
    }
}

#[test]
fn a_gps_record_decodes_every_field_on_the_device_clock() {
    let (kind, r) = record(UD2_GPS);
    assert_eq!(kind, "UD2");
    let p = &r.position;
    assert_eq!(p.time, NaiveDate::from_ymd_opt(2022, 3, 22).unwrap().and_hms_opt(5, 51, 5).unwrap());
    assert!(p.valid);
    assert_eq!((p.lat, p.lon), (22.761162, 114.360192));
    assert_eq!((p.speed_kmh, p.course_deg, p.altitude_m), (Some(0.0), Some(0.0), Some(47.0)));
    assert_eq!((p.satellites, r.gsm_signal, p.battery_pct), (Some(14), Some(100), Some(64)));
    assert_eq!((r.steps, r.rolls), (Some(0), Some(0)));
    assert_eq!(r.status, WatchStatus(8));
    assert_eq!((p.cell_count, p.wifi_count), (0, 0));
    let fix = p.to_fix(FixedOffset::east_opt(3600).unwrap()).unwrap();
    assert_eq!(fix.source, FixSource::Gps);
    assert_eq!(fix.time.to_rfc3339(), "2022-03-22T04:51:05+00:00");
}

#[test]
fn west_and_south_force_negative_and_a_negative_value_with_n_stays_negative() {
    let (_, west) = record(UD_WEST_BAD_LEN);
    assert_eq!((west.position.lat, west.position.lon), (41.465, -81.53128));
    let (_, neg) = record(UD2_NEGATIVE_WITH_N);
    assert_eq!((neg.position.lat, neg.position.lon), (-33.480366, -70.7630692));
    let (_, south) = record(UD_SOUTH_EMPTY_HEMISPHERE);
    assert_eq!((south.position.lat, south.position.lon), (-16.479064, 68.119072));
    assert_eq!(south.cells.len(), 5);
}

#[test]
fn ud_lte_reports_its_cell_and_wifi_networks() {
    let (kind, r) = record(UD_LTE_CELL_WIFI);
    assert_eq!(kind, "UD_LTE");
    assert_eq!(r.cells, [CellTower { mcc: 425, mnc: 1, lac: 10223, cid: 8012811, rssi: Some(100) }]);
    assert_eq!(r.wifi.len(), 3);
    assert_eq!(
        r.wifi[1],
        WifiAccessPoint { ssid: "metropoline-wifi".into(), mac: "a8:3f:a1:e0:66:ba".into(), rssi: Some(-89) }
    );
    assert_eq!((r.position.cell_count, r.position.wifi_count), (1, 3));
    assert_eq!(r.position.to_fix(utc()).unwrap().source, FixSource::Gps);
}

#[test]
fn an_sos_without_a_fix_is_an_alarm_with_no_position() {
    let f = frame(AL_SOS_V_ZERO);
    let (kind, r) = record(AL_SOS_V_ZERO);
    assert!(is_alarm_kind(&kind));
    assert_eq!(r.status.device_alarms(), [DeviceAlarmKind::Sos]);
    assert_eq!((r.position.cell_count, r.position.wifi_count), (7, 0));
    assert_eq!(r.position.to_fix(utc()), None, "0/0 must not become a dot at null island");
    assert_eq!(reply_for(&f).unwrap(), b"[3G*8809008845*0002*AL]");
}

#[test]
fn an_al_lte_sos_with_zero_coordinates_is_acknowledged_and_raised() {
    // Derived from AL_SOS_V_ZERO with the LTE type that issue reports mention (see the
    // reference: `AL_LTE,…,V,0,N,0,E…` was filtered away by Traccar's position filters).
    let raw = AL_SOS_V_ZERO
        .replace("*00C0*AL,", "*00C4*AL_LTE,")
        .replace("V,00.000000,N, 0.0000000,E", "V,0,N,0,E");
    let f = frame(&raw);
    let Message::Position { kind, record: Ok(r) } = f.message() else { panic!("{raw}") };
    assert_eq!(kind, "AL_LTE");
    assert!(r.status.sos());
    assert_eq!(r.position.to_fix(utc()), None);
    assert_eq!(reply_for(&f).unwrap(), b"[3G*8809008845*0002*AL]");
}

#[test]
fn every_alarm_bit_is_reported_not_only_the_first() {
    let (_, removed) = record(ALCUSTOMER1_REMOVED);
    assert_eq!(removed.status.device_alarms(), [DeviceAlarmKind::WatchRemoved]);
    let (_, fall) = record(AL_FALL);
    assert_eq!(fall.status.device_alarms(), [DeviceAlarmKind::Fall]);
    assert!(fall.status.motion());
    let (_, low) = record(AL_LOW_BATTERY_4_DIGIT_STATUS);
    assert!(low.status.low_battery());
    assert!(low.status.device_alarms().is_empty());
    // Traccar would report only lowBattery (bit 0) for this word, and lose the SOS and the fall.
    let all = WatchStatus(0x0071_4001);
    assert!(all.low_battery() && all.power_cut() && all.sos() && all.removed() && all.fall());
    assert_eq!(
        all.device_alarms(),
        [DeviceAlarmKind::Sos, DeviceAlarmKind::Fall, DeviceAlarmKind::WatchRemoved]
    );
    assert!(WatchStatus(1 << 22).fall() && WatchStatus(1 << 17).low_battery());
}

#[test]
fn a_zj_frame_keeps_its_index_and_the_reply_echoes_it() {
    let f = frame(ZJ_AL_REMOVED);
    assert_eq!(
        (f.maker.as_str(), f.device_id.as_str(), f.index.as_deref()),
        ("ZJ", "014111001332708", Some("0075"))
    );
    assert_eq!(f.declared_len, 0x64);
    assert!(!f.length_mismatch);
    assert_eq!(reply_for(&f).unwrap(), b"[ZJ*014111001332708*0075*0002*AL]");
    let (_, r) = record(ZJ_AL_REMOVED);
    assert_eq!(r.status.device_alarms(), [DeviceAlarmKind::WatchRemoved]);
}

#[test]
fn cell_only_and_wifi_only_reports_give_no_invented_position() {
    let (_, cell) = record(ZJ_UD_CELL_ONLY);
    assert_eq!((cell.position.cell_count, cell.position.wifi_count), (1, 0));
    assert_eq!(cell.position.to_fix(utc()), None);

    let (_, wifi) = record(UD_WIFI_ONLY);
    assert_eq!((wifi.position.cell_count, wifi.position.wifi_count), (0, 5));
    assert_eq!(wifi.wifi[4].mac, "0", "the count is trusted once the first MAC is where it says");
    assert_eq!(wifi.position.to_fix(utc()), None);

    let (_, wcdma) = record(UD_WCDMA_V_WIFI);
    assert_eq!((wcdma.position.cell_count, wcdma.position.wifi_count), (1, 5));
    assert_eq!(wcdma.position.to_fix(utc()), None);
}

#[test]
fn an_invalid_report_with_coordinates_is_a_coarse_wifi_position() {
    let (kind, r) = record(WT_V_COORDS);
    assert_eq!(kind, "WT");
    assert_eq!((r.position.cell_count, r.position.wifi_count), (2, 5));
    let fix = r.position.to_fix(utc()).unwrap();
    assert_eq!((fix.source, fix.accuracy_m), (FixSource::Wifi, Some(crate::WIFI_ACCURACY_M)));
    assert_eq!(reply_for(&frame(WT_V_COORDS)), None);
}

#[test]
fn link_frames_carry_battery_only_with_three_values() {
    let f = frame(LK_BATTERY);
    assert_eq!(f.message(), Message::Link(Link { steps: Some(0), rolls: Some(10), battery_pct: Some(100) }));
    assert_eq!(reply_for(&f).unwrap(), b"[3G*4700186508*0002*LK]");
    assert_eq!(
        frame(LK_TWO_VALUES_BAD_LEN).message(),
        Message::Link(Link { steps: Some(0), rolls: Some(100), battery_pct: None })
    );
    let bare = frame(LK_BARE);
    assert_eq!(bare.message(), Message::Link(Link::default()));
    assert_eq!(reply_for(&bare).unwrap(), b"[SG*8800000015*0002*LK]");
}

#[test]
fn replies_follow_the_message_type() {
    assert_eq!(reply_for(&frame(TKQ)).unwrap(), b"[3G*8800000015*0003*TKQ]");
    let tkq2 = frame("[3G*8800000015*0004*TKQ2]");
    assert_eq!(reply_for(&tkq2).unwrap(), b"[3G*8800000015*0004*TKQ2]");
    let init = frame("[3G*8800000015*0004*INIT]");
    assert_eq!(init.message(), Message::Init);
    assert_eq!(reply_for(&init).unwrap(), b"[3G*8800000015*0006*INIT,1]");
    assert_eq!(reply_for(&frame(UD2_GPS)), None);
    let heart = frame("[3G*6005412902*0008*heart,71]");
    assert_eq!(heart.message(), Message::Other { kind: "heart".into() });
    assert_eq!(reply_for(&heart), None);
}

#[test]
fn an_alarm_is_acknowledged_even_when_its_body_is_unparseable() {
    let f = frame("[3G*8809008845*000a*AL,junk!,x]");
    assert!(matches!(
        f.message(),
        Message::Position { record: Err(RecordError::Invalid { field: "date", .. }), .. }
    ));
    assert_eq!(reply_for(&f).unwrap(), b"[3G*8809008845*0002*AL]");
    let g = frame("[3G*8809008845*0002*AL]");
    assert!(matches!(g.message(), Message::Position { record: Err(RecordError::Missing("date")), .. }));
    assert_eq!(reply_for(&g).unwrap(), b"[3G*8809008845*0002*AL]");
}

#[test]
fn several_frames_in_one_read_are_cut_one_by_one() {
    // WatchFrameDecoderTest.java: four frames in one buffer.
    let buf = b"[3G*9705141740*0009*LK,0,0,53][3G*9705141740*005A*UD,190723,190707,A,36.815109,N,10.1792312,E,8.24,127.9,21.0,5,100,53,0,0,00000000,0,0,58.0][3G*9705141740*0003*TKQ][3G*9705141740*0009*LK,0,0,53]";
    let mut rest: &[u8] = buf;
    let mut kinds = Vec::new();
    while let Some(d) = decode_frame(rest, MAX).unwrap() {
        kinds.push(d.frame.kind());
        rest = &rest[d.consumed..];
    }
    assert_eq!(kinds, ["LK", "UD", "TKQ", "LK"]);
    assert!(rest.is_empty());
}

#[test]
fn brackets_inside_a_wifi_name_do_not_end_the_frame() {
    // WatchFrameDecoderTest.java: an SSID "[LG_Wall-Mount A/C]e725".
    let raw = "[3G*880900242*013D*UD,120623,140020,A,48.949273,N, 4.3783060,E,18.56,43.8,0.0,12,100,76,226120,0,00000000,2,255,204,8,3110,55025,146,3130,49297,124,5,BangingWifi,34:a1:ed:e1:91:4f,-71,BAR WiFi,36:a2:e1:ed:a1:de,-72,NetworkWifi,26:de:a1:ed:e1:a0,-73,Fiber,36:a1:ed:e1:91:4f,-75,[LG_Wall-Mount A/C]e725,66:a1:ed:e1:e7:25,-82,15.0]";
    let (_, r) = record(raw);
    assert_eq!((r.cells.len(), r.wifi.len()), (2, 5));
    assert_eq!(r.wifi[4].ssid, "[LG_Wall-Mount A/C]e725");
    assert_eq!(r.steps, Some(226120));
}

#[test]
fn binary_escapes_are_undone_and_the_length_counts_unescaped_bytes() {
    // WatchFrameDecoderTest.java: a TK voice frame with all five escapes.
    let mut raw = b"[CS*1234567890*000e*TK,#!AMR".to_vec();
    raw.extend_from_slice(&[0x7d, 1, 0x7d, 2, 0x7d, 3, 0x7d, 4, 0x7d, 5, 0xff, b']']);
    let f = decode_frame(&raw, MAX).unwrap().unwrap().frame;
    assert_eq!(f.content, b"TK,#!AMR\x7d[],*\xff");
    assert!(!f.length_mismatch);
    assert_eq!(f.kind(), "TK");
}

#[test]
fn garbage_before_a_frame_is_skipped_and_counted() {
    let mut buf = b"GET / HTTP/1.1\r\n[x]".to_vec();
    buf.extend_from_slice(LK_BATTERY.as_bytes());
    let d = decode_frame(&buf, MAX).unwrap().unwrap();
    assert_eq!(d.skipped, 19);
    assert_eq!(d.consumed, buf.len());
    assert_eq!(d.frame.device_id, "4700186508");
}

#[test]
fn a_partial_frame_needs_more_bytes() {
    for cut in 0..LK_BATTERY.len() {
        assert_eq!(decode_frame(&LK_BATTERY.as_bytes()[..cut], MAX), Ok(None), "cut at {cut}");
    }
}

#[test]
fn an_unterminated_frame_beyond_the_cap_is_an_error_without_scanning_everything() {
    let mut buf = b"[3G*1234567890*ffff*UD,".to_vec();
    buf.resize(10 * 1024 * 1024, b'A');
    assert_eq!(decode_frame(&buf, MAX), Err(FrameError::TooLarge { max: MAX }));
    assert_eq!(decode_frame(&buf[..MAX - 1], MAX), Ok(None));
    let garbage = vec![b'x'; 10 * 1024 * 1024];
    assert_eq!(decode_frame(&garbage, MAX), Err(FrameError::NoFrameStart { skipped: garbage.len() }));
    assert_eq!(decode_frame(&garbage[..100], MAX), Ok(None));
}

#[test]
fn a_broken_header_is_malformed_and_says_how_much_to_drop() {
    for raw in
        ["[3G*]", "[3G**0002*LK]", "[3G*123*zz*LK]", "[3G*123*0002LK]", "[3G*12 3*0002*LK]", "[3G*123]"]
    {
        match decode_frame(raw.as_bytes(), MAX) {
            Err(FrameError::Malformed { consumed, .. }) => assert_eq!(consumed, raw.len(), "{raw}"),
            other => panic!("{raw}: {other:?}"),
        }
    }
}

#[test]
fn bad_record_fields_are_named() {
    let bad = |body: &str| PositionRecord::parse(body.as_bytes()).unwrap_err();
    let good = "220322,055105,A,22.7,N,114.3,E,0,0,47,14,100,64,0,0,00000008,0,0";
    assert!(PositionRecord::parse(good.as_bytes()).is_ok());
    assert!(matches!(bad(&good.replace("220322", "320322")), RecordError::Invalid { field: "date", .. }));
    assert!(matches!(bad(&good.replace("055105", "255105")), RecordError::Invalid { field: "time", .. }));
    assert!(matches!(bad(&good.replace(",A,", ",X,")), RecordError::Invalid { field: "validity", .. }));
    assert!(matches!(bad(&good.replace("22.7", "NaN")), RecordError::Invalid { field: "latitude", .. }));
    assert!(matches!(bad(&good.replace(",E,", ",Q,")), RecordError::Invalid { field: "longitude", .. }));
    assert!(matches!(
        bad(&good.replace("00000008", "0000000G")),
        RecordError::Invalid { field: "status", .. }
    ));
    assert!(matches!(
        bad(&good.replace("00000008", "000000008")),
        RecordError::Invalid { field: "status", .. }
    ));
    assert_eq!(bad("220322,055105,A,22.7,N,114.3,E,0,0"), RecordError::Missing("status"));
    // Optional numbers that do not parse are absent, not fatal.
    let r = PositionRecord::parse(good.replace(",0,0,47,", ",x,,inf,").as_bytes()).unwrap();
    assert_eq!((r.position.speed_kmh, r.position.course_deg, r.position.altitude_m), (None, None, None));
}

#[test]
fn commands_are_framed_with_a_lowercase_hex_length() {
    assert_eq!(upload_interval_command("SG", "8800000015", 600).unwrap(), b"[SG*8800000015*000a*UPLOAD,600]");
    assert_eq!(locate_now_command("3G", "8800000015").unwrap(), b"[3G*8800000015*0002*CR]");
    assert!(matches!(encode_command("S", "1", "CR"), Err(FrameError::InvalidField { field: "maker", .. })));
    assert!(matches!(
        encode_command("SG", "1*2", "CR"),
        Err(FrameError::InvalidField { field: "device_id", .. })
    ));
    assert!(matches!(
        encode_command("SG", "1", &"x".repeat(0x10000)),
        Err(FrameError::InvalidField { field: "content", .. })
    ));
}

#[test]
fn an_alarm_frame_raises_its_critical_bits_an_sos_when_it_names_nothing_and_nothing_for_a_power_cut() {
    use trygg_core::DeviceAlarmKind::{Fall, Sos};
    assert_eq!(WatchStatus(0x0001_0000).alarm_frame_alarms(), [Sos]);
    assert_eq!(WatchStatus(0x0021_0001).alarm_frame_alarms(), [Sos, Fall], "low battery does not hide them");
    assert_eq!(
        WatchStatus(0).alarm_frame_alarms(),
        [Sos],
        "a general alarm: the button may have been pressed"
    );
    assert_eq!(WatchStatus(0x0000_0010).alarm_frame_alarms(), [Sos], "motion alone names no alarm");
    assert!(WatchStatus(0x0000_4000).alarm_frame_alarms().is_empty(), "taken off the charger");
    assert!(WatchStatus(0x0002_0000).alarm_frame_alarms().is_empty(), "low battery is supervision's");
    assert!(WatchStatus(0x0004_0000).alarm_frame_alarms().is_empty(), "the watch's own geofence");
}
