//! A fleet of simulated 3G watches over real TCP: the load the M3 scenarios offer a real
//! `trygg serve`.
//!
//! Each watch is one long-lived connection speaking the watch protocol exactly as trygg's
//! listener reads it (every frame is written by `trygg_protocols::watch`, every reply read by
//! it): a keep-alive (`LK`) when it connects and then on its own schedule, and positions (`UD`,
//! or `UD2` for fixes it buffered while it had no connection). The wearer wanders about at home;
//! some wearers walk out of their zone at a set time, so the alarm engine raises zone exits and
//! the push worker pushes them while the load runs.
//!
//! **Acknowledgement of a position.** The watch protocol answers no position frame (`UD*` has
//! no reply), but trygg handles a connection's frames strictly in order and writes a frame's
//! reply only after what the frame carried is committed. So each position is followed by a
//! `TKQ` (the voice-message query real watches send, which stores nothing and is echoed): its
//! echo arrives once the position before it is committed. It costs the server one more small
//! frame and write per fix, so the CPU figures are, if anything, pessimistic. Whether a fix was
//! really stored is checked against the database at the end, not taken from the echo.
//!
//! **Open loop.** A watch's send times follow from the offered rate alone (the [`Profile`]),
//! never from when its previous answer came, and latency is measured from the *scheduled* send
//! time. A server that falls behind therefore shows its queueing in the latency instead of
//! quietly slowing the load down (coordinated omission). Replies are read by a reader of their
//! own, so a watch keeps sending while answers are outstanding.
//!
//! **Outages.** An [`Outage`] drops every connection at once (a mobile network failing): the
//! watches keep taking fixes into their buffers, reconnect at random within a window after the
//! outage and upload the buffer as `UD2`, resending first what was sent but never answered.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use trygg_protocols::watch::{Frame, decode_frame};

use crate::{Rng, offset};

/// The watch maker prefix the simulated watches use.
const MAKER: &str = "3G";
/// A buffered fix older than this at sending is sent as `UD2` (a re-upload), as watches do.
const BUFFERED_AFTER: Duration = Duration::from_secs(5);
/// How far a wandering wearer strays from home, in metres.
const WANDER_M: f64 = 60.0;
/// How far a leaving wearer walks per fix, in metres: under the exit policy's 50 m/s plausible
/// speed even at two fixes a second.
const LEAVE_STEP_M: f64 = 15.0;

/// One stretch of offered load.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Its name in reports (`warmup`, `steady`, `burst`, …).
    pub name: String,
    /// How long it lasts.
    pub secs: f64,
    /// Positions per second offered by the whole fleet.
    pub rate: f64,
}

/// The offered load over time: phases one after the other.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The phases, in order.
    pub phases: Vec<Phase>,
}

impl Profile {
    /// The phase at `t` seconds after the load started (the last one past the end).
    pub fn phase_at(&self, t: f64) -> usize {
        let mut end = 0.0;
        for (i, p) in self.phases.iter().enumerate() {
            end += p.secs;
            if t < end {
                return i;
            }
        }
        self.phases.len().saturating_sub(1)
    }

    /// When phase `i` starts, in seconds after the load started.
    pub fn start_of(&self, i: usize) -> f64 {
        self.phases[..i].iter().map(|p| p.secs).sum()
    }

    /// The whole duration in seconds.
    pub fn secs(&self) -> f64 {
        self.phases.iter().map(|p| p.secs).sum()
    }

    /// When a watch that sends at `t`, one of `watches` sharing the load, sends next: one
    /// interval on at the current rate; but where that interval reaches a phase of another rate,
    /// at a point `unit` (0..1) of the way into that phase's first interval. Without the fresh
    /// draw the fleet would carry its old rhythm into the new rate: after a burst in which every
    /// watch sent each second, all would send in alternate seconds, offering the double rate
    /// half the time.
    fn next_send(&self, t: f64, watches: f64, unit: f64) -> f64 {
        let phase = self.phase_at(t);
        let rate = self.phases[phase].rate;
        let next = t + watches / rate.max(1e-3);
        let Some(following) = self.phases.get(phase + 1) else { return next };
        if self.phase_at(next) == phase || following.rate == rate {
            return next;
        }
        self.start_of(phase + 1) + unit * watches / following.rate.max(1e-3)
    }
}

/// All connections drop at `at_secs` (after the load started) for `secs`; each watch reconnects
/// at a random moment within `reconnect_within_secs` after that.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Outage {
    /// When the connections drop, seconds after the load started.
    pub at_secs: f64,
    /// How long the network is gone.
    pub secs: f64,
    /// The window in which the watches come back.
    pub reconnect_within_secs: f64,
}

/// One simulated watch and its wearer.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The device id (10 digits, as the watches have).
    pub id: String,
    /// The centre of the wearer's home zone (`x` = lon, `y` = lat).
    pub home: geo::Coord,
    /// Seconds after the load started when the wearer walks out of the zone, if they do.
    pub leaves_at_secs: Option<f64>,
}

/// What a reply acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A position sent when it was taken.
    Live,
    /// A position taken while the watch had no connection (or resent after one dropped).
    Buffered,
    /// A keep-alive.
    KeepAlive,
}

/// One acknowledged frame.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What it was.
    pub kind: Kind,
    /// Its scheduled send time, milliseconds after the load started (negative: before it).
    pub scheduled_ms: i64,
    /// Scheduled send → reply read, microseconds.
    pub latency_us: u64,
}

impl Sample {
    /// When the reply was read, milliseconds after the load started.
    pub fn acked_ms(&self) -> i64 {
        self.scheduled_ms + (self.latency_us / 1000) as i64
    }
}

/// Counters the progress line and the report read while the fleet runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Positions taken (generated on schedule).
    pub generated: AtomicU64,
    /// Position frames written (resends included).
    pub sent: AtomicU64,
    /// Positions acknowledged.
    pub acked: AtomicU64,
    /// Positions written again after a connection dropped before their acknowledgement.
    pub resent: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Connection attempts that failed.
    pub connect_errors: AtomicU64,
    /// Connections that ended other than by an outage or the end of the run.
    pub broken: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Replies that did not match the frame they should answer.
    pub mismatched: AtomicU64,
    /// Commands the server sent unasked (`UPLOAD`, `CR`: the engine hastening a suspected
    /// exit); they answer nothing, so they are counted apart from the replies.
    pub server_commands: AtomicU64,
}

/// What the fleet shares: the clock, the plan, and what it measured.
#[derive(Debug)]
pub struct Fleet {
    /// The server's watch listener.
    pub server: SocketAddr,
    /// Local addresses to connect from, round robin (ephemeral ports are per source address).
    pub sources: Vec<IpAddr>,
    /// When the load starts (connections are made before).
    pub start: Instant,
    /// The same moment on the wall clock (fix times).
    pub start_wall: DateTime<Utc>,
    /// How many watches share the load.
    pub watches: usize,
    /// The offered load.
    pub profile: Profile,
    /// A network outage, if the scenario has one.
    pub outage: Option<Outage>,
    /// Seconds between keep-alives.
    pub keepalive_secs: f64,
    /// How long after the profile ends the watches wait for outstanding answers.
    pub grace: Duration,
    /// Every acknowledged frame.
    pub samples: Mutex<Vec<Sample>>,
    /// Live counters.
    pub counters: Counters,
    /// Positions of the fixes of wearers who walked out, by [`position_key`]: their scheduled
    /// send time, to time a push naming that position.
    pub exit_fixes: Mutex<HashMap<String, Instant>>,
}

/// What one watch did, for the check against the database.
#[derive(Debug, Clone, Default)]
pub struct WatchOutcome {
    /// Distinct fixes taken (each has its own time).
    pub generated: u64,
    /// Distinct fixes acknowledged.
    pub acked: u64,
    /// Fixes still in the watch's buffer when the run ended (never sent or never answered).
    pub unsent: u64,
}

/// The key a position is matched by: lat, lon to six decimals, as the frames write them.
pub fn position_key(lat: f64, lon: f64) -> String {
    format!("{lat:.6},{lon:.6}")
}

/// A position frame (`UD` or `UD2`) with a GPS fix at `time` (the watch clock runs on UTC).
pub fn position_frame(id: &str, kind: &str, time: DateTime<Utc>, lat: f64, lon: f64, battery: u8) -> Vec<u8> {
    let content = format!(
        "{kind},{},{},A,{lat:.6},N,{lon:.6},E,3.60,90.0,40.0,9,100,{battery},1200,0,00000000,0,0",
        time.format("%d%m%y"),
        time.format("%H%M%S"),
    );
    encode(id, &content)
}

/// A keep-alive with step count, rolls and battery.
pub fn keepalive_frame(id: &str, battery: u8) -> Vec<u8> {
    encode(id, &format!("LK,1200,0,{battery}"))
}

/// The voice-message query whose echo acknowledges the position before it.
pub fn ack_probe_frame(id: &str) -> Vec<u8> {
    encode(id, "TKQ")
}

fn encode(id: &str, content: &str) -> Vec<u8> {
    Frame::new(MAKER, id, None, content.as_bytes())
        .and_then(|f| f.encode())
        .expect("simulated watch ids and contents are valid frame fields")
}

/// A fix the watch has taken and not yet had acknowledged.
#[derive(Debug, Clone, Copy)]
struct TakenFix {
    scheduled: Instant,
    time: DateTime<Utc>,
    lat: f64,
    lon: f64,
    buffered: bool,
}

/// A frame written and waiting for its reply.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    Fix(TakenFix),
    KeepAlive(Instant),
}

/// Why a connected session ended.
enum SessionEnd {
    Outage,
    Done,
    Broken,
}

/// One watch's state across its connections.
struct Watch<'a> {
    fleet: &'a Fleet,
    spec: WatchSpec,
    source: IpAddr,
    rng: Rng,
    /// Offset from home, metres east and north.
    at: (f64, f64),
    next_fix: Instant,
    next_keepalive: Instant,
    last_time: Option<DateTime<Utc>>,
    outbox: VecDeque<TakenFix>,
    outcome: WatchOutcome,
    end: Instant,
}

impl Fleet {
    fn secs_since_start(&self, at: Instant) -> f64 {
        if at >= self.start { (at - self.start).as_secs_f64() } else { -(self.start - at).as_secs_f64() }
    }

    fn record(&self, kind: Kind, scheduled: Instant, now: Instant) {
        let sample = Sample {
            kind,
            scheduled_ms: (self.secs_since_start(scheduled) * 1000.0).round() as i64,
            latency_us: now.saturating_duration_since(scheduled).as_micros() as u64,
        };
        self.samples.lock().expect("samples").push(sample);
    }

    /// Runs one watch: connects at `connect_at`, offers its share of the load until the profile
    /// ends, waits up to the grace period for answers, and says what it did.
    pub async fn run_watch(
        &self,
        index: usize,
        spec: WatchSpec,
        connect_at: Instant,
        seed: u64,
    ) -> WatchOutcome {
        let watches = self.watches.max(1) as f64;
        let mut rng = Rng::new(seed);
        let first_interval = watches / self.profile.phases.first().map_or(1.0, |p| p.rate.max(1e-3));
        let source = self.sources[index % self.sources.len()];
        let mut watch = Watch {
            fleet: self,
            spec,
            source,
            at: (rng.range(-20.0, 20.0), rng.range(-20.0, 20.0)),
            next_fix: self.start + Duration::from_secs_f64(rng.unit() * first_interval),
            next_keepalive: connect_at + Duration::from_secs_f64(rng.unit() * self.keepalive_secs),
            rng,
            last_time: None,
            outbox: VecDeque::new(),
            outcome: WatchOutcome::default(),
            end: self.start + Duration::from_secs_f64(self.profile.secs()),
        };
        watch.run(connect_at).await;
        watch.outcome.unsent = watch.outbox.len() as u64;
        watch.outcome
    }
}

impl Watch<'_> {
    async fn run(&mut self, connect_at: Instant) {
        let fleet = self.fleet;
        let hard_end = self.end + fleet.grace;
        let mut reconnect_at = connect_at;
        let mut outage_done = false;
        loop {
            self.offline_until(reconnect_at).await;
            if Instant::now() >= self.end && self.outbox.is_empty() {
                return;
            }
            if Instant::now() >= hard_end {
                return;
            }
            let stream = match self.connect().await {
                Some(s) => s,
                None => {
                    reconnect_at = Instant::now() + Duration::from_secs(1);
                    continue;
                }
            };
            fleet.counters.open.fetch_add(1, Ordering::Relaxed);
            let outage_at = match (fleet.outage, outage_done) {
                (Some(o), false) => Some(fleet.start + Duration::from_secs_f64(o.at_secs)),
                _ => None,
            };
            let end = self.session(stream, outage_at).await;
            fleet.counters.open.fetch_sub(1, Ordering::Relaxed);
            match end {
                SessionEnd::Done => return,
                SessionEnd::Outage => {
                    outage_done = true;
                    let o = fleet.outage.expect("an outage ended the session");
                    let back = o.at_secs + o.secs + self.rng.unit() * o.reconnect_within_secs;
                    reconnect_at = fleet.start + Duration::from_secs_f64(back);
                }
                SessionEnd::Broken => {
                    fleet.counters.broken.fetch_add(1, Ordering::Relaxed);
                    reconnect_at = Instant::now() + Duration::from_millis(500 + self.rng.int(0, 1500) as u64);
                }
            }
        }
    }

    /// Takes fixes into the buffer until `until`.
    async fn offline_until(&mut self, until: Instant) {
        while Instant::now() < until {
            let wake = self.next_fix.min(until);
            tokio::time::sleep_until(wake).await;
            self.take_due_fixes(true);
        }
    }

    async fn connect(&self) -> Option<TcpStream> {
        let fleet = self.fleet;
        let attempt = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(self.source, 0))?;
            socket.connect(fleet.server).await
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                fleet.counters.connects.fetch_add(1, Ordering::Relaxed);
                Some(stream)
            }
            _ => {
                fleet.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Takes every fix whose time has come; `offline` marks them buffered.
    fn take_due_fixes(&mut self, offline: bool) {
        let fleet = self.fleet;
        let now = Instant::now();
        while self.next_fix <= now && self.next_fix < self.end {
            let scheduled = self.next_fix;
            let t = fleet.secs_since_start(scheduled);
            let leaving = self.spec.leaves_at_secs.is_some_and(|l| t >= l);
            if leaving {
                self.at.1 += LEAVE_STEP_M;
            } else {
                let step = |rng: &mut Rng, v: f64| (v + rng.normal() * 3.0).clamp(-WANDER_M, WANDER_M);
                self.at = (step(&mut self.rng, self.at.0), step(&mut self.rng, self.at.1));
            }
            let c = offset(self.spec.home, self.at.0, self.at.1);
            // Six decimals, as the frame writes them, so the stored fix and the key agree.
            let (lat, lon) = ((c.y * 1e6).round() / 1e6, (c.x * 1e6).round() / 1e6);
            // Whole seconds on the watch clock, strictly increasing: every fix is a new row.
            let wall = fleet.start_wall + TimeDelta::milliseconds((t * 1000.0) as i64);
            let wall = DateTime::from_timestamp(wall.timestamp(), 0).expect("a valid time");
            let time = match self.last_time {
                Some(last) if wall <= last => last + TimeDelta::seconds(1),
                _ => wall,
            };
            self.last_time = Some(time);
            if leaving {
                fleet.exit_fixes.lock().expect("exit fixes").insert(position_key(lat, lon), scheduled);
            }
            self.outbox.push_back(TakenFix { scheduled, time, lat, lon, buffered: offline });
            self.outcome.generated += 1;
            fleet.counters.generated.fetch_add(1, Ordering::Relaxed);
            let next = fleet.profile.next_send(t, fleet.watches as f64, self.rng.unit());
            self.next_fix = scheduled + Duration::from_secs_f64(next - t);
        }
    }

    /// One connection: a keep-alive first, then the buffer, then live fixes and keep-alives on
    /// schedule, until the outage, the end (after the answers are in) or a failure.
    async fn session(&mut self, mut stream: TcpStream, outage_at: Option<Instant>) -> SessionEnd {
        let fleet = self.fleet;
        let waiting: Mutex<VecDeque<Waiting>> = Mutex::new(VecDeque::new());
        let (mut rd, mut wr) = stream.split();
        let id = self.spec.id.clone();
        let acked = AtomicU64::new(0);
        let reader = async {
            let mut buf = BytesMut::with_capacity(256);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(d)) = decode_frame(&buf, 4096) {
                    let _ = buf.split_to(d.consumed);
                    let now = Instant::now();
                    let kind = d.frame.kind();
                    if !matches!(kind.as_str(), "TKQ" | "LK") {
                        fleet.counters.server_commands.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let front = waiting.lock().expect("waiting").pop_front();
                    match (front, kind.as_str()) {
                        (Some(Waiting::Fix(f)), "TKQ") => {
                            fleet.record(
                                if f.buffered { Kind::Buffered } else { Kind::Live },
                                f.scheduled,
                                now,
                            );
                            fleet.counters.acked.fetch_add(1, Ordering::Relaxed);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        (Some(Waiting::KeepAlive(at)), "LK") => fleet.record(Kind::KeepAlive, at, now),
                        _ => {
                            fleet.counters.mismatched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        };
        let writer = async {
            let mut out = Vec::with_capacity(512);
            let keepalive = keepalive_frame(&id, 80);
            waiting.lock().expect("waiting").push_back(Waiting::KeepAlive(Instant::now()));
            if wr.write_all(&keepalive).await.is_err() {
                return SessionEnd::Broken;
            }
            loop {
                self.take_due_fixes(false);
                out.clear();
                while let Some(f) = self.outbox.pop_front() {
                    let buffered =
                        f.buffered || Instant::now().saturating_duration_since(f.scheduled) > BUFFERED_AFTER;
                    let kind = if buffered { "UD2" } else { "UD" };
                    out.extend(position_frame(&id, kind, f.time, f.lat, f.lon, 80));
                    out.extend(ack_probe_frame(&id));
                    waiting.lock().expect("waiting").push_back(Waiting::Fix(TakenFix { buffered, ..f }));
                    fleet.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    return SessionEnd::Broken;
                }
                let now = Instant::now();
                if outage_at.is_some_and(|o| now >= o) {
                    return SessionEnd::Outage;
                }
                if now >= self.end {
                    // Wait for the outstanding answers, within the grace period.
                    let limit = self.end + fleet.grace;
                    while !waiting.lock().expect("waiting").is_empty() && Instant::now() < limit {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    return SessionEnd::Done;
                }
                if now >= self.next_keepalive {
                    self.next_keepalive = now + Duration::from_secs_f64(fleet.keepalive_secs);
                    waiting.lock().expect("waiting").push_back(Waiting::KeepAlive(now));
                    if wr.write_all(&keepalive).await.is_err() {
                        return SessionEnd::Broken;
                    }
                }
                let mut wake = self.next_fix.min(self.next_keepalive).min(self.end);
                if let Some(o) = outage_at {
                    wake = wake.min(o);
                }
                tokio::time::sleep_until(wake).await;
            }
        };
        let end = tokio::select! {
            end = writer => end,
            () = reader => SessionEnd::Broken,
        };
        // What was written but never answered is sent again on the next connection, first.
        let unanswered: Vec<TakenFix> = waiting
            .into_inner()
            .expect("waiting")
            .into_iter()
            .filter_map(|w| match w {
                Waiting::Fix(f) => Some(TakenFix { buffered: true, ..f }),
                Waiting::KeepAlive(_) => None,
            })
            .collect();
        if !matches!(end, SessionEnd::Done) {
            fleet.counters.resent.fetch_add(unanswered.len() as u64, Ordering::Relaxed);
        }
        for f in unanswered.into_iter().rev() {
            self.outbox.push_front(f);
        }
        self.outcome.acked += acked.load(Ordering::Relaxed);
        drop(stream);
        end
    }
}

#[cfg(test)]
mod tests {
    use trygg_protocols::watch::{Message, reply_for};

    use super::*;

    #[test]
    fn position_frames_decode_to_the_fix_that_was_taken() {
        let time = DateTime::parse_from_rfc3339("2026-12-02T10:15:07Z").unwrap().with_timezone(&Utc);
        let bytes = position_frame("7000000042", "UD2", time, 58.390312, 13.846271, 77);
        let d = decode_frame(&bytes, 4096).unwrap().unwrap();
        assert_eq!((d.consumed, d.frame.length_mismatch), (bytes.len(), false));
        let Message::Position { kind, record } = d.frame.message() else { panic!("not a position") };
        let p = record.unwrap().position;
        assert_eq!(kind, "UD2");
        assert_eq!(p.time, time.naive_utc());
        assert_eq!((p.lat, p.lon, p.battery_pct, p.valid), (58.390312, 13.846271, Some(77), true));
        // Positions get no reply: the probe after them is what is answered.
        assert_eq!(reply_for(&d.frame), None);
        let probe = decode_frame(&ack_probe_frame("7000000042"), 4096).unwrap().unwrap();
        assert_eq!(reply_for(&probe.frame).unwrap(), b"[3G*7000000042*0003*TKQ]");
    }

    #[test]
    fn the_profile_finds_the_phase_of_a_moment() {
        let phase = |secs, rate| Phase { name: String::new(), secs, rate };
        let p = Profile { phases: vec![phase(10.0, 100.0), phase(30.0, 200.0)] };
        assert_eq!((p.phase_at(0.0), p.phase_at(9.99), p.phase_at(10.0), p.phase_at(99.0)), (0, 0, 1, 1));
        assert_eq!((p.start_of(1), p.secs(), p.phases[p.phase_at(15.0)].rate), (10.0, 40.0, 200.0));
    }

    #[test]
    fn the_load_after_a_burst_is_even_second_by_second() {
        let phase = |secs, rate| Phase { name: String::new(), secs, rate };
        let p = Profile { phases: vec![phase(10.0, 500.0), phase(10.0, 1000.0), phase(10.0, 500.0)] };
        let watches = 1000.0;
        let mut rng = Rng::new(7);
        let mut per_second = [0u32; 30];
        for _ in 0..1000 {
            let mut t = rng.unit() * watches / 500.0;
            while t < p.secs() {
                per_second[t as usize] += 1;
                t = p.next_send(t, watches, rng.unit());
            }
        }
        for (s, &n) in per_second.iter().enumerate() {
            let want = p.phases[p.phase_at(s as f64)].rate;
            assert!(
                (n as f64 - want).abs() <= want * 0.15,
                "second {s}: {n} sends where {want} were offered"
            );
        }
    }
}
