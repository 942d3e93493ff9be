//! The binary Concox GT06 protocol (Traccar port 5023): framing, the packets a personal tracker
//! sends (login, heartbeat, location, alarm) and the acknowledgements it expects.
//!
//! A packet is `78 78 LL PP <payload> SSSS CCCC 0D 0A` (`79 79 LLLL …` for the long form), where
//! `LL` counts from the protocol byte `PP` through the CRC, `SSSS` is the serial number the reply
//! echoes and `CCCC` is CRC-16/X25 over the length through the serial.
//!
//! Strictness, decided from the published frames:
//! - **The CRC is checked but not enforced.** Traccar never checks it and its published test
//!   frames include real ones with bad CRCs; refusing them would drop alarms from devices that
//!   work with every other server. A bad CRC is reported in [`Packet::crc_ok`] (count it), and
//!   the packet is decoded and acknowledged like any other.
//! - **The length is enforced.** The frame must end in `0D 0A` exactly where the length says.
//!   Otherwise the packet is [`FrameError::Malformed`] and the listener may drop the two start
//!   bytes and resynchronise on the next `78 78`. (Traccar falls back to scanning for `0D 0A`,
//!   which also cuts at `0D 0A` bytes inside binary coordinates; the only published frame that
//!   needs it has neither serial nor CRC.)
//! - Garbage before a start marker is skipped and reported; a length beyond `max_frame_bytes`
//!   is an error as soon as the header is read, before any payload is buffered.
//!
//! Alarm codes are model-specific (Traccar guesses a per-model layout from the frame length, and
//! still misreads some SOS frames, #3603). This module decodes the standard layout only and
//! reports both alarm sources — the terminal-info bits and the alarm byte — so a listener can
//! raise either.

use chrono::{FixedOffset, NaiveDate, NaiveDateTime};
use trygg_core::DeviceAlarmKind;

use crate::{Decoded, DevicePosition};

/// Protocol number of the login packet.
pub const LOGIN: u8 = 0x01;
/// Protocol number of the GPS-only location packet.
pub const GPS: u8 = 0x10;
/// Protocol number of the GPS + LBS location packet.
pub const GPS_LBS: u8 = 0x12;
/// Protocol number of the heartbeat / status packet.
pub const STATUS: u8 = 0x13;
/// Protocol number of the standard alarm packet (GPS + LBS + status).
pub const ALARM: u8 = 0x16;
/// Protocol number of the LBS + status packet.
pub const LBS_STATUS: u8 = 0x19;
/// Protocol number of the extended GPS + LBS location packet (GT06N and later).
pub const GPS_LBS_2: u8 = 0x22;
/// Protocol number of the extended alarm packet.
pub const ALARM_2: u8 = 0x26;
/// Protocol number of the alarm packet with a geofence number.
pub const ALARM_3: u8 = 0x27;

/// Protocols that are acknowledged with `78 78 05 PP SSSS CCCC 0D 0A`.
const ACKNOWLEDGED: [u8; 10] =
    [LOGIN, GPS, 0x11, GPS_LBS, STATUS, ALARM, LBS_STATUS, GPS_LBS_2, ALARM_2, ALARM_3];

/// One GT06 packet, as framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `79 79` with a 2-byte length rather than `78 78` with one.
    pub extended: bool,
    /// The protocol number (packet type).
    pub protocol: u8,
    /// The bytes between the protocol number and the serial.
    pub payload: Vec<u8>,
    /// The serial number, echoed in the reply.
    pub serial: u16,
    /// Whether the CRC matched. Packets with a bad CRC are still decoded (see the module docs).
    pub crc_ok: bool,
}

/// Why bytes could not be framed, or a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field announces a frame beyond the size cap: close the connection.
    #[error("frame of {len} bytes exceeds the cap of {max}")]
    TooLarge {
        /// The announced frame size, start marker to terminator.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// More than the size cap arrived without any start marker: close the connection.
    #[error("{skipped} bytes without a frame start")]
    NoFrameStart {
        /// How many bytes were garbage.
        skipped: usize,
    },
    /// A start marker whose frame makes no sense. The listener may drop `consumed` bytes
    /// (garbage plus the start marker) and resynchronise, or close the connection.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The payload does not fit the chosen frame form.
    #[error("payload of {len} bytes does not fit a {form} frame")]
    PayloadTooLong {
        /// The payload length.
        len: usize,
        /// `78 78` or `79 79`.
        form: &'static str,
    },
}

/// Why the payload of a well-framed packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packet 0x{protocol:02x}: {reason}")]
pub struct ContentError {
    /// The protocol number.
    pub protocol: u8,
    /// What is wrong.
    pub reason: &'static str,
}

/// CRC-16/X25 (CRC-ITU as GT06 documents call it): reflected polynomial 0x1021, initial value
/// and final XOR 0xFFFF.
///
/// ```
/// assert_eq!(trygg_protocols::gt06::crc16_x25(b"123456789"), 0x906E);
/// ```
pub fn crc16_x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x8408 } else { crc >> 1 };
        }
    }
    !crc
}

/// Cuts the first packet from `buf`: check → parse → advance.
///
/// Returns `Ok(None)` when more bytes are needed; on success the caller removes
/// [`Decoded::consumed`] bytes from its buffer.
///
/// ```
/// use trygg_protocols::gt06::{decode_frame, reply_for, Message};
/// let login = [0x78, 0x78, 0x0D, 0x01, 0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81, 0x00, 0x09, 0x3F, 0x04, 0x0D, 0x0A];
/// let d = decode_frame(&login, 1024).unwrap().unwrap();
/// assert!(d.frame.crc_ok);
/// let Ok(Message::Login(l)) = d.frame.message() else { panic!() };
/// assert_eq!(l.imei, "864717003283581");
/// assert_eq!(reply_for(&d.frame).unwrap(), [0x78, 0x78, 0x05, 0x01, 0x00, 0x09, 0x55, 0x94, 0x0D, 0x0A]);
/// ```
pub fn decode_frame(buf: &[u8], max_frame_bytes: usize) -> Result<Option<Decoded<Packet>>, FrameError> {
    let Some(start) = find_start(buf) else {
        if buf.len() > max_frame_bytes {
            return Err(FrameError::NoFrameStart { skipped: buf.len() });
        }
        return Ok(None);
    };
    let rest = &buf[start..];
    let extended = rest.first() == Some(&0x79);
    let len_bytes = if extended { 2 } else { 1 };
    let Some(len_field) = rest.get(2..2 + len_bytes) else { return Ok(None) };
    let len = if extended {
        usize::from(u16::from_be_bytes([len_field[0], len_field[1]]))
    } else {
        usize::from(len_field[0])
    };
    let malformed = |reason| FrameError::Malformed { consumed: start + 2, reason };
    if len < 5 {
        return Err(malformed("length below 5 (protocol, serial and CRC)"));
    }
    let body = 2 + len_bytes;
    let total = body + len + 2;
    if total > max_frame_bytes {
        return Err(FrameError::TooLarge { len: total, max: max_frame_bytes });
    }
    let Some(frame) = rest.get(..total) else { return Ok(None) };
    if frame[total - 2..] != [0x0D, 0x0A] {
        return Err(malformed("no 0D 0A where the length says the frame ends"));
    }
    let serial_at = body + len - 4;
    let crc_at = body + len - 2;
    let packet = Packet {
        extended,
        protocol: frame[body],
        payload: frame[body + 1..serial_at].to_vec(),
        serial: u16::from_be_bytes([frame[serial_at], frame[serial_at + 1]]),
        crc_ok: crc16_x25(&frame[2..crc_at]) == u16::from_be_bytes([frame[crc_at], frame[crc_at + 1]]),
    };
    Ok(Some(Decoded { frame: packet, consumed: start + total, skipped: start }))
}

/// The first `78 78` or `79 79`; a lone `78`/`79` as the last byte may start one.
fn find_start(buf: &[u8]) -> Option<usize> {
    let last = buf.len().checked_sub(1)?;
    (0..buf.len()).find(|&i| matches!(buf[i], 0x78 | 0x79) && (i == last || buf[i + 1] == buf[i]))
}

impl Packet {
    /// A packet in the short form when the payload fits (up to 250 bytes), else the long form.
    pub fn new(protocol: u8, payload: &[u8], serial: u16) -> Self {
        Self { extended: payload.len() > 250, protocol, payload: payload.to_vec(), serial, crc_ok: true }
    }

    /// Writes the packet with a correct length and CRC (whatever `crc_ok` says).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let len = self.payload.len() + 5;
        let mut out = Vec::with_capacity(len + 6);
        if self.extended {
            let l = u16::try_from(len)
                .map_err(|_| FrameError::PayloadTooLong { len: self.payload.len(), form: "79 79" })?;
            out.extend_from_slice(&[0x79, 0x79]);
            out.extend_from_slice(&l.to_be_bytes());
        } else {
            let l = u8::try_from(len)
                .map_err(|_| FrameError::PayloadTooLong { len: self.payload.len(), form: "78 78" })?;
            out.extend_from_slice(&[0x78, 0x78, l]);
        }
        out.push(self.protocol);
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.serial.to_be_bytes());
        let crc = crc16_x25(&out[2..]);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&[0x0D, 0x0A]);
        Ok(out)
    }

    /// Reads the payload.
    pub fn message(&self) -> Result<Message, ContentError> {
        let err = |reason| ContentError { protocol: self.protocol, reason };
        let p = &self.payload;
        match self.protocol {
            LOGIN => Login::parse(p).map(Message::Login).map_err(err),
            STATUS => Status::parse_heartbeat(p).map(Message::Status).map_err(err),
            GPS | GPS_LBS | GPS_LBS_2 => {
                Location::parse(self.protocol, p).map(Message::Location).map_err(err)
            }
            ALARM | ALARM_2 | ALARM_3 => Alarm::parse(self.protocol, p).map(Message::Alarm).map_err(err),
            protocol => Ok(Message::Other { protocol }),
        }
    }
}

/// The acknowledgement a packet requires, if any: `78 78 05 PP SSSS CCCC 0D 0A` (or the `79 79`
/// form for a long packet) for login, heartbeat, location and alarm packets. A tracker that is
/// not acknowledged resends, and after a missed login or heartbeat reply it reconnects.
///
/// It is sent whatever [`Packet::crc_ok`] says, and after the packet's data is persisted.
///
/// ```
/// use trygg_protocols::gt06::{reply_for, Packet, LOGIN};
/// let login = Packet::new(LOGIN, &[0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81], 1);
/// assert_eq!(reply_for(&login).unwrap(), [0x78, 0x78, 0x05, 0x01, 0x00, 0x01, 0xD9, 0xDC, 0x0D, 0x0A]);
/// ```
pub fn reply_for(packet: &Packet) -> Option<Vec<u8>> {
    if !ACKNOWLEDGED.contains(&packet.protocol) {
        return None;
    }
    let reply = Packet {
        extended: packet.extended,
        protocol: packet.protocol,
        payload: Vec::new(),
        serial: packet.serial,
        crc_ok: true,
    };
    reply.encode().ok()
}

/// The payload of a packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// 0x01: the first packet of a connection; until it is accepted, other packets are dropped.
    Login(Login),
    /// 0x13: heartbeat with battery, charging and alarm state.
    Status(Status),
    /// 0x10, 0x12, 0x22: a position.
    Location(Location),
    /// 0x16, 0x26, 0x27: an alarm with position and status.
    Alarm(Alarm),
    /// Any other protocol number (settings, strings, Wi-Fi lists, …).
    Other {
        /// The protocol number.
        protocol: u8,
    },
}

/// A login packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The IMEI: 15 digits when the BCD starts with a 0 nibble, else 16.
    pub imei: String,
    /// The type identification code, when sent.
    pub model: Option<u16>,
    /// The device's time zone, when sent: the clock its GPS times are read at.
    pub utc_offset: Option<FixedOffset>,
}

impl Login {
    fn parse(p: &[u8]) -> Result<Self, &'static str> {
        let bcd = p.get(..8).ok_or("login shorter than the 8-byte IMEI")?;
        let mut imei = String::with_capacity(16);
        for &b in bcd {
            for nibble in [b >> 4, b & 0x0F] {
                if nibble > 9 {
                    return Err("IMEI is not BCD");
                }
                imei.push(char::from(b'0' + nibble));
            }
        }
        if imei.starts_with('0') {
            imei.remove(0);
        }
        let model = p.get(8..10).map(|m| u16::from_be_bytes([m[0], m[1]]));
        let utc_offset = match p.get(10..12) {
            Some(tz) => {
                let word = u16::from_be_bytes([tz[0], tz[1]]);
                let hhmm = i32::from(word >> 4);
                let minutes = hhmm / 100 * 60 + hhmm % 100;
                let minutes = if word & 0x08 != 0 { -minutes } else { minutes };
                Some(crate::utc_offset_from_minutes(minutes).ok_or("time zone beyond 24 h")?)
            }
            None => None,
        };
        Ok(Self { imei, model, utc_offset })
    }
}

/// The terminal-information byte of status packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalInfo(pub u8);

impl TerminalInfo {
    /// Bit 1: ACC (ignition) on.
    pub fn acc(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// Bit 2: charging.
    pub fn charging(self) -> bool {
        self.0 & 0x04 != 0
    }

    /// Bit 6: GPS tracking on.
    pub fn gps_tracking(self) -> bool {
        self.0 & 0x40 != 0
    }

    /// Bits 3-5: 100 SOS, 011 low battery, 010 power cut, 001 vibration, 111 removed.
    pub fn alarm(self) -> Option<Gt06Alarm> {
        match (self.0 >> 3) & 0x07 {
            0 => None,
            1 => Some(Gt06Alarm::Vibration),
            2 => Some(Gt06Alarm::PowerCut),
            3 => Some(Gt06Alarm::LowBattery),
            4 => Some(Gt06Alarm::Sos),
            7 => Some(Gt06Alarm::Removed),
            n => Some(Gt06Alarm::Other(n)),
        }
    }
}

/// The alarm byte of status packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmCode(pub u8);

impl AlarmCode {
    /// The alarm the code stands for, `None` for 0 (no alarm).
    pub fn alarm(self) -> Option<Gt06Alarm> {
        Some(match self.0 {
            0x00 => return None,
            0x01 => Gt06Alarm::Sos,
            0x02 => Gt06Alarm::PowerCut,
            0x03 | 0x09 => Gt06Alarm::Vibration,
            0x04 => Gt06Alarm::GeofenceEnter,
            0x05 => Gt06Alarm::GeofenceExit,
            0x06 => Gt06Alarm::Overspeed,
            0x0E | 0x0F | 0x19 => Gt06Alarm::LowBattery,
            0x0C | 0x13 | 0x25 | 0x32 => Gt06Alarm::Tampering,
            0x18 => Gt06Alarm::Removed,
            0x23 => Gt06Alarm::Fall,
            other => Gt06Alarm::Other(other),
        })
    }
}

/// An alarm as GT06 devices name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gt06Alarm {
    /// The SOS button.
    Sos,
    /// External power cut.
    PowerCut,
    /// Vibration / shock.
    Vibration,
    /// Device-side geofence entered.
    GeofenceEnter,
    /// Device-side geofence left.
    GeofenceExit,
    /// Over speed.
    Overspeed,
    /// Low battery.
    LowBattery,
    /// Tampering.
    Tampering,
    /// The device was taken off.
    Removed,
    /// A fall was detected.
    Fall,
    /// A code without a meaning here.
    Other(u8),
}

impl Gt06Alarm {
    /// The trygg device alarm this is, if it is one.
    pub fn device_alarm(self) -> Option<DeviceAlarmKind> {
        match self {
            Self::Sos => Some(DeviceAlarmKind::Sos),
            Self::Fall => Some(DeviceAlarmKind::Fall),
            Self::Removed => Some(DeviceAlarmKind::WatchRemoved),
            _ => None,
        }
    }
}

/// Battery, charging, signal and alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// The terminal-information byte.
    pub terminal: Option<TerminalInfo>,
    /// Voltage level 0-6 as sent.
    pub voltage_level: Option<u8>,
    /// Battery in percent: voltage level × 100 / 6, or the percentage a model sends directly.
    pub battery_pct: Option<u8>,
    /// GSM signal 0-4 as sent.
    pub gsm_signal: Option<u8>,
    /// The alarm byte.
    pub alarm: Option<AlarmCode>,
    /// The language byte.
    pub language: Option<u8>,
}

impl Status {
    /// Heartbeat payloads: the standard `terminal, voltage, gsm[, alarm, language]`, or the
    /// 16-byte layout of some models with the battery percentage at byte 5.
    fn parse_heartbeat(p: &[u8]) -> Result<Self, &'static str> {
        if p.len() == 16 {
            return Ok(Self {
                alarm: Some(AlarmCode(p[3])),
                language: Some(p[4]),
                battery_pct: Some(p[5]).filter(|b| *b <= 100),
                ..Self::default()
            });
        }
        Self::parse_standard(p)
    }

    fn parse_standard(p: &[u8]) -> Result<Self, &'static str> {
        let [terminal, voltage, gsm, ..] = *p else { return Err("status shorter than 3 bytes") };
        Ok(Self {
            terminal: Some(TerminalInfo(terminal)),
            voltage_level: Some(voltage),
            battery_pct: (voltage <= 6).then(|| u8::try_from(u16::from(voltage) * 100 / 6).unwrap_or(100)),
            gsm_signal: Some(gsm),
            alarm: p.get(3).map(|&a| AlarmCode(a)),
            language: p.get(4).copied(),
        })
    }

    /// Whether the charger is connected.
    pub fn charging(&self) -> Option<bool> {
        self.terminal.map(TerminalInfo::charging)
    }

    /// Every alarm reported, from the terminal bits and the alarm byte, without repeats.
    pub fn alarms(&self) -> Vec<Gt06Alarm> {
        let mut out = Vec::new();
        for a in [self.terminal.and_then(TerminalInfo::alarm), self.alarm.and_then(AlarmCode::alarm)]
            .into_iter()
            .flatten()
        {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// The trygg device alarms among [`Status::alarms`].
    pub fn device_alarms(&self) -> Vec<DeviceAlarmKind> {
        self.alarms().into_iter().filter_map(Gt06Alarm::device_alarm).collect()
    }
}

/// A mobile cell (LBS) reported with a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location area code.
    pub lac: u16,
    /// Cell id.
    pub cid: u32,
}

impl Cell {
    /// `MCC(2) MNC(1, or 2 when MCC bit 15 is set) LAC(2) CID(3)`; returns the cell and the
    /// bytes read.
    fn parse(p: &[u8]) -> Option<(Self, usize)> {
        let mcc = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
        let (mnc, at) = if mcc & 0x8000 != 0 {
            (u16::from_be_bytes([*p.get(2)?, *p.get(3)?]), 4)
        } else {
            (u16::from(*p.get(2)?), 3)
        };
        let lac = u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]);
        let cid = u32::from_be_bytes([0, *p.get(at + 2)?, *p.get(at + 3)?, *p.get(at + 4)?]);
        Some((Self { mcc: mcc & 0x7FFF, mnc, lac, cid }, at + 5))
    }

    fn is_empty(self) -> bool {
        self.mcc == 0 && self.lac == 0 && self.cid == 0
    }
}

/// Length of the GPS block: date-time 6, length/satellites 1, lat 4, lon 4, speed 1, course 2.
const GPS_BLOCK: usize = 18;

/// Reads the GPS block; `None` when its date is not a date (devices without a fix may send
/// zeros).
fn parse_gps(p: &[u8]) -> Option<DevicePosition> {
    let b = p.get(..GPS_BLOCK)?;
    let time = gps_time(&b[..6])?;
    let lat = f64::from(u32::from_be_bytes([b[7], b[8], b[9], b[10]])) / 1_800_000.0;
    let lon = f64::from(u32::from_be_bytes([b[11], b[12], b[13], b[14]])) / 1_800_000.0;
    let word = u16::from_be_bytes([b[16], b[17]]);
    Some(DevicePosition {
        time,
        valid: word & 0x1000 != 0,
        lat: if word & 0x0400 != 0 { lat } else { -lat },
        lon: if word & 0x0800 != 0 { -lon } else { lon },
        speed_kmh: Some(f64::from(b[15])),
        course_deg: Some(f64::from(word & 0x03FF)),
        altitude_m: None,
        satellites: Some(b[6] & 0x0F),
        battery_pct: None,
        cell_count: 0,
        wifi_count: 0,
    })
}

fn gps_time(b: &[u8]) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(2000 + i32::from(b[0]), u32::from(b[1]), u32::from(b[2]))?.and_hms_opt(
        u32::from(b[3]),
        u32::from(b[4]),
        u32::from(b[5]),
    )
}

/// A location packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The position, on the device clock (UTC unless the login said otherwise).
    pub position: DevicePosition,
    /// The serving cell, when sent.
    pub cell: Option<Cell>,
    /// 0x22 only: whether this is a re-upload of a buffered position rather than a live one.
    pub buffered: Option<bool>,
}

impl Location {
    fn parse(protocol: u8, p: &[u8]) -> Result<Self, &'static str> {
        let mut position = parse_gps(p).ok_or("GPS block short or with an impossible date")?;
        let rest = &p[GPS_BLOCK..];
        let (cell, buffered) = if protocol == GPS {
            (None, None)
        } else {
            let (cell, used) = Cell::parse(rest).ok_or("LBS block short")?;
            // 0x22: ACC, upload mode, real-time (0) or re-upload (1).
            let buffered = (protocol == GPS_LBS_2).then(|| rest.get(used + 2).map(|&b| b != 0)).flatten();
            (Some(cell).filter(|c| !c.is_empty()), buffered)
        };
        position.cell_count = u32::from(cell.is_some());
        Ok(Self { position, cell, buffered })
    }
}

/// An alarm packet. The status is read even when the GPS block is unusable, so an alarm is never
/// lost for want of a position.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// The position, if the GPS block holds a real date.
    pub position: Option<DevicePosition>,
    /// The serving cell, when sent.
    pub cell: Option<Cell>,
    /// Battery, charging and the alarm itself.
    pub status: Status,
}

impl Alarm {
    fn parse(protocol: u8, p: &[u8]) -> Result<Self, &'static str> {
        if p.len() < GPS_BLOCK + 1 + 3 {
            return Err("alarm shorter than a GPS block, an LBS length and a status");
        }
        let lbs_len = usize::from(p[GPS_BLOCK]);
        // The LBS length counts itself. Some models send 0 and pad the block; the status is
        // then the fixed-size tail: terminal, voltage, GSM, alarm, language (2 bytes on 0x27).
        let (cell, status_at) = if lbs_len > 0 {
            let cell = Cell::parse(&p[GPS_BLOCK + 1..]).map(|(c, _)| c).filter(|c| !c.is_empty());
            (cell, GPS_BLOCK + lbs_len)
        } else {
            let tail = if protocol == ALARM_3 { 6 } else { 5 };
            (None, p.len().saturating_sub(tail).max(GPS_BLOCK + 1))
        };
        let status = Status::parse_standard(p.get(status_at..).unwrap_or_default())?;
        let position = parse_gps(p).map(|mut pos| {
            pos.battery_pct = status.battery_pct;
            pos.cell_count = u32::from(cell.is_some());
            pos
        });
        Ok(Self { position, cell, status })
    }
}

#[cfg(test)]
pub(crate) mod tests;
