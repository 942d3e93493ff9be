//! M5: zone exits under GPS jitter, wild fixes and cell-tower fixes, with ground truth.
//!
//! Each simulated device wears a watch for a day around its home zone (a stay_inside circle or
//! polygon): it sits still near the edge (inside), sits deeper inside, and now and then walks
//! out 150–600 m, stays out 10–40 minutes and walks back. Fixes come at a fixed report interval
//! per device and carry Gaussian noise (σ 5–15 m, accuracy reported as 1.5 σ); 1 % are wild
//! (100–700 m off while claiming 5–15 m), 3 % are cell-tower fixes (500–2,000 m off, half marked
//! `cell`, half `unknown` with a coarse accuracy). Both detectors see the same fixes:
//!
//! - naive: an exit whenever a fix is outside and the previous one was inside (as Tile38 and
//!   Traccar do), and
//! - policy: trygg's [`Policy`] with default settings.
//!
//! A real exit is a stretch of fixes whose true position is outside. A detector's first exit
//! from two intervals before its start until its end detects it; every other exit is spurious.
//! Delay is measured two ways: from the first fix whose true position is outside, and (the
//! added delay) from the first fix after the crossing that lies outside, which is when
//! point-in-polygon first sees the exit.
//!
//! **Battery-aware reporting.** The same days are also reported at a normal interval of 120,
//! 300 and 600 s, once at that fixed interval and once with trygg's battery-aware reporting
//! ([`reporting_change`]): from the first fix outside, not yet confirmed, the watch reports
//! every 30 s until the exit is confirmed or cleared (at most 10 minutes). For each: the time
//! from the true crossing to the confirmed exit and the reports per device-day (what drains the
//! battery). The watch is taken to apply `UPLOAD` at once (it arrives on its open connection
//! right after the report that triggered it).
//!
//! Usage: `jitter-sim --devices 300 --seed 7 --out m5.json`

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, TimeZone, Utc};
use geo::{Coord, Point};
use serde_json::json;
use trygg_alarms::supervision::{Reporting, Tell, reporting_change};
use trygg_core::{DeviceId, Fix, FixSource};
use trygg_geofence::{DeviceState, EventKind, Policy, Shape, Zone, ZoneId, ZoneIndex, ZoneKind};
use trygg_loadtest::{Rng, offset, star_polygon, town_point};

const DAY_S: f64 = 86_400.0;
const INTERVALS_S: [f64; 4] = [60.0, 60.0, 120.0, 300.0];
/// Normal intervals compared with and without battery-aware reporting.
const NORMAL_INTERVALS_S: [f64; 3] = [120.0, 300.0, 600.0];
/// The fast interval while an exit is suspected (the tenant default).
const FAST_INTERVAL_S: f64 = 30.0;

/// One straight leg of the true track, at constant speed (or still when `from == to`).
struct Leg {
    start_s: f64,
    end_s: f64,
    from: Coord,
    to: Coord,
}

/// Where the wearer is at `t`, given legs in time order.
fn truth_at(legs: &[Leg], t: f64) -> Coord {
    let leg = legs.iter().find(|l| t < l.end_s).unwrap_or(&legs[legs.len() - 1]);
    let f = ((t - leg.start_s) / (leg.end_s - leg.start_s)).clamp(0.0, 1.0);
    Coord { x: leg.from.x + f * (leg.to.x - leg.from.x), y: leg.from.y + f * (leg.to.y - leg.from.y) }
}

fn metres(a: Coord, b: Coord) -> f64 {
    let kx = trygg_loadtest::M_PER_DEG * a.y.to_radians().cos();
    ((b.x - a.x) * kx).hypot((b.y - a.y) * trygg_loadtest::M_PER_DEG)
}

/// The point `d` metres from `centre` along bearing `a` (radians from east).
fn along(centre: Coord, a: f64, d: f64) -> Coord {
    offset(centre, d * a.cos(), d * a.sin())
}

/// Distance from the centre to the zone edge along bearing `a`, by bisection. Zones here are
/// star-shaped around their centre, so the ray crosses the edge once.
fn edge_distance(zone: &Zone, centre: Coord, a: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 5_000.0);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        let p = along(centre, a, mid);
        if zone.contains(p.x, p.y) { lo = mid } else { hi = mid }
    }
    lo
}

/// A day of true movement (a little more: the last segment is finished), as legs.
fn day_track(rng: &mut Rng, zone: &Zone, centre: Coord) -> Vec<Leg> {
    let mut legs = Vec::new();
    let (mut t, mut at) = (0.0, centre);
    let speed = rng.range(0.8, 1.4);
    let go = |legs: &mut Vec<Leg>, t: &mut f64, at: &mut Coord, to: Coord, still_s: f64| {
        let walk_s = metres(*at, to) / speed;
        legs.push(Leg { start_s: *t, end_s: *t + walk_s.max(1.0), from: *at, to });
        *t += walk_s.max(1.0);
        legs.push(Leg { start_s: *t, end_s: *t + still_s, from: to, to });
        *t += still_s;
        *at = to;
    };
    while t < DAY_S {
        let a = rng.range(0.0, std::f64::consts::TAU);
        let edge = edge_distance(zone, centre, a);
        let roll = rng.unit();
        // Moves between places go through the centre, so they never leave the zone by accident.
        go(&mut legs, &mut t, &mut at, centre, 0.0);
        if roll < 0.45 {
            let inset = rng.range(1.0, 30.0).min(edge / 2.0);
            go(&mut legs, &mut t, &mut at, along(centre, a, edge - inset), rng.range(1_800.0, 10_800.0));
        } else if roll < 0.75 {
            go(
                &mut legs,
                &mut t,
                &mut at,
                along(centre, a, edge * rng.range(0.0, 0.5)),
                rng.range(1_800.0, 10_800.0),
            );
        } else {
            let out = along(centre, a, edge + rng.range(150.0, 600.0));
            go(&mut legs, &mut t, &mut at, out, rng.range(600.0, 2_400.0));
            // Home again for a while before anything else.
            go(&mut legs, &mut t, &mut at, centre, rng.range(600.0, 1_800.0));
        }
    }
    legs
}

fn observe(rng: &mut Rng, truth: Coord, time: DateTime<Utc>) -> Fix {
    let roll = rng.unit();
    let bearing = rng.range(0.0, std::f64::consts::TAU);
    let (pos, accuracy_m, source) = if roll < 0.01 {
        (along(truth, bearing, rng.range(100.0, 700.0)), rng.range(5.0, 15.0), FixSource::Gps)
    } else if roll < 0.04 {
        let off = rng.range(500.0, 2_000.0);
        let source = if rng.chance(0.5) { FixSource::Cell } else { FixSource::Unknown };
        (along(truth, bearing, off), off * rng.range(0.8, 1.5), source)
    } else {
        let sigma = rng.range(5.0, 15.0);
        (offset(truth, rng.normal() * sigma, rng.normal() * sigma), 1.5 * sigma, FixSource::Gps)
    };
    Fix {
        time,
        lat: pos.y,
        lon: pos.x,
        accuracy_m: Some(accuracy_m.round()),
        speed_mps: None,
        course_deg: None,
        altitude_m: None,
        battery_pct: None,
        source,
    }
}

#[derive(Default)]
struct Score {
    spurious: u64,
    detected: u64,
    missed: u64,
    /// Per detected real exit: detection time minus the first truly-outside fix, in intervals.
    delays: Vec<f64>,
    /// Per detected real exit: detection time minus the first fix after the true crossing that
    /// lies outside the zone (where point-in-polygon first sees the exit), in intervals.
    added: Vec<f64>,
}

/// Matches exit times against real exits `(start, end)`; returns the first detection per exit.
fn score_exits(score: &mut Score, exits: &[f64], real: &[(f64, f64)], interval: f64) -> Vec<Option<f64>> {
    let mut used = vec![false; exits.len()];
    let firsts = real
        .iter()
        .map(|&(start, end)| {
            let hit = exits.iter().position(|&t| t >= start - 2.0 * interval && t < end);
            if let Some(i) = hit {
                used[i] = true;
                score.detected += 1;
                score.delays.push(((exits[i] - start) / interval).max(0.0));
            } else {
                score.missed += 1;
            }
            hit.map(|i| exits[i])
        })
        .collect();
    score.spurious += used.iter().filter(|u| !**u).count() as u64;
    firsts
}

/// The true exits of a track, `(crossing, return)` in seconds, on a 5 s grid.
fn true_exits(legs: &[Leg], zone: &Zone, end_s: f64) -> Vec<(f64, f64)> {
    let (mut out, mut since, mut t) = (Vec::new(), None, 0.0);
    while t < end_s {
        let p = truth_at(legs, t);
        match (zone.contains(p.x, p.y), since) {
            (false, None) => since = Some(t),
            (true, Some(s)) => {
                out.push((s, t));
                since = None;
            }
            _ => {}
        }
        t += 5.0;
    }
    out
}

/// One device-day reported at `normal_s`, with battery-aware reporting or not: the times of
/// the confirmed exits and the number of reports.
#[allow(clippy::too_many_arguments)]
fn reported_day(
    rng: &mut Rng,
    policy: &Policy,
    index: &ZoneIndex,
    device: &DeviceId,
    legs: &[Leg],
    t0: DateTime<Utc>,
    normal_s: f64,
    battery_aware: bool,
) -> (Vec<f64>, u64) {
    let end_s = legs.last().map_or(DAY_S, |l| l.end_s);
    let (mut state, mut told, mut interval) = (DeviceState::default(), None::<Reporting>, normal_s);
    let (mut exits, mut reports, mut t) = (Vec::new(), 0, 0.0);
    while t < end_s {
        let time = t0 + Duration::milliseconds((t * 1000.0) as i64);
        let fix = observe(rng, truth_at(legs, t), time);
        reports += 1;
        for e in policy.evaluate(index, device, &mut state, &fix) {
            if e.kind == EventKind::Exit {
                exits.push(t);
            }
        }
        if battery_aware && let Some((next, tell)) = reporting_change(told, state.awaits_confirmation(), time)
        {
            told = next;
            interval = match tell {
                Tell::Fast => FAST_INTERVAL_S,
                Tell::Normal => normal_s,
                Tell::Nothing => interval,
            };
        }
        t += interval;
    }
    (exits, reports)
}

/// Totals of one reporting scheme over all device-days.
#[derive(Default)]
struct Reported {
    reports: u64,
    spurious: u64,
    missed: u64,
    /// Seconds from the true crossing to the confirmed exit, per detected real exit.
    delays_s: Vec<f64>,
}

impl Reported {
    fn add(&mut self, exits: &[f64], reports: u64, real: &[(f64, f64)]) {
        self.reports += reports;
        let mut used = vec![false; exits.len()];
        for &(start, end) in real {
            // A walk out is detected by an exit from a minute before the crossing to the return.
            match exits.iter().position(|&t| t >= start - 60.0 && t < end) {
                Some(i) => {
                    used[i] = true;
                    self.delays_s.push((exits[i] - start).max(0.0));
                }
                None => self.missed += 1,
            }
        }
        self.spurious += used.iter().filter(|u| !**u).count() as u64;
    }

    fn summary(&self, device_days: f64) -> serde_json::Value {
        let mut d = self.delays_s.clone();
        d.sort_by(f64::total_cmp);
        let pct = |p: f64| d.get(((d.len() as f64 * p) as usize).min(d.len().saturating_sub(1))).copied();
        json!({
            "reports_per_device_day": self.reports as f64 / device_days,
            "delay_mean_s": d.iter().sum::<f64>() / d.len().max(1) as f64,
            "delay_p50_s": pct(0.5),
            "delay_p95_s": pct(0.95),
            "delay_max_s": d.last(),
            "spurious_per_device_day": self.spurious as f64 / device_days,
            "missed": self.missed,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let (mut devices, mut seed, mut out) = (300usize, 7u64, PathBuf::from("m5.json"));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--devices" => devices = value.parse()?,
            "--seed" => seed = value.parse()?,
            "--out" => out = value.into(),
            _ => bail!("unknown flag {flag}; expected --devices --seed --out"),
        }
    }
    let mut rng = Rng::new(seed);
    let policy = Policy::default();
    let t0 = Utc.with_ymd_and_hms(2026, 5, 4, 0, 0, 0).single().context("start time")?;
    let (mut naive, mut ours) = (Score::default(), Score::default());
    let (mut fixes_total, mut real_total, mut sim_s) = (0u64, 0u64, 0.0);
    // Per normal interval: fixed, battery-aware.
    let mut reporting: Vec<[Reported; 2]> = NORMAL_INTERVALS_S.iter().map(|_| Default::default()).collect();
    for d in 0..devices {
        let device = DeviceId::parse(&format!("sim-{d}"))?;
        let centre = town_point(&mut rng, 2_500.0);
        let radius_m = rng.range(80.0, 250.0);
        let shape = if rng.chance(0.5) {
            Shape::Circle { centre: Point(centre), radius_m }
        } else {
            let n = rng.int(16, 64);
            Shape::Polygon(star_polygon(&mut rng, centre, n, radius_m, false))
        };
        let zone = Zone::new(ZoneId::new("home"), ZoneKind::StayInside, shape)?.for_devices([device.clone()]);
        let legs = day_track(&mut rng, &zone, centre);
        let index = ZoneIndex::build(vec![zone])?;
        let zone = &index.zones()[0];
        let interval = INTERVALS_S[rng.int(0, INTERVALS_S.len() - 1)];

        let mut state = DeviceState::default();
        let (mut naive_exits, mut our_exits, mut real) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen_out = Vec::new();
        let (mut was_in, mut truth_was_in, mut out_since) = (None::<bool>, true, 0.0);
        // The track ends inside (every segment does), so every real exit is complete.
        let end_s = legs.last().map_or(DAY_S, |l| l.end_s);
        sim_s += end_s;
        let mut t = 0.0;
        while t < end_s {
            let truth = truth_at(&legs, t);
            let truth_in = zone.contains(truth.x, truth.y);
            if truth_was_in && !truth_in {
                out_since = t;
            } else if !truth_was_in && truth_in {
                real.push((out_since, t));
            }
            truth_was_in = truth_in;
            let fix = observe(&mut rng, truth, t0 + Duration::milliseconds((t * 1000.0) as i64));
            fixes_total += 1;
            let is_in = zone.contains(fix.lon, fix.lat);
            if !is_in {
                seen_out.push(t);
            }
            if was_in == Some(true) && !is_in {
                naive_exits.push(t);
            }
            was_in = Some(is_in);
            for e in policy.evaluate(&index, &device, &mut state, &fix) {
                if e.kind == EventKind::Exit {
                    our_exits.push(t);
                }
            }
            t += interval;
        }
        real_total += real.len() as u64;
        let true_out = true_exits(&legs, zone, end_s);
        for (k, &normal_s) in NORMAL_INTERVALS_S.iter().enumerate() {
            for (m, battery_aware) in [false, true].into_iter().enumerate() {
                // The same noise stream for both schemes of a device and interval.
                let mut stream = Rng::new(seed ^ ((d as u64) << 16) ^ ((k as u64) << 8));
                let (exits, reports) =
                    reported_day(&mut stream, &policy, &index, &device, &legs, t0, normal_s, battery_aware);
                reporting[k][m].add(&exits, reports, &true_out);
            }
        }
        for (score, exits) in [(&mut naive, &naive_exits), (&mut ours, &our_exits)] {
            let detections = score_exits(score, exits, &real, interval);
            for (&(start, end), detected) in real.iter().zip(detections) {
                let seen = seen_out.iter().find(|&&t| t >= start && t < end);
                if let (Some(detected), Some(seen)) = (detected, seen) {
                    score.added.push(((detected - seen) / interval).max(0.0));
                }
            }
        }
        if d % 50 == 49 {
            eprintln!("  {} of {devices} device-days simulated", d + 1);
        }
    }
    let summary = |s: &Score| {
        let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        json!({
            "spurious": s.spurious,
            "spurious_per_device_day": s.spurious as f64 / (sim_s / DAY_S),
            "detected": s.detected,
            "missed": s.missed,
            "delay_intervals_mean": mean(&s.delays),
            "delay_intervals_max": max(&s.delays),
            "delay_within_one_interval_pct": 100.0 * s.delays.iter().filter(|d| **d <= 1.0).count() as f64 / s.delays.len().max(1) as f64,
            "added_delay_intervals_mean": mean(&s.added),
            "added_delay_intervals_max": max(&s.added),
            "added_delay_within_one_interval_pct": 100.0 * s.added.iter().filter(|d| **d <= 1.0).count() as f64 / s.added.len().max(1) as f64,
        })
    };
    let reduction =
        if naive.spurious == 0 { 0.0 } else { 100.0 * (1.0 - ours.spurious as f64 / naive.spurious as f64) };
    let device_days = sim_s / DAY_S;
    let battery_aware: Vec<_> = NORMAL_INTERVALS_S
        .iter()
        .zip(&reporting)
        .map(|(normal_s, [fixed, aware])| {
            json!({
                "normal_interval_s": normal_s,
                "fast_interval_s": FAST_INTERVAL_S,
                "fixed": fixed.summary(device_days),
                "battery_aware": aware.summary(device_days),
            })
        })
        .collect();
    let result = json!({
        "battery_aware_reporting": battery_aware,
        "device_days": sim_s / DAY_S,
        "fixes": fixes_total,
        "intervals_s": [60, 120, 300],
        "real_exits": real_total,
        "naive": summary(&naive),
        "policy": summary(&ours),
        "spurious_reduction_pct": reduction,
        "policy_settings": policy,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    eprintln!("  naive: {}", result["naive"]);
    eprintln!("  policy: {}", result["policy"]);
    eprintln!(
        "  | normal interval | reporting | reports / device-day | crossing → confirmed exit: mean / p50 / p95 / max (s) | spurious / device-day | missed |"
    );
    eprintln!("  |---|---|---|---|---|---|");
    for row in result["battery_aware_reporting"].as_array().into_iter().flatten() {
        for (name, key) in [("fixed", "fixed"), ("battery-aware (30 s)", "battery_aware")] {
            let r = &row[key];
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "  | {} s | {name} | {:.0} | {:.0} / {:.0} / {:.0} / {:.0} | {:.3} | {} |",
                row["normal_interval_s"],
                f("reports_per_device_day"),
                f("delay_mean_s"),
                f("delay_p50_s"),
                f("delay_p95_s"),
                f("delay_max_s"),
                f("spurious_per_device_day"),
                r["missed"]
            );
        }
    }
    Ok(())
}
