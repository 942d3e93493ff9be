//! The exit policy: turning a stream of noisy fixes into few, timely zone alarms.
//!
//! Raw point-in-polygon flaps: a watch lying still on a windowsill near the zone edge reports
//! positions scattered 5–15 m around the truth, a GPS fix now and then lands hundreds of metres
//! off while claiming 10 m accuracy, and a cell-tower fix can be 2 km off. Each of these would
//! raise a false exit, and staff learn to ignore the alarm. The policy therefore decides per
//! (device, zone) on a confirmed *side* and raises an event only when the side changes:
//!
//! 1. **Coarse fixes are not evidence.** A cell-tower fix, or one whose reported accuracy is
//!    worse than [`Policy::max_accuracy_m`], neither starts, confirms nor cancels anything.
//! 2. **Implausible jumps are not evidence.** A fix further from the last accepted one than
//!    [`Policy::max_speed_mps`] allows is held back; if the next fix agrees with it, the wearer
//!    really moved and that next fix is accepted.
//! 3. **An exit needs [`Policy::confirm_fixes`] consecutive fixes on the alarm side, the last
//!    of them clear of the boundary by its accuracy plus [`Policy::margin_m`].** One wild fix
//!    is followed by a normal one and cancels; jitter near the edge is rarely clear by the
//!    margin twice in a row; a real exit is confirmed by the next report after the wearer left.
//! 4. **A return needs [`Policy::confirm_fixes`] consecutive fixes back on the safe side**
//!    (boundary included, no margin). The asymmetry is the hysteresis: once out, jitter at
//!    the edge does not produce exit/return/exit.
//!
//! Schedules only gate events, not tracking: the side is followed while a zone is inactive, so
//! a zone that becomes active while the wearer is outside raises the exit at once.
//!
//! The state is plain data with serde, so the alarm engine stores it and a restart continues
//! exactly where it stopped: an exit already raised is not raised again, a pending one is not
//! lost.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trygg_core::{DeviceId, Fix, FixSource};

use crate::index::ZoneIndex;
use crate::zone::{Zone, ZoneId, ZoneKind, haversine_m};

/// Tuning of the exit policy. These will become per-tenant settings; the defaults are chosen
/// for wrist-worn GPS watches reporting every 1–10 minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Extra distance beyond the fix's accuracy that an exit fix must be clear of the
    /// boundary. Default 25 m: with the accuracy added, a consumer GPS fix must be about three
    /// standard deviations outside, so a still watch at the edge almost never qualifies, while
    /// a walking wearer (≈1 m/s) covers it within one report interval of a minute.
    pub margin_m: f64,
    /// Floor on the reported accuracy. Default 10 m: watches report 3–5 m under open sky, but
    /// near buildings the real error is rarely below 10 m.
    pub min_accuracy_m: f64,
    /// Accuracy assumed when a fix reports none. Default 30 m, a typical urban GPS error.
    pub unknown_accuracy_m: f64,
    /// Fixes reporting a worse accuracy are coarse and ignored. Default 100 m: GPS and good
    /// WiFi fixes are better; cell-tower fixes (500–2,000 m) are worse than most zones are wide.
    pub max_accuracy_m: f64,
    /// Fastest plausible movement between fixes. Default 50 m/s (180 km/h): faster than any
    /// car a wearer rides in, so only position glitches exceed it.
    pub max_speed_mps: f64,
    /// Consecutive usable fixes needed to change side. Default 2: the fix that shows the
    /// change and the next report confirming it, which bounds the added delay to one report
    /// interval. 1 turns confirmation off.
    pub confirm_fixes: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            margin_m: 25.0,
            min_accuracy_m: 10.0,
            unknown_accuracy_m: 30.0,
            max_accuracy_m: 100.0,
            max_speed_mps: 50.0,
            confirm_fixes: 2,
        }
    }
}

/// What happened to a device in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The wearer left a `stay_inside` zone (an alarm).
    Exit,
    /// The wearer is back inside a `stay_inside` zone after an exit.
    Return,
    /// The wearer entered a `keep_out` zone (an alarm).
    Enter,
}

/// One event, stamped with the time of the fix that confirmed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The zone.
    pub zone: ZoneId,
    /// What happened.
    pub kind: EventKind,
    /// Time of the confirming fix.
    pub time: DateTime<Utc>,
}

/// Everything the policy remembers about one device. Persist it when it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Time of the latest fix seen; older or equal fixes are ignored.
    last_time: Option<DateTime<Utc>>,
    /// The latest accepted fix, for the speed check.
    anchor: Option<Sample>,
    /// A fix held back as an implausible jump.
    suspect: Option<Sample>,
    /// Per zone, by id.
    zones: BTreeMap<ZoneId, ZoneState>,
}

impl DeviceState {
    /// Time of the newest fix evaluated: the engine re-evaluates only later fixes after a restart.
    pub fn last_time(&self) -> Option<DateTime<Utc>> {
        self.last_time
    }

    /// Whether a zone alarm is suspected but not yet confirmed: some zone has usable fixes on
    /// its alarm side that have not (yet) changed its confirmed side. While this holds, the
    /// next report decides; battery-aware reporting asks the watch to send it sooner.
    pub fn awaits_confirmation(&self) -> bool {
        self.zones.values().any(|z| z.side != Side::Alarm && z.pending > 0)
    }

    /// Whether both states have decided the same: the same zones, each on the same confirmed
    /// side and with the same alarm raised. States that differ only in what replaying the
    /// fixes since would rebuild (the last fix, the speed anchor, counts toward a change of
    /// side) decide the same, so the engine need not store every fix's state.
    pub fn decides_as(&self, other: &Self) -> bool {
        self.zones.len() == other.zones.len()
            && self
                .zones
                .iter()
                .zip(&other.zones)
                .all(|((a, x), (b, y))| a == b && x.side == y.side && x.alarmed == y.alarmed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    time: DateTime<Utc>,
    lon: f64,
    lat: f64,
    accuracy_m: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ZoneState {
    side: Side,
    /// Consecutive usable fixes pointing to the other side.
    pending: u32,
    /// An exit or enter was raised and not yet ended by a return or the zone going inactive.
    alarmed: bool,
}

/// The confirmed side of a zone boundary the wearer is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Side {
    /// No usable fix yet.
    #[default]
    Unknown,
    /// Where the wearer should be: inside a stay_inside zone, outside a keep_out zone.
    Safe,
    /// Where an alarm is due.
    Alarm,
}

/// What one fix says about one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Safe,
    Alarm { clear: bool },
}

impl Policy {
    /// Runs one fix of `device` through the policy against the device's zones in `index`,
    /// updating `state`, and returns the events it confirms (usually none).
    ///
    /// ```
    /// use geo::Point;
    /// use trygg_core::{DeviceId, Fix};
    /// use trygg_geofence::{DeviceState, EventKind, Policy, Shape, Zone, ZoneId, ZoneIndex, ZoneKind};
    /// let d = DeviceId::parse("w1")?;
    /// let home = Shape::Circle { centre: Point::new(11.97, 57.70), radius_m: 100.0 };
    /// let index = ZoneIndex::build(vec![
    ///     Zone::new(ZoneId::new("home"), ZoneKind::StayInside, home)?.for_devices([d.clone()]),
    /// ])?;
    /// let fix = |min: u32, lat: f64| Fix {
    ///     accuracy_m: Some(10.0),
    ///     ..Fix::gps(format!("2026-05-04T10:{min:02}:00Z").parse().unwrap(), lat, 11.97)
    /// };
    /// let (policy, mut state) = (Policy::default(), DeviceState::default());
    /// assert!(policy.evaluate(&index, &d, &mut state, &fix(0, 57.700)).is_empty()); // home
    /// assert!(policy.evaluate(&index, &d, &mut state, &fix(1, 57.702)).is_empty()); // 220 m: pending
    /// let events = policy.evaluate(&index, &d, &mut state, &fix(2, 57.703)); // confirmed
    /// assert_eq!(events[0].kind, EventKind::Exit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evaluate(
        &self,
        index: &ZoneIndex,
        device: &DeviceId,
        state: &mut DeviceState,
        fix: &Fix,
    ) -> Vec<Event> {
        if state.last_time.is_some_and(|t| fix.time <= t) {
            return Vec::new();
        }
        state.last_time = Some(fix.time);
        let Some(accuracy_m) = self.usable_accuracy_m(fix) else {
            return Vec::new();
        };
        let sample = Sample { time: fix.time, lon: fix.lon, lat: fix.lat, accuracy_m };
        if !self.accept_move(state, sample) {
            return Vec::new();
        }
        let zones: Vec<&Zone> = index.zones_for(device).collect();
        // A zone removed or unassigned since the last fix leaves no state behind.
        state.zones.retain(|id, _| zones.iter().any(|z| z.id() == id));
        let mut events = Vec::new();
        for zone in zones {
            let zs = state.zones.entry(zone.id().clone()).or_default();
            zs.update(self.read(zone, fix, accuracy_m), self.confirm_fixes);
            let active = zone.schedule().is_none_or(|s| s.is_active(fix.time));
            if let Some(kind) = zs.event(zone.kind(), active) {
                events.push(Event { zone: zone.id().clone(), kind, time: fix.time });
            }
        }
        events
    }

    /// The accuracy to reckon with, or `None` for a coarse fix that must not decide anything.
    fn usable_accuracy_m(&self, fix: &Fix) -> Option<f64> {
        let accuracy = fix.accuracy_m.unwrap_or(self.unknown_accuracy_m);
        (fix.source != FixSource::Cell && accuracy <= self.max_accuracy_m)
            .then(|| accuracy.max(self.min_accuracy_m))
    }

    /// Applies the speed check and remembers the fix as the new anchor if it passes.
    fn accept_move(&self, state: &mut DeviceState, sample: Sample) -> bool {
        let reachable = |from: &Sample| {
            let secs = (sample.time - from.time).num_milliseconds() as f64 / 1000.0;
            let dist = haversine_m((from.lon, from.lat).into(), (sample.lon, sample.lat).into());
            dist <= self.max_speed_mps * secs + from.accuracy_m + sample.accuracy_m
        };
        // A fix that agrees with a held-back jump shows the jump was real.
        let accepted =
            state.anchor.as_ref().is_none_or(reachable) || state.suspect.as_ref().is_some_and(reachable);
        if accepted {
            state.anchor = Some(sample);
            state.suspect = None;
        } else {
            state.suspect = Some(sample);
        }
        accepted
    }

    fn read(&self, zone: &Zone, fix: &Fix, accuracy_m: f64) -> Reading {
        let inside = zone.contains(fix.lon, fix.lat);
        if inside == (zone.kind() == ZoneKind::StayInside) {
            return Reading::Safe;
        }
        let needed = accuracy_m + self.margin_m;
        let clear = zone.boundary_distance_m(fix.lon, fix.lat, needed) >= needed;
        Reading::Alarm { clear }
    }
}

impl ZoneState {
    fn update(&mut self, reading: Reading, confirm_fixes: u32) {
        match (self.side, reading) {
            (Side::Unknown, Reading::Safe) => self.settle(Side::Safe),
            (Side::Safe, Reading::Safe) | (Side::Alarm, Reading::Alarm { .. }) => self.pending = 0,
            (Side::Unknown | Side::Safe, Reading::Alarm { clear }) => {
                self.pending += 1;
                if clear && self.pending >= confirm_fixes {
                    self.settle(Side::Alarm);
                }
            }
            (Side::Alarm, Reading::Safe) => {
                self.pending += 1;
                if self.pending >= confirm_fixes {
                    self.settle(Side::Safe);
                }
            }
        }
    }

    fn settle(&mut self, side: Side) {
        self.side = side;
        self.pending = 0;
    }

    fn event(&mut self, kind: ZoneKind, active: bool) -> Option<EventKind> {
        if !active {
            // Outside its schedule a zone raises nothing, and an alarm it raised is over; if
            // the wearer is still out when it becomes active again, that is a new exit.
            self.alarmed = false;
            return None;
        }
        match (self.side, self.alarmed) {
            (Side::Alarm, false) => {
                self.alarmed = true;
                Some(match kind {
                    ZoneKind::StayInside => EventKind::Exit,
                    ZoneKind::KeepOut => EventKind::Enter,
                })
            }
            (Side::Safe, true) => {
                self.alarmed = false;
                (kind == ZoneKind::StayInside).then_some(EventKind::Return)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use geo::Point;

    use super::*;
    use crate::schedule::{Schedule, Window};
    use crate::zone::Shape;

    const LON: f64 = 11.97;
    const LAT: f64 = 57.70;
    /// Metres per degree of latitude.
    const M: f64 = 111_195.08;

    fn device() -> DeviceId {
        DeviceId::parse("w1").unwrap()
    }

    /// A 200 m stay_inside circle around (LON, LAT) for device w1.
    fn index_with(kind: ZoneKind, schedule: Option<Schedule>) -> ZoneIndex {
        let shape = Shape::Circle { centre: Point::new(LON, LAT), radius_m: 200.0 };
        let mut zone = Zone::new(ZoneId::new("home"), kind, shape).unwrap().for_devices([device()]);
        if let Some(s) = schedule {
            zone = zone.with_schedule(s);
        }
        ZoneIndex::build(vec![zone]).unwrap()
    }

    /// A GPS fix `north_m` metres north of the centre, `min` minutes after 10:00 UTC.
    fn fix(min: i64, north_m: f64, accuracy_m: f64) -> Fix {
        let time = Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 0).unwrap() + Duration::minutes(min);
        Fix { accuracy_m: Some(accuracy_m), ..Fix::gps(time, LAT + north_m / M, LON) }
    }

    struct Run {
        index: ZoneIndex,
        policy: Policy,
        state: DeviceState,
    }

    impl Run {
        fn new(kind: ZoneKind) -> Self {
            Self { index: index_with(kind, None), policy: Policy::default(), state: DeviceState::default() }
        }

        fn feed(&mut self, fixes: impl IntoIterator<Item = Fix>) -> Vec<(i64, EventKind)> {
            let t0 = Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 0).unwrap();
            fixes
                .into_iter()
                .flat_map(|f| self.policy.evaluate(&self.index, &device(), &mut self.state, &f))
                .map(|e| ((e.time - t0).num_minutes(), e.kind))
                .collect()
        }
    }

    #[test]
    fn jitter_across_the_edge_raises_no_exit() {
        let mut run = Run::new(ZoneKind::StayInside);
        // A still watch 5 m inside the edge, reported up to 20 m out with 15 m accuracy.
        let offsets = [195.0, 210.0, 220.0, 190.0, 215.0, 205.0, 185.0, 219.0, 221.0, 200.0];
        let events = run.feed(offsets.iter().enumerate().map(|(i, &n)| fix(i as i64, n, 15.0)));
        assert_eq!(events, []);
    }

    #[test]
    fn single_wild_fix_with_good_accuracy_raises_no_exit() {
        let mut run = Run::new(ZoneKind::StayInside);
        let events = run.feed([fix(0, 0.0, 8.0), fix(1, 600.0, 8.0), fix(2, 5.0, 8.0), fix(3, 0.0, 8.0)]);
        assert_eq!(events, []);
    }

    #[test]
    fn coarse_cell_fixes_raise_no_exit_even_far_outside() {
        let mut run = Run::new(ZoneKind::StayInside);
        let cell = |min, north, acc| Fix { source: FixSource::Cell, ..fix(min, north, acc) };
        let events =
            run.feed([fix(0, 0.0, 8.0), cell(1, 1500.0, 1000.0), cell(2, 1800.0, 50.0), fix(3, 0.0, 8.0)]);
        assert_eq!(events, []);
        // An unknown-source fix with cell-like accuracy is just as coarse.
        let events = run.feed([fix(4, 1200.0, 800.0), fix(5, 1300.0, 900.0)]);
        assert_eq!(events, []);
    }

    #[test]
    fn real_exit_is_confirmed_by_the_next_report() {
        let mut run = Run::new(ZoneKind::StayInside);
        let walk = [
            fix(0, 100.0, 10.0),
            fix(1, 160.0, 10.0),
            fix(2, 220.0, 10.0),
            fix(3, 280.0, 10.0),
            fix(4, 340.0, 10.0),
        ];
        // 220 m is out (pending), 280 m is out by more than accuracy + margin: confirmed.
        assert_eq!(run.feed(walk), [(3, EventKind::Exit)]);
        // Staying out raises nothing more.
        assert_eq!(run.feed([fix(5, 400.0, 10.0), fix(6, 420.0, 10.0)]), []);
    }

    #[test]
    fn a_suspected_exit_awaits_confirmation_until_it_is_confirmed_or_cleared() {
        let mut run = Run::new(ZoneKind::StayInside);
        run.feed([fix(0, 100.0, 10.0)]);
        assert!(!run.state.awaits_confirmation(), "inside");
        run.feed([fix(1, 240.0, 10.0)]);
        assert!(run.state.awaits_confirmation(), "first fix outside");
        assert_eq!(run.feed([fix(2, 300.0, 10.0)]), [(2, EventKind::Exit)]);
        assert!(!run.state.awaits_confirmation(), "confirmed");
        // Back in, a wild fix out, then in again: suspected, then cleared.
        run.feed([fix(3, 0.0, 10.0), fix(4, 0.0, 10.0)]);
        run.feed([fix(5, 240.0, 10.0)]);
        assert!(run.state.awaits_confirmation());
        run.feed([fix(6, 10.0, 10.0)]);
        assert!(!run.state.awaits_confirmation(), "cleared");
    }

    #[test]
    fn return_is_reported_after_two_fixes_back_inside() {
        let mut run = Run::new(ZoneKind::StayInside);
        run.feed([fix(0, 0.0, 10.0), fix(1, 300.0, 10.0), fix(2, 320.0, 10.0)]);
        let back = [fix(3, 180.0, 10.0), fix(4, 100.0, 10.0), fix(5, 50.0, 10.0)];
        assert_eq!(run.feed(back), [(4, EventKind::Return)]);
    }

    #[test]
    fn wild_fix_inside_after_an_exit_raises_no_return() {
        let mut run = Run::new(ZoneKind::StayInside);
        run.feed([fix(0, 0.0, 10.0), fix(1, 500.0, 10.0), fix(2, 520.0, 10.0)]);
        assert_eq!(run.feed([fix(3, 0.0, 10.0), fix(4, 530.0, 10.0), fix(5, 540.0, 10.0)]), []);
    }

    #[test]
    fn wearer_lingering_just_outside_is_reported_once_a_fix_is_clear_of_the_margin() {
        let mut run = Run::new(ZoneKind::StayInside);
        let events =
            run.feed([fix(0, 0.0, 10.0), fix(1, 215.0, 10.0), fix(2, 220.0, 10.0), fix(3, 238.0, 10.0)]);
        assert_eq!(events, [(3, EventKind::Exit)]);
    }

    #[test]
    fn implausible_jump_is_held_back_until_the_next_fix_agrees() {
        let mut run = Run::new(ZoneKind::StayInside);
        // 10 km in 10 s is 1,000 m/s: a glitch, ignored; back home next.
        let mut f = fix(1, 10_000.0, 10.0);
        f.time = fix(0, 0.0, 10.0).time + Duration::seconds(10);
        assert_eq!(run.feed([fix(0, 0.0, 10.0), f.clone(), fix(1, 0.0, 10.0)]), []);
        // Now a real train ride: two fixes agreeing with each other, the first one held back.
        let events = run.feed([fix(2, 5_000.0, 10.0), fix(3, 6_000.0, 10.0), fix(4, 7_000.0, 10.0)]);
        assert_eq!(events, [(4, EventKind::Exit)]);
    }

    #[test]
    fn entering_a_keep_out_zone_raises_enter_and_leaving_it_is_silent() {
        let mut run = Run::new(ZoneKind::KeepOut);
        let events = run.feed([
            fix(0, 400.0, 10.0),
            fix(1, 150.0, 10.0),
            fix(2, 100.0, 10.0),
            fix(3, 400.0, 10.0),
            fix(4, 420.0, 10.0),
        ]);
        assert_eq!(events, [(2, EventKind::Enter)]);
        assert_eq!(run.feed([fix(5, 100.0, 10.0), fix(6, 90.0, 10.0)]), [(6, EventKind::Enter)]);
    }

    #[test]
    fn zone_becoming_active_while_the_wearer_is_outside_raises_an_exit() {
        // Active from 12:30 local (10:30 UTC in May).
        let days = vec![chrono::Weekday::Mon];
        let schedule = Schedule {
            tz: chrono_tz::Europe::Stockholm,
            windows: vec![Window { days, from: "12:30".parse().unwrap(), to: "18:00".parse().unwrap() }],
        };
        let mut run = Run::new(ZoneKind::StayInside);
        run.index = index_with(ZoneKind::StayInside, Some(schedule));
        let out = (0..35).map(|m| fix(m, 500.0, 10.0));
        assert_eq!(run.feed(out), [(30, EventKind::Exit)]);
    }

    #[test]
    fn state_restored_after_a_restart_neither_repeats_nor_loses_an_exit() {
        let mut run = Run::new(ZoneKind::StayInside);
        assert_eq!(
            run.feed([fix(0, 0.0, 10.0), fix(1, 300.0, 10.0), fix(2, 350.0, 10.0)]),
            [(2, EventKind::Exit)]
        );
        let saved = serde_json::to_string(&run.state).unwrap();
        run.state = serde_json::from_str(&saved).unwrap();
        assert_eq!(run.feed([fix(3, 360.0, 10.0)]), [], "no second exit after restart");

        let mut pending = Run::new(ZoneKind::StayInside);
        pending.feed([fix(0, 0.0, 10.0), fix(1, 300.0, 10.0)]);
        pending.state = serde_json::from_str(&serde_json::to_string(&pending.state).unwrap()).unwrap();
        assert_eq!(pending.feed([fix(2, 350.0, 10.0)]), [(2, EventKind::Exit)], "pending exit survives");
    }

    #[test]
    fn fixes_out_of_order_or_repeated_are_ignored() {
        let mut run = Run::new(ZoneKind::StayInside);
        run.feed([fix(0, 0.0, 10.0), fix(5, 300.0, 10.0)]);
        assert_eq!(run.feed([fix(3, 400.0, 10.0), fix(5, 300.0, 10.0)]), []);
        assert_eq!(run.feed([fix(6, 320.0, 10.0)]), [(6, EventKind::Exit)]);
    }

    #[test]
    fn state_of_a_zone_no_longer_assigned_is_dropped() {
        let mut run = Run::new(ZoneKind::StayInside);
        run.feed([fix(0, 0.0, 10.0)]);
        assert_eq!(run.state.zones.len(), 1);
        run.index = ZoneIndex::empty();
        run.feed([fix(1, 0.0, 10.0)]);
        assert!(run.state.zones.is_empty());
    }
}
