//! The watch text protocol (3G / SeTracker / Beesure; Traccar port 5093): framing, content,
//! replies and server commands.
//!
//! A frame is `[MM*ID*LLLL*CONTENT]`, or `[ZJ*ID*IIII*LLLL*CONTENT]` with a sequence index. The
//! decoder is deliberately lenient where real watches are sloppy and strict where leniency would
//! cost an alarm or the connection:
//!
//! - the hex length `LLLL` is **not trusted**: many devices send a wrong one, so a mismatch is
//!   recorded in [`Frame::length_mismatch`] (worth a metric) and the frame is kept;
//! - a frame ends at the `]` that closes its `[` (bracket depth), because Wi-Fi names may contain
//!   brackets; several frames may share one read, and a frame may span reads;
//! - garbage before a frame is skipped and reported in [`Decoded::skipped`];
//! - a frame that grows beyond `max_frame_bytes` without closing is an error: the listener closes
//!   the connection rather than buffer without bound.
//!
//! Status bits: Traccar reports only the first alarm bit set, so an SOS arriving together with a
//! low-battery bit is lost. [`WatchStatus`] reports every bit, and
//! [`WatchStatus::device_alarms`] every device alarm.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use trygg_core::DeviceAlarmKind;

use crate::{Decoded, DevicePosition};

/// Longest device id accepted in a frame header.
const MAX_ID_LEN: usize = 64;

/// One watch frame, content unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The two-character maker prefix (`3G`, `SG`, `CS`, `ZJ`, …), echoed in replies.
    pub maker: String,
    /// The device id from the header (10 digits or a 15-digit IMEI).
    pub device_id: String,
    /// The 4-hex sequence index of the `ZJ` variant, echoed in replies.
    pub index: Option<String>,
    /// The content length the device declared. Not trusted.
    pub declared_len: u16,
    /// Whether `declared_len` differs from the real (unescaped) content length.
    pub length_mismatch: bool,
    /// `TYPE[,fields]`, with the binary escapes `7D 01..05` undone.
    pub content: Vec<u8>,
}

/// Why bytes could not be framed, or a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame started but did not close within the size cap: close the connection.
    #[error("frame exceeds {max} bytes without a closing ]")]
    TooLarge {
        /// The cap that was exceeded.
        max: usize,
    },
    /// More than the size cap arrived without any frame start: close the connection.
    #[error("{skipped} bytes without a frame start")]
    NoFrameStart {
        /// How many bytes were garbage.
        skipped: usize,
    },
    /// A complete, bracketed frame whose header is broken. The listener may drop `consumed`
    /// bytes and go on, or close the connection.
    #[error("malformed frame header: {reason}")]
    Malformed {
        /// Bytes to drop from the front of the buffer (garbage plus the bad frame).
        consumed: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A field given to an encoder cannot be written into a frame.
    #[error("cannot encode {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Cuts the first frame from `buf`: check → parse → advance.
///
/// Returns `Ok(None)` when more bytes are needed. On success the caller removes
/// [`Decoded::consumed`] bytes from its buffer. Only the first `max_frame_bytes` of a frame are
/// ever scanned, so a huge buffer without a terminator costs no more than the cap.
///
/// ```
/// use trygg_protocols::watch::{decode_frame, Message};
/// let d = decode_frame(b"xx[3G*4700186508*000B*LK,0,10,100]", 4096).unwrap().unwrap();
/// assert_eq!((d.consumed, d.skipped), (34, 2));
/// assert!(matches!(d.frame.message(), Message::Link(l) if l.battery_pct == Some(100)));
/// ```
pub fn decode_frame(buf: &[u8], max_frame_bytes: usize) -> Result<Option<Decoded<Frame>>, FrameError> {
    let Some(start) = find_start(buf) else {
        if buf.len() > max_frame_bytes {
            return Err(FrameError::NoFrameStart { skipped: buf.len() });
        }
        return Ok(None);
    };
    let rest = &buf[start..];
    let Some(end) = find_end(&rest[..rest.len().min(max_frame_bytes)]) else {
        if rest.len() >= max_frame_bytes {
            return Err(FrameError::TooLarge { max: max_frame_bytes });
        }
        return Ok(None);
    };
    let consumed = start + end + 1;
    let frame = parse_frame(&rest[..=end]).map_err(|reason| FrameError::Malformed { consumed, reason })?;
    Ok(Some(Decoded { frame, consumed, skipped: start }))
}

/// The first `[` that can start a frame: `[` followed by a two-character prefix and `*`. A lone
/// `[` in garbage would otherwise swallow the frames after it.
fn find_start(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(offset) = buf[from..].iter().position(|&b| b == b'[') {
        let at = from + offset;
        match buf.get(at + 3) {
            None | Some(b'*') => return Some(at),
            Some(_) => from = at + 1,
        }
    }
    None
}

/// The index of the `]` that closes the `[` at index 0.
fn find_end(frame: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in frame.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_frame(raw: &[u8]) -> Result<Frame, &'static str> {
    let inner = &raw[1..raw.len() - 1];
    let (maker, rest) = split_star(inner).ok_or("no * after the maker prefix")?;
    if maker.len() != 2 || !maker.iter().all(|&b| is_header_byte(b)) {
        return Err("the maker prefix is not two plain characters");
    }
    let (id, rest) = split_star(rest).ok_or("no * after the device id")?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.iter().all(|&b| is_header_byte(b)) {
        return Err("the device id is empty, too long or has odd characters");
    }
    let (index, rest) = match rest {
        [a, b, c, d, b'*', e, f, g, h, b'*', ..] if all_hex(&[*a, *b, *c, *d, *e, *f, *g, *h]) => {
            (Some(ascii(&rest[..4])), &rest[5..])
        }
        _ => (None, rest),
    };
    let (len, content) = match rest {
        [a, b, c, d, b'*', ..] if all_hex(&[*a, *b, *c, *d]) => (&rest[..4], &rest[5..]),
        _ => return Err("no 4-hex-digit length followed by *"),
    };
    let declared_len = u16::from_str_radix(&ascii(len), 16).map_err(|_| "the length is not hex")?;
    let content = unescape(content);
    Ok(Frame {
        maker: ascii(maker),
        device_id: ascii(id),
        index,
        declared_len,
        length_mismatch: usize::from(declared_len) != content.len(),
        content,
    })
}

fn split_star(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b'*')?;
    Some((&b[..i], &b[i + 1..]))
}

/// Characters allowed in the maker prefix and the device id: printable ASCII that is not a
/// delimiter of the frame.
fn is_header_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'*' | b'[' | b']' | b',')
}

fn all_hex(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_hexdigit)
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Undoes the binary escapes of voice payloads: `7D 01..05` stand for `7D [ ] , *`.
fn unescape(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        let b = content[i];
        let escaped = match (b, content.get(i + 1)) {
            (0x7D, Some(1)) => Some(0x7D),
            (0x7D, Some(2)) => Some(b'['),
            (0x7D, Some(3)) => Some(b']'),
            (0x7D, Some(4)) => Some(b','),
            (0x7D, Some(5)) => Some(b'*'),
            _ => None,
        };
        match escaped {
            Some(e) => {
                out.push(e);
                i += 2;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Escapes the bytes that would break framing (`7D`, `[`, `]`); commas and stars stay, since
/// they separate the fields of text content.
fn escape(content: &[u8], out: &mut Vec<u8>) {
    for &b in content {
        match b {
            0x7D => out.extend_from_slice(&[0x7D, 1]),
            b'[' => out.extend_from_slice(&[0x7D, 2]),
            b']' => out.extend_from_slice(&[0x7D, 3]),
            _ => out.push(b),
        }
    }
}

impl Frame {
    /// A frame with a correct length field.
    pub fn new(
        maker: &str,
        device_id: &str,
        index: Option<&str>,
        content: &[u8],
    ) -> Result<Self, FrameError> {
        let declared_len = u16::try_from(content.len())
            .map_err(|_| FrameError::InvalidField { field: "content", reason: "longer than 0xffff bytes" })?;
        let frame = Self {
            maker: maker.to_owned(),
            device_id: device_id.to_owned(),
            index: index.map(str::to_owned),
            declared_len,
            length_mismatch: false,
            content: content.to_vec(),
        };
        frame.check_header()?;
        Ok(frame)
    }

    fn check_header(&self) -> Result<(), FrameError> {
        let bad = |field, reason| Err(FrameError::InvalidField { field, reason });
        if self.maker.len() != 2 || !self.maker.bytes().all(is_header_byte) {
            return bad("maker", "must be two printable characters other than * [ ] ,");
        }
        if self.device_id.is_empty()
            || self.device_id.len() > MAX_ID_LEN
            || !self.device_id.bytes().all(is_header_byte)
        {
            return bad("device_id", "must be 1 to 64 printable characters other than * [ ] ,");
        }
        if self.index.as_deref().is_some_and(|i| i.len() != 4 || !all_hex(i.as_bytes())) {
            return bad("index", "must be 4 hex digits");
        }
        Ok(())
    }

    /// Writes the frame. The length field is `declared_len`, as 4 lowercase hex digits; bytes
    /// that would break framing in the content are escaped.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        self.check_header()?;
        let mut out = Vec::with_capacity(self.content.len() + self.device_id.len() + 16);
        out.push(b'[');
        out.extend_from_slice(self.maker.as_bytes());
        out.push(b'*');
        out.extend_from_slice(self.device_id.as_bytes());
        out.push(b'*');
        if let Some(index) = &self.index {
            out.extend_from_slice(index.as_bytes());
            out.push(b'*');
        }
        out.extend_from_slice(format!("{:04x}", self.declared_len).as_bytes());
        out.push(b'*');
        escape(&self.content, &mut out);
        out.push(b']');
        Ok(out)
    }

    /// The message type: the content up to the first comma (`LK`, `UD_LTE`, `AL`, …).
    pub fn kind(&self) -> String {
        let end = self.content.iter().position(|&b| b == b',').unwrap_or(self.content.len());
        ascii(&self.content[..end])
    }

    /// Parses the content. Never fails: an unparseable position record is returned as an error
    /// inside [`Message::Position`], so that an `AL` frame is still acknowledged and raised.
    pub fn message(&self) -> Message {
        let kind = self.kind();
        let body = self.content.get(kind.len() + 1..).unwrap_or_default();
        match kind.as_str() {
            "LK" => Message::Link(Link::parse(body)),
            "INIT" => Message::Init,
            "TKQ" | "TKQ2" => Message::VoiceQuery { kind },
            k if is_position_kind(k) => Message::Position { record: PositionRecord::parse(body), kind },
            _ => Message::Other { kind },
        }
    }
}

/// Whether a message type carries a position record: any type starting with `UD`, `AL` or `WT`.
pub fn is_position_kind(kind: &str) -> bool {
    kind.starts_with("UD") || kind.starts_with("AL") || kind.starts_with("WT")
}

/// Whether a message type is an alarm report (`AL`, `AL_LTE`, `ALCUSTOMER1`, …).
///
/// An alarm frame whose status has no known alarm bit (Traccar's `general`, #5006) is still an
/// alarm the wearer may have raised; the listener decides how to raise it rather than drop it.
pub fn is_alarm_kind(kind: &str) -> bool {
    kind.starts_with("AL")
}

/// The content of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `LK[,steps,rolls,battery]`: the keep-alive.
    Link(Link),
    /// `UD*`, `AL*`, `WT*`: a position record; `AL*` is an alarm.
    Position {
        /// The message type, e.g. `UD_LTE` or `AL`.
        kind: String,
        /// The record, or why it could not be read.
        record: Result<PositionRecord, RecordError>,
    },
    /// `TKQ` / `TKQ2`: the watch asks for voice messages.
    VoiceQuery {
        /// `TKQ` or `TKQ2`.
        kind: String,
    },
    /// `INIT`: the watch starts a session.
    Init,
    /// Any other type (health data, voice, settings acknowledgements, …).
    Other {
        /// The message type.
        kind: String,
    },
}

/// The values of an `LK` keep-alive. Each is `None` when absent or unreadable: a keep-alive is
/// never refused for a bad counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Steps counted today.
    pub steps: Option<u32>,
    /// Roll-overs (tumbles) counted.
    pub rolls: Option<u32>,
    /// Battery in percent; only present when the watch sends three values.
    pub battery_pct: Option<u8>,
}

impl Link {
    fn parse(body: &[u8]) -> Self {
        if body.is_empty() {
            return Self::default();
        }
        let text = String::from_utf8_lossy(body);
        let values: Vec<&str> = text.split(',').map(str::trim).collect();
        Self {
            steps: values.first().and_then(|v| v.parse().ok()),
            rolls: values.get(1).and_then(|v| v.parse().ok()),
            battery_pct: values.get(2).and_then(|v| v.parse().ok()).filter(|b| *b <= 100),
        }
    }
}

/// The 32-bit status word of a position record. Every bit is reported, not only the first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WatchStatus(pub u32);

impl WatchStatus {
    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }

    /// Bit 16: the SOS button.
    pub fn sos(self) -> bool {
        self.bit(16)
    }

    /// Bits 21 or 22: a fall was detected.
    pub fn fall(self) -> bool {
        self.bit(21) || self.bit(22)
    }

    /// Bit 20: the watch was taken off.
    pub fn removed(self) -> bool {
        self.bit(20)
    }

    /// Bit 14: external power was cut (2G watches send this when unplugged).
    pub fn power_cut(self) -> bool {
        self.bit(14)
    }

    /// Bits 0 or 17: low battery.
    pub fn low_battery(self) -> bool {
        self.bit(0) || self.bit(17)
    }

    /// Bit 4: the watch is moving.
    pub fn motion(self) -> bool {
        self.bit(4)
    }

    /// Every device alarm whose bit is set, in the order SOS, fall, removed.
    pub fn device_alarms(self) -> Vec<DeviceAlarmKind> {
        [
            (self.sos(), DeviceAlarmKind::Sos),
            (self.fall(), DeviceAlarmKind::Fall),
            (self.removed(), DeviceAlarmKind::WatchRemoved),
        ]
        .into_iter()
        .filter_map(|(set, kind)| set.then_some(kind))
        .collect()
    }

    /// The device alarms an `AL*` frame with this status raises: its critical bits, or an SOS
    /// when it names no alarm at all (Traccar's "general": the button may have been pressed).
    /// A frame that names only a non-critical condition — power cut (a watch taken off its
    /// charger), low battery, a geofence of the watch's own (bits 1, 2, 18, 19) — raises none.
    pub fn alarm_frame_alarms(self) -> Vec<DeviceAlarmKind> {
        let alarms = self.device_alarms();
        let non_critical =
            self.power_cut() || self.low_battery() || [1, 2, 18, 19].iter().any(|&n| self.bit(n));
        if alarms.is_empty() && !non_critical { vec![DeviceAlarmKind::Sos] } else { alarms }
    }
}

impl fmt::Debug for WatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WatchStatus({:08x})", self.0)
    }
}

/// A mobile cell reported with a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellTower {
    /// Mobile country code (0 when not sent).
    pub mcc: u16,
    /// Mobile network code (0 when not sent).
    pub mnc: u16,
    /// Location area code.
    pub lac: u32,
    /// Cell id.
    pub cid: u64,
    /// Signal strength, as sent.
    pub rssi: Option<i32>,
}

/// A Wi-Fi access point reported with a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiAccessPoint {
    /// The network name, as sent.
    pub ssid: String,
    /// The MAC address, as sent (usually `aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// Signal strength in dBm.
    pub rssi: Option<i32>,
}

/// A position record of a `UD*`, `AL*` or `WT*` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRecord {
    /// Time, validity, coordinates, speed, course, altitude, satellites, battery, and how many
    /// cells and Wi-Fi networks were reported.
    pub position: DevicePosition,
    /// GSM signal as sent (0–100).
    pub gsm_signal: Option<u8>,
    /// Steps counted today.
    pub steps: Option<u32>,
    /// Roll-overs (tumbles) counted.
    pub rolls: Option<u32>,
    /// The status word with the alarm bits.
    pub status: WatchStatus,
    /// Mobile cells reported.
    pub cells: Vec<CellTower>,
    /// Wi-Fi access points reported.
    pub wifi: Vec<WifiAccessPoint>,
}

/// Why a position record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record ends before a required field.
    #[error("position record has no {0} field")]
    Missing(&'static str),
    /// A required field does not parse.
    #[error("position record field {field} is invalid: {value:?}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its text (at most 32 characters).
        value: String,
    },
}

fn invalid(field: &'static str, value: &str) -> RecordError {
    RecordError::Invalid { field, value: value.chars().take(32).collect() }
}

impl PositionRecord {
    /// Parses the fields after the message type.
    ///
    /// Date, time, validity, coordinates and the status word are required: without them the
    /// record means nothing. Speed, course, altitude and the counters are optional (`None`
    /// when empty or unreadable), and the cell/Wi-Fi tail is read as far as it makes sense.
    pub fn parse(body: &[u8]) -> Result<Self, RecordError> {
        if body.is_empty() {
            return Err(RecordError::Missing("date"));
        }
        let text = String::from_utf8_lossy(body);
        let f: Vec<&str> = text.split(',').map(str::trim).collect();
        let field = |i: usize, name: &'static str| f.get(i).copied().ok_or(RecordError::Missing(name));

        let time = parse_date_time(field(0, "date")?, field(1, "time")?)?;
        let valid = match field(2, "validity")? {
            "A" => true,
            "V" => false,
            other => return Err(invalid("validity", other)),
        };
        let lat = coordinate(field(3, "latitude")?, field(4, "latitude hemisphere")?, "latitude", 'N', 'S')?;
        let lon =
            coordinate(field(5, "longitude")?, field(6, "longitude hemisphere")?, "longitude", 'E', 'W')?;
        let status_text = field(15, "status")?;
        if status_text.is_empty() || status_text.len() > 8 {
            return Err(invalid("status", status_text));
        }
        let status = u32::from_str_radix(status_text, 16).map_err(|_| invalid("status", status_text))?;
        let opt_f64 = |i: usize| f.get(i).and_then(|v| finite(v));
        let opt_u8 = |i: usize| f.get(i).and_then(|v| v.parse::<u8>().ok());
        let opt_u32 = |i: usize| f.get(i).and_then(|v| v.parse::<u32>().ok());
        let (cells, wifi) = parse_tail(f.get(16..).unwrap_or_default());

        Ok(Self {
            position: DevicePosition {
                time,
                valid,
                lat,
                lon,
                speed_kmh: opt_f64(7).filter(|v| *v >= 0.0),
                course_deg: opt_f64(8),
                altitude_m: opt_f64(9),
                satellites: opt_u8(10),
                battery_pct: opt_u8(12).filter(|b| *b <= 100),
                cell_count: u32::try_from(cells.len()).unwrap_or(u32::MAX),
                wifi_count: u32::try_from(wifi.len()).unwrap_or(u32::MAX),
            },
            gsm_signal: opt_u8(11),
            steps: opt_u32(13),
            rolls: opt_u32(14),
            status: WatchStatus(status),
            cells,
            wifi,
        })
    }
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn two_digits(s: &str, at: usize) -> u32 {
    let b = s.as_bytes();
    u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0')
}

fn six_digits(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `ddMMyy`, `HHmmss` on the device clock.
fn parse_date_time(date: &str, time: &str) -> Result<NaiveDateTime, RecordError> {
    if !six_digits(date) {
        return Err(invalid("date", date));
    }
    if !six_digits(time) {
        return Err(invalid("time", time));
    }
    let year = 2000 + i32::try_from(two_digits(date, 4)).unwrap_or(0);
    NaiveDate::from_ymd_opt(year, two_digits(date, 2), two_digits(date, 0))
        .ok_or_else(|| invalid("date", date))?
        .and_hms_opt(two_digits(time, 0), two_digits(time, 2), two_digits(time, 4))
        .ok_or_else(|| invalid("time", time))
}

/// A decimal-degree value with its hemisphere: the negative hemisphere forces the value
/// negative; the positive one or none keeps the sign that was sent.
fn coordinate(
    value: &str,
    hemisphere: &str,
    name: &'static str,
    pos: char,
    neg: char,
) -> Result<f64, RecordError> {
    let v = finite(value).ok_or_else(|| invalid(name, value))?;
    match hemisphere.chars().next() {
        Some(h) if h == neg && hemisphere.len() == 1 => Ok(-v.abs()),
        Some(h) if h == pos && hemisphere.len() == 1 => Ok(v),
        None => Ok(v),
        Some(_) => Err(invalid(name, hemisphere)),
    }
}

fn looks_like_mac(s: &str) -> bool {
    s.len() == 17 && s.split(':').count() == 6 && s.split(':').all(|p| p.len() == 2 && all_hex(p.as_bytes()))
}

/// The tail after the status word: `cells, TA, MCC, MNC, (LAC, CID, rssi)×cells, wifis,
/// (ssid, mac, rssi)×wifis[, accuracy]`.
///
/// Devices disagree about the tail when there are no cells: some still send TA, MCC and MNC,
/// some send the Wi-Fi count straight after the zero. The Wi-Fi section is accepted only when
/// its first MAC is where the count says it is; otherwise the MAC-shaped fields are counted,
/// so a Wi-Fi-only report is recognised either way. Nothing here fails the record.
fn parse_tail(t: &[&str]) -> (Vec<CellTower>, Vec<WifiAccessPoint>) {
    let mut cells = Vec::new();
    let cell_count: usize = t.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut wifi_at = 1;
    // `cell_count <= t.len()` whenever this holds, so the slice below is in bounds.
    if cell_count > 0 && t.len() >= 4 + 3 * cell_count.min(t.len()) {
        let mcc = t[2].parse().unwrap_or(0);
        let mnc = t[3].parse().unwrap_or(0);
        for c in t[4..4 + 3 * cell_count].chunks_exact(3) {
            if let (Ok(lac), Ok(cid)) = (c[0].parse(), c[1].parse()) {
                cells.push(CellTower { mcc, mnc, lac, cid, rssi: c[2].parse().ok() });
            }
        }
        wifi_at = 4 + 3 * cell_count;
    }
    let declared = t.get(wifi_at).and_then(|v| v.parse::<usize>().ok());
    let end = declared.and_then(|n| n.checked_mul(3)).and_then(|n| n.checked_add(wifi_at + 1));
    let section = match (declared, end) {
        (Some(n), Some(end)) if n > 0 && t.len() >= end && looks_like_mac(t[wifi_at + 2]) => {
            Some(&t[wifi_at + 1..end])
        }
        _ => None,
    };
    let wifi = match section {
        Some(s) => s
            .chunks_exact(3)
            .map(|w| WifiAccessPoint { ssid: w[0].to_owned(), mac: w[1].to_owned(), rssi: w[2].parse().ok() })
            .collect(),
        None => {
            let start = if cell_count > 0 { wifi_at } else { 1 };
            let tail = t.get(start..).unwrap_or_default();
            tail.iter()
                .enumerate()
                .filter(|(_, v)| looks_like_mac(v))
                .map(|(i, mac)| WifiAccessPoint {
                    ssid: i.checked_sub(1).and_then(|j| tail.get(j)).copied().unwrap_or_default().to_owned(),
                    mac: (*mac).to_owned(),
                    rssi: tail.get(i + 1).and_then(|v| v.parse().ok()),
                })
                .collect()
        }
    };
    (cells, wifi)
}

/// The reply a frame requires, if any, with the maker prefix and `ZJ` index echoed:
/// `LK` → `LK`, any `AL*` → `AL` (even when its body is unparseable), `TKQ`/`TKQ2` echoed,
/// `INIT` → `INIT,1`, `JXTK` → `JXTKR,1`. Positions (`UD*`, `WT*`) and unknown types get none.
///
/// The listener sends it after the frame's data is persisted: a watch that gets no reply resends.
///
/// ```
/// use trygg_protocols::watch::{decode_frame, reply_for};
/// let d = decode_frame(b"[ZJ*014111001350304*0034*0009*LK,0,0,19]", 4096).unwrap().unwrap();
/// assert_eq!(reply_for(&d.frame).unwrap(), b"[ZJ*014111001350304*0034*0002*LK]");
/// ```
pub fn reply_for(frame: &Frame) -> Option<Vec<u8>> {
    let kind = frame.kind();
    let content = match kind.as_str() {
        "LK" => "LK",
        "TKQ" | "TKQ2" => kind.as_str(),
        "INIT" => "INIT,1",
        "JXTK" => "JXTKR,1",
        k if is_alarm_kind(k) => "AL",
        _ => return None,
    };
    Frame::new(&frame.maker, &frame.device_id, frame.index.as_deref(), content.as_bytes()).ok()?.encode().ok()
}

/// A server command `[prefix*id*LLLL*content]`. Traccar writes `SG` where the device said `3G`;
/// which prefix to use is the caller's choice. `ZJ` devices that need an index use
/// [`Frame::new`].
///
/// ```
/// assert_eq!(trygg_protocols::watch::encode_command("SG", "8800000015", "CR").unwrap(), b"[SG*8800000015*0002*CR]");
/// ```
pub fn encode_command(prefix: &str, device_id: &str, content: &str) -> Result<Vec<u8>, FrameError> {
    Frame::new(prefix, device_id, None, content.as_bytes())?.encode()
}

/// `UPLOAD,<secs>`: sets the position report interval.
pub fn upload_interval_command(prefix: &str, device_id: &str, secs: u32) -> Result<Vec<u8>, FrameError> {
    encode_command(prefix, device_id, &format!("UPLOAD,{secs}"))
}

/// `CR`: asks the watch for a position now (it answers with a fresh `UD`).
pub fn locate_now_command(prefix: &str, device_id: &str) -> Result<Vec<u8>, FrameError> {
    encode_command(prefix, device_id, "CR")
}

#[cfg(test)]
pub(crate) mod tests;
