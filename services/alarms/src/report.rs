//! Response times and the alarm report (larmrapport) as pure functions of stored alarms.
//!
//! Municipal quality rules are about time: how fast an alarm is taken, how fast someone is with
//! the wearer (inställelsetid, at most an hour), and how much of the work is false or technical.
//! The API shows these per alarm and aggregates them per period; both use the functions here, so
//! the list, the detail and the report can never disagree on what "overdue" means. Nothing here
//! touches the store or the clock: callers pass the alarms and `now`.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{AlarmKind, Outcome, WearerId};
use trygg_store::Alarm;

/// Most wearers listed in [`AlarmReport::top_wearers`].
pub const TOP_WEARERS: usize = 10;

/// Seconds from raised to acknowledged, if someone acknowledged the alarm.
pub fn time_to_acknowledge_s(alarm: &Alarm) -> Option<i64> {
    alarm.acknowledged.as_ref().map(|s| (s.at - alarm.raised_at).num_seconds())
}

/// Seconds from raised to on site, if someone marked being on site.
pub fn time_to_on_site_s(alarm: &Alarm) -> Option<i64> {
    alarm.on_site.as_ref().map(|s| (s.at - alarm.raised_at).num_seconds())
}

/// Whether nobody was on site within `limit_secs` of a critical alarm being raised: marked on
/// site after the limit, or not on site while the alarm stayed open past it (still open at
/// `now`, or closed after the limit without anyone marking on site). Technical and test alarms
/// never need anyone on site, so they are never overdue.
pub fn on_site_overdue(alarm: &Alarm, limit_secs: u32, now: DateTime<Utc>) -> bool {
    if !alarm.kind.is_critical() {
        return false;
    }
    let deadline = alarm.raised_at + TimeDelta::seconds(i64::from(limit_secs));
    let settled = match (&alarm.on_site, &alarm.closed) {
        (Some(on_site), _) => on_site.at,
        (None, Some(closed)) => closed.at,
        (None, None) => now,
    };
    settled > deadline
}

/// The count, median and 90th percentile of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spread {
    /// How many values.
    pub n: usize,
    /// The median (nearest rank); `None` without values.
    pub median: Option<i64>,
    /// The 90th percentile (nearest rank); `None` without values.
    pub p90: Option<i64>,
}

impl Spread {
    /// The spread of `values` (in any order).
    pub fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Self { n: values.len(), median: nearest_rank(&values, 50), p90: nearest_rank(&values, 90) }
    }
}

/// The `p`th percentile of sorted `values` by the nearest-rank method: the smallest value with
/// at least `p` percent of the values at or below it. `None` for no values.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    // rank = ceil(p/100 · n), at least 1; in integers so no rounding surprises.
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// What a period's alarms add up to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlarmReport {
    /// Alarms raised in the period.
    pub total: u64,
    /// Count per kind, every kind in [`AlarmKind::ALL`] order, zero or not.
    pub by_kind: Vec<(AlarmKind, u64)>,
    /// Count per outcome of the closed alarms, every outcome in [`Outcome::ALL`] order.
    pub by_outcome: Vec<(Outcome, u64)>,
    /// Alarms still open.
    pub open: u64,
    /// Closed as false alarms / closed; `None` when none is closed.
    pub false_alarm_share: Option<f64>,
    /// Low-battery and offline alerts / all alarms; `None` without alarms.
    pub technical_share: Option<f64>,
    /// The wearers with most alarms, most first (ties by id), at most [`TOP_WEARERS`].
    pub top_wearers: Vec<(WearerId, u64)>,
    /// Raised to acknowledged.
    pub time_to_acknowledge_s: Spread,
    /// Raised to on site.
    pub time_to_on_site_s: Spread,
    /// Critical alarms flagged by [`on_site_overdue`].
    pub on_site_overdue: u64,
}

/// Aggregates `alarms` (those raised in the period) with the tenant's on-site limit, as of `now`.
pub fn report(alarms: &[Alarm], on_site_limit_secs: u32, now: DateTime<Utc>) -> AlarmReport {
    let mut r = AlarmReport::default();
    let (mut closed, mut technical) = (0u64, 0u64);
    let mut per_kind: HashMap<AlarmKind, u64> = HashMap::new();
    let mut per_outcome: HashMap<Outcome, u64> = HashMap::new();
    let mut per_wearer: HashMap<WearerId, u64> = HashMap::new();
    let (mut to_ack, mut to_on_site) = (Vec::new(), Vec::new());
    for a in alarms {
        r.total += 1;
        *per_kind.entry(a.kind).or_default() += 1;
        // Alarms from watches bound to nobody count in the totals, not for any wearer.
        if let Some(w) = a.wearer {
            *per_wearer.entry(w).or_default() += 1;
        }
        technical += u64::from(a.kind.is_technical());
        if a.state.is_open() {
            r.open += 1;
        } else {
            closed += 1;
        }
        if let Some(o) = a.outcome {
            *per_outcome.entry(o).or_default() += 1;
        }
        to_ack.extend(time_to_acknowledge_s(a));
        to_on_site.extend(time_to_on_site_s(a));
        r.on_site_overdue += u64::from(on_site_overdue(a, on_site_limit_secs, now));
    }
    let share = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    let false_alarms = per_outcome.get(&Outcome::FalseAlarm).copied().unwrap_or(0);
    r.false_alarm_share = share(false_alarms, closed);
    r.by_kind = AlarmKind::ALL.iter().map(|k| (*k, per_kind.get(k).copied().unwrap_or(0))).collect();
    r.by_outcome = Outcome::ALL.iter().map(|o| (*o, per_outcome.get(o).copied().unwrap_or(0))).collect();
    r.technical_share = share(technical, r.total);
    let mut top: Vec<(WearerId, u64)> = per_wearer.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(TOP_WEARERS);
    r.top_wearers = top;
    r.time_to_acknowledge_s = Spread::of(to_ack);
    r.time_to_on_site_s = Spread::of(to_on_site);
    r
}

#[cfg(test)]
mod tests {
    use trygg_core::{AlarmState, TenantId};
    use trygg_store::Stamp;
    use uuid::Uuid;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
    }

    fn stamp(at: i64) -> Option<Stamp> {
        Some(Stamp { user: Uuid::nil(), name: "Staff".into(), at: t(at) })
    }

    /// An alarm raised at `t(0)` of `wearer`, acknowledged / on site / closed at the given
    /// seconds after that.
    fn alarm(
        wearer: u128,
        kind: AlarmKind,
        ack: Option<i64>,
        on_site: Option<i64>,
        closed: Option<(i64, Outcome)>,
    ) -> Alarm {
        let state = match (ack, on_site, closed) {
            (_, _, Some(_)) => AlarmState::Closed,
            (_, Some(_), None) => AlarmState::OnSite,
            (Some(_), None, None) => AlarmState::Acknowledged,
            (None, None, None) => AlarmState::Raised,
        };
        Alarm {
            id: Uuid::new_v4(),
            tenant: TenantId(Uuid::nil()),
            wearer: Some(WearerId(Uuid::from_u128(wearer))),
            device: None,
            kind,
            zone: None,
            state,
            raised_at: t(0),
            trigger_time: t(-5),
            position: None,
            returned_at: None,
            acknowledged: ack.and_then(stamp),
            on_site: on_site.and_then(stamp),
            closed: closed.and_then(|(at, _)| stamp(at)),
            outcome: closed.map(|(_, o)| o),
            note: String::new(),
        }
    }

    #[test]
    fn nearest_rank_takes_the_smallest_value_covering_the_percentage() {
        let v: Vec<i64> = (1..=10).map(|i| i * 10).collect();
        assert_eq!(nearest_rank(&v, 50), Some(50));
        assert_eq!(nearest_rank(&v, 90), Some(90));
        assert_eq!(nearest_rank(&v, 91), Some(100));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2), "ceil(1.5) = 2nd value");
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(Spread::of(vec![30, 10, 20]), Spread { n: 3, median: Some(20), p90: Some(30) });
        assert_eq!(Spread::of(Vec::new()), Spread { n: 0, median: None, p90: None });
    }

    #[test]
    fn on_site_is_overdue_only_past_the_limit() {
        let now = t(10_000);
        let on_time = alarm(1, AlarmKind::Sos, Some(60), Some(3600), None);
        assert!(!on_site_overdue(&on_time, 3600, now), "exactly at the limit is in time");
        let late = alarm(1, AlarmKind::Sos, Some(60), Some(3601), None);
        assert!(on_site_overdue(&late, 3600, now));
        let waiting = alarm(1, AlarmKind::Sos, Some(60), None, None);
        assert!(on_site_overdue(&waiting, 3600, now), "still nobody there after the limit");
        assert!(!on_site_overdue(&waiting, 3600, t(3000)), "still within the limit");
        let closed_early = alarm(1, AlarmKind::Sos, Some(60), None, Some((600, Outcome::FalseAlarm)));
        assert!(!on_site_overdue(&closed_early, 3600, now), "settled by phone within the limit");
        let closed_late = alarm(1, AlarmKind::Sos, Some(60), None, Some((4000, Outcome::NotFound)));
        assert!(on_site_overdue(&closed_late, 3600, now));
    }

    #[test]
    fn technical_and_test_alarms_are_never_on_site_overdue() {
        let now = t(10_000);
        for kind in [AlarmKind::LowBattery, AlarmKind::DeviceOffline, AlarmKind::Test] {
            let waiting = alarm(1, kind, Some(60), None, None);
            assert!(!on_site_overdue(&waiting, 3600, now), "{kind:?} still open after the limit");
            let closed_late = alarm(1, kind, Some(60), None, Some((4000, Outcome::Other)));
            assert!(!on_site_overdue(&closed_late, 3600, now), "{kind:?} closed after the limit");
        }
        let exit = alarm(1, AlarmKind::ZoneExit, Some(60), None, None);
        assert!(on_site_overdue(&exit, 3600, now), "a zone exit needs someone there");
    }

    #[test]
    fn the_report_counts_shares_spreads_and_top_wearers() {
        let alarms = vec![
            alarm(1, AlarmKind::Sos, Some(30), Some(600), Some((900, Outcome::Assisted))),
            alarm(1, AlarmKind::Fall, Some(90), Some(4000), Some((4100, Outcome::Assisted))),
            alarm(2, AlarmKind::LowBattery, Some(120), None, Some((130, Outcome::FalseAlarm))),
            alarm(2, AlarmKind::DeviceOffline, None, None, None),
            alarm(1, AlarmKind::ZoneExit, Some(60), None, None),
            alarm(3, AlarmKind::Sos, None, None, None),
        ];
        let r = report(&alarms, 3600, t(1000));
        assert_eq!(r.total, 6);
        assert_eq!(r.open, 3);
        let kinds: Vec<u64> = r.by_kind.iter().map(|(_, n)| *n).collect();
        assert_eq!(kinds, [2, 1, 1, 0, 0, 1, 1, 0, 0], "sos, fall, zone_exit, …, in AlarmKind::ALL order");
        let outcomes: Vec<u64> = r.by_outcome.iter().map(|(_, n)| *n).collect();
        assert_eq!(outcomes, [2, 1, 0, 0, 0]);
        assert_eq!(r.false_alarm_share, Some(1.0 / 3.0));
        assert_eq!(r.technical_share, Some(2.0 / 6.0));
        let top: Vec<(u128, u64)> = r.top_wearers.iter().map(|(w, n)| (w.0.as_u128(), *n)).collect();
        assert_eq!(top, [(1, 3), (2, 2), (3, 1)]);
        assert_eq!(r.time_to_acknowledge_s, Spread { n: 4, median: Some(60), p90: Some(120) });
        assert_eq!(r.time_to_on_site_s, Spread { n: 2, median: Some(600), p90: Some(4000) });
        assert_eq!(r.on_site_overdue, 1, "only the fall was late; at t+1000 the open ones are in time");
        assert_eq!(
            report(&alarms, 3600, t(5000)).on_site_overdue,
            3,
            "later the open zone exit and sos are too, not the open offline alert"
        );
    }

    #[test]
    fn an_empty_period_has_no_shares_and_top_wearers_are_capped() {
        let r = report(&[], 3600, t(0));
        assert_eq!((r.total, r.false_alarm_share, r.technical_share), (0, None, None));
        assert_eq!(r.time_to_acknowledge_s, Spread::default());
        let many: Vec<Alarm> = (0..15).map(|w| alarm(w, AlarmKind::Test, None, None, None)).collect();
        assert_eq!(report(&many, 3600, t(0)).top_wearers.len(), TOP_WEARERS);
    }
}
