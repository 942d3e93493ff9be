//! Alarm burden: a month of a municipality's watches through trygg's supervision rules.
//!
//! 350 wearers, 30 days, a report every 5 minutes while the watch has power. Each watch has its
//! own drain (1.6–2.6 %/h worn in daytime, 0.6–1.0 %/h at night) and its wearer a charging
//! habit (60 % charge most evenings, 30 % now and then, 10 % hardly ever). Readings carry ±1
//! point of noise. Staff act on what they are paged: a low-battery page gets the watch charged
//! 1–3 h later; an offline page gets it charged (or replaced) 1–3 h later. Incidents: 3 % of
//! wearers a month leave the watch in a drawer for 12–48 h (half the watches report removal,
//! a critical `watch_removed`, and staff put it back within 2 h); 1 % of watches die suddenly
//! (switched off, broken); 5 % of wearers walk out at night 1–4 times a month and everybody
//! presses SOS now and then (0.3 a month): those are the critical alarms.
//!
//! The battery rule is trygg's own ([`BatteryTrack`], tenant defaults: 20 %, margin 10, quiet
//! hours 22–07 Stockholm); offline is the default 15 minutes after the last report. The naive
//! peer, on the same battery traces, pages whenever a reading is at or below 20 % and the one
//! before was above (as a plain threshold does), at any hour.
//!
//! Usage: `burden-sim [--wearers 350] [--days 30] [--seed 7] [--out loadtest/results/burden.json]`

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use serde_json::json;
use trygg_alarms::supervision::{BatteryDecision, BatteryRule, BatteryState, BatteryTrack, DailyHours};
use trygg_loadtest::Rng;

const STEP_MIN: i64 = 5;
const OFFLINE_MIN: i64 = 15;

#[derive(Default)]
struct Counts {
    tech_day: u64,
    tech_night: u64,
    low_battery: u64,
    offline: u64,
    critical: u64,
    deaths_battery: u64,
    deaths_sudden: u64,
    caught: u64,
    catch_secs: Vec<i64>,
    drawer_sensor: u64,
    drawer_silent: u64,
    drawer_silent_until_offline_h: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let mut wearers = 350usize;
    let mut days = 30i64;
    let mut seed = 7u64;
    let mut out = PathBuf::from("loadtest/results/burden.json");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().context("a value after each flag")?;
        match a.as_str() {
            "--wearers" => wearers = v.parse()?,
            "--days" => days = v.parse()?,
            "--seed" => seed = v.parse()?,
            "--out" => out = v.into(),
            _ => anyhow::bail!("unknown flag {a}"),
        }
    }
    let tz = chrono_tz::Europe::Stockholm;
    let quiet = DailyHours { tz, from_hour: 22, until_hour: 7 };
    let rule = BatteryRule { low_pct: 20, rearm_margin_pct: 10, quiet };
    let trygg = simulate(false, wearers, days, seed, rule);
    let naive = simulate(true, wearers, days, seed, rule);
    let months = wearers as f64 * days as f64 / 30.0;
    let result = json!({
        "wearers": wearers, "days": days, "seed": seed,
        "trygg": summary(&trygg, months),
        "naive": summary(&naive, months),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// One month of every wearer. `naive`: staff are paged (and act) on every crossing of the
/// threshold, at any hour, instead of trygg's rule.
fn simulate(naive: bool, wearers: usize, days: i64, seed: u64, rule: BatteryRule) -> Counts {
    let quiet = rule.quiet;
    let tz = quiet.tz;
    let start = tz.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap().with_timezone(&Utc);
    let end = start + Duration::days(days);
    let mut c = Counts::default();

    for i in 0..wearers as u64 {
        // The wearer, the watch, the incidents and the noise are the same in both worlds; only
        // what staff are paged for, and so when they charge, differs.
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i));
        let mut staff = Rng::new(seed.wrapping_mul(7_919).wrapping_add(i) ^ 0x5eed);
        let day_drain = rng.range(1.6, 2.6);
        let night_drain = rng.range(0.6, 1.0);
        let habit = rng.unit();
        let charge_p = if habit < 0.6 {
            0.85
        } else if habit < 0.9 {
            0.35
        } else {
            0.05
        };
        let sensor = rng.unit() < 0.5;
        // Incidents of the month.
        let drawer = (rng.unit() < 0.03 * days as f64 / 30.0).then(|| {
            let at = start + Duration::minutes((rng.range(0.0, days as f64 - 2.0) * 1440.0) as i64);
            (at, at + Duration::minutes((rng.range(12.0, 48.0) * 60.0) as i64))
        });
        let sudden = (rng.unit() < 0.01 * days as f64 / 30.0)
            .then(|| start + Duration::minutes((rng.range(0.0, days as f64) * 1440.0) as i64));
        let night_walks = if rng.unit() < 0.05 { rng.int(1, 4) } else { 0 };
        c.critical += night_walks as u64;
        let sos = (0..days).filter(|_| rng.unit() < 0.3 / 30.0).count();
        c.critical += sos as u64;

        let mut pct = rng.range(50.0, 100.0);
        let mut track = BatteryTrack::default();
        let mut charging_until: Option<DateTime<Utc>> = None;
        let mut staff_charge_at: Option<DateTime<Utc>> = None;
        let mut dead_since: Option<DateTime<Utc>> = None;
        let mut last_report: Option<DateTime<Utc>> = None;
        let mut offline_paged = false;
        let mut prev_reading: Option<f64> = None;
        let mut drawer_seen = false;
        let mut sudden_dead = false;
        let mut waiting_until: Option<DateTime<Utc>> = None;
        let mut t = start;
        while t < end {
            // The engine's morning deadline: a low battery held over the night is paged now,
            // unless a report re-armed it (charged) before.
            if let Some(morning) = waiting_until
                && t >= morning
            {
                waiting_until = None;
                if matches!(track.state, BatteryState::Waiting(_)) {
                    c.low_battery += 1;
                    page(&mut c, quiet, t);
                    let pct = track.last_pct().unwrap_or(100);
                    track.settle(BatteryDecision::Raise { early: false, empty_at: None, pct });
                }
            }
            let local = t.with_timezone(&tz);
            let hour = local.hour();
            let in_drawer = drawer.is_some_and(|(a, b)| t >= a && t < b);
            if let Some((a, _)) = drawer
                && t >= a
                && !drawer_seen
            {
                drawer_seen = true;
                if sensor {
                    c.critical += 1; // watch_removed: staff put it back within 2 h
                    c.drawer_sensor += 1;
                } else {
                    c.drawer_silent += 1;
                }
            }
            if let Some(s) = sudden
                && t >= s
                && !sudden_dead
            {
                sudden_dead = true;
                c.deaths_sudden += 1;
                dead_since = Some(t);
                pct = 0.0;
                staff_charge_at = None;
            }
            // Charging: the evening habit, or staff acting on a page.
            if charging_until.is_none()
                && dead_since.is_none()
                && hour == 21
                && local.minute() == 30
                && rng.unit() < charge_p
            {
                charging_until = Some(t + Duration::minutes((rng.range(9.5, 10.5) * 60.0) as i64));
            }
            if let Some(at) = staff_charge_at
                && t >= at
            {
                staff_charge_at = None;
                charging_until = Some(t + Duration::hours(3));
                dead_since = None;
            }
            let step_h = STEP_MIN as f64 / 60.0;
            if let Some(until) = charging_until {
                pct = (pct + 40.0 * step_h).min(100.0);
                if t >= until {
                    charging_until = None;
                }
            } else if dead_since.is_none() {
                let night = !(7..22).contains(&hour);
                let drain = if night || (in_drawer && !sensor) { night_drain } else { day_drain };
                pct -= drain * step_h;
                if pct <= 0.0 {
                    pct = 0.0;
                    dead_since = Some(t);
                    c.deaths_battery += 1;
                }
            }
            if dead_since.is_none() {
                // A report.
                last_report = Some(t);
                offline_paged = false;
                let reading = (pct + rng.range(-1.0, 1.0)).round().clamp(0.0, 100.0);
                let crossed = prev_reading.is_some_and(|p| p > 20.0) && reading <= 20.0;
                prev_reading = Some(reading);
                if naive {
                    if crossed {
                        c.low_battery += 1;
                        page(&mut c, quiet, t);
                        if staff_charge_at.is_none() {
                            staff_charge_at =
                                Some(t + Duration::minutes((staff.range(1.0, 3.0) * 60.0) as i64));
                        }
                    }
                    t += Duration::minutes(STEP_MIN);
                    continue;
                }
                let decision = track.reading(&rule, t, reading as u8);
                track.settle(decision);
                match decision {
                    BatteryDecision::Raise { .. } => {
                        c.low_battery += 1;
                        page(&mut c, quiet, t);
                        staff_charge_at = Some(t + Duration::minutes((staff.range(1.0, 3.0) * 60.0) as i64));
                    }
                    BatteryDecision::WaitUntil(morning) => {
                        waiting_until = Some(morning);
                        staff_charge_at =
                            Some(morning + Duration::minutes((staff.range(1.0, 3.0) * 60.0) as i64));
                    }
                    BatteryDecision::Rearm | BatteryDecision::Nothing => {}
                }
            } else if let (Some(last), false) = (last_report, offline_paged)
                && t >= last + Duration::minutes(OFFLINE_MIN)
            {
                offline_paged = true;
                c.offline += 1;
                page(&mut c, quiet, t);
                let died = dead_since.unwrap_or(t);
                c.caught += 1;
                c.catch_secs.push((t - died).num_seconds().max(0));
                if let Some((a, b)) = drawer
                    && !sensor
                    && died >= a
                    && died < b
                {
                    c.drawer_silent_until_offline_h.push((t - a).num_minutes() as f64 / 60.0);
                }
                staff_charge_at = Some(t + Duration::minutes((staff.range(1.0, 3.0) * 60.0) as i64));
            }
            t += Duration::minutes(STEP_MIN);
        }
    }

    c
}

fn summary(c: &Counts, months: f64) -> serde_json::Value {
    let per = |n: u64| (n as f64 / months * 1000.0).round() / 1000.0;
    let mut catch = c.catch_secs.clone();
    catch.sort_unstable();
    let mean = if catch.is_empty() { 0.0 } else { catch.iter().sum::<i64>() as f64 / catch.len() as f64 };
    json!({
        "per_wearer_month": {
            "technical_pages_day": per(c.tech_day), "technical_pages_night": per(c.tech_night),
            "low_battery_pages": per(c.low_battery), "offline_pages": per(c.offline),
            "critical_delivered": per(c.critical),
        },
        "totals": {
            "technical_pages_day": c.tech_day, "technical_pages_night": c.tech_night,
            "low_battery_pages": c.low_battery, "offline_pages": c.offline, "critical_delivered": c.critical,
            "watches_dead_flat_battery": c.deaths_battery, "watches_died_suddenly": c.deaths_sudden,
            "dead_watches_caught": c.caught, "caught_after_secs_mean": mean,
            "caught_after_secs_max": catch.last().copied().unwrap_or(0),
            "drawer_with_removal_sensor": c.drawer_sensor, "drawer_without_sensor": c.drawer_silent,
            "drawer_without_sensor_caught_by_offline": c.drawer_silent_until_offline_h.len(),
        },
    })
}

/// A technical page at `t`, by day or by night (the tenant's quiet hours).
fn page(c: &mut Counts, quiet: DailyHours, t: DateTime<Utc>) {
    if quiet.contains(t) { c.tech_night += 1 } else { c.tech_day += 1 }
}
