//! The alarm report (larmrapport) a tenant follows its alarm chain with: volumes per kind and
//! outcome, how much is false or technical, who causes most callouts, and response times
//! against the on-site limit.
//!
//! The figures are computed by [`trygg_alarms::report`]; this module only chooses the period,
//! loads the alarms and formats the answer as JSON or, for spreadsheets, as CSV.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use trygg_alarms::report::{self, AlarmReport, Spread};
use trygg_store::AlarmFilter;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::EDITORS;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::validate::Params;

/// The period when the query names none.
const DEFAULT_PERIOD: TimeDelta = TimeDelta::days(30);
/// Most alarms one report covers; a longer period must be split.
const MAX_ALARMS: u32 = 100_000;
/// The years a period may fall in: no alarm is older than the Unix epoch, and both backends
/// (and RFC 3339's four-digit years) handle every time in between.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The report's period and format.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start (RFC 3339), inclusive, in the years 1970 to 9999; default 30 days before `to`
    /// (not before 1970).
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339), exclusive, in the years 1970 to 9999; default now.
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`; `Accept: text/csv` also asks for CSV.
    #[param(schema_with = formats)]
    pub format: Option<String>,
}

fn formats() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(["json", "csv"])
}

/// Count, median and 90th percentile (nearest rank) of a response time in seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpreadOut {
    /// How many alarms have the time.
    pub n: usize,
    /// Median seconds; null when n is 0.
    pub median: Option<i64>,
    /// 90th percentile in seconds; null when n is 0.
    pub p90: Option<i64>,
}

impl From<Spread> for SpreadOut {
    fn from(s: Spread) -> Self {
        Self { n: s.n, median: s.median, p90: s.p90 }
    }
}

/// A wearer with many alarms.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopWearer {
    /// The wearer's id.
    pub id: Uuid,
    /// The wearer's name.
    pub name: String,
    /// Alarms in the period.
    pub alarms: u64,
}

/// The alarms raised in a period, summed up.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportOut {
    /// Start of the period, inclusive.
    pub from: DateTime<Utc>,
    /// End of the period, exclusive.
    pub to: DateTime<Utc>,
    /// Alarms raised in the period.
    pub total: u64,
    /// Count per kind (every kind listed).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Count per outcome of the closed alarms (every outcome listed).
    pub by_outcome: BTreeMap<&'static str, u64>,
    /// Alarms still open.
    pub open: u64,
    /// Closed as `false_alarm` / closed; null when none is closed.
    pub false_alarm_share: Option<f64>,
    /// `low_battery` and `device_offline` / all; null without alarms.
    pub technical_share: Option<f64>,
    /// The (at most 10) wearers with most alarms, most first.
    pub top_wearers: Vec<TopWearer>,
    /// Seconds from raised to acknowledged.
    pub time_to_acknowledge_secs: SpreadOut,
    /// Seconds from raised to on site.
    pub time_to_on_site_secs: SpreadOut,
    /// Critical alarms where nobody was on site within the limit (technical and test alarms
    /// need nobody there).
    pub on_site_overdue: u64,
    /// The tenant's on-site limit the flag is measured against.
    pub on_site_limit_secs: u32,
}

impl ReportOut {
    fn new(
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        r: AlarmReport,
        names: &HashMap<trygg_core::WearerId, String>,
        on_site_limit_secs: u32,
    ) -> Self {
        Self {
            from,
            to,
            total: r.total,
            by_kind: r.by_kind.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
            by_outcome: r.by_outcome.iter().map(|(o, n)| (o.as_str(), *n)).collect(),
            open: r.open,
            false_alarm_share: r.false_alarm_share,
            technical_share: r.technical_share,
            top_wearers: r
                .top_wearers
                .iter()
                .map(|(w, n)| TopWearer {
                    id: w.0,
                    name: names.get(w).cloned().unwrap_or_default(),
                    alarms: *n,
                })
                .collect(),
            time_to_acknowledge_secs: r.time_to_acknowledge_s.into(),
            time_to_on_site_secs: r.time_to_on_site_s.into(),
            on_site_overdue: r.on_site_overdue,
            on_site_limit_secs,
        }
    }

    /// `section,key,value` rows: one per figure, so a spreadsheet can pick any of them.
    fn to_csv(&self) -> String {
        let mut rows: Vec<(&str, String, String)> = vec![
            ("period", "from".into(), self.from.to_rfc3339()),
            ("period", "to".into(), self.to.to_rfc3339()),
            ("summary", "total".into(), self.total.to_string()),
            ("summary", "open".into(), self.open.to_string()),
            ("summary", "false_alarm_share".into(), opt(self.false_alarm_share)),
            ("summary", "technical_share".into(), opt(self.technical_share)),
            ("summary", "on_site_overdue".into(), self.on_site_overdue.to_string()),
            ("summary", "on_site_limit_secs".into(), self.on_site_limit_secs.to_string()),
        ];
        rows.extend(self.by_kind.iter().map(|(k, n)| ("by_kind", (*k).to_owned(), n.to_string())));
        rows.extend(self.by_outcome.iter().map(|(o, n)| ("by_outcome", (*o).to_owned(), n.to_string())));
        for (section, s) in [
            ("time_to_acknowledge_secs", &self.time_to_acknowledge_secs),
            ("time_to_on_site_secs", &self.time_to_on_site_secs),
        ] {
            rows.push((section, "n".into(), s.n.to_string()));
            rows.push((section, "median".into(), opt(s.median)));
            rows.push((section, "p90".into(), opt(s.p90)));
        }
        rows.extend(
            self.top_wearers
                .iter()
                .map(|w| ("top_wearers", format!("{} ({})", w.name, w.id), w.alarms.to_string())),
        );
        let mut csv = String::from("section,key,value\r\n");
        for (section, key, value) in rows {
            csv.push_str(&format!("{section},{},{value}\r\n", cell(&key)));
        }
        csv
    }
}

/// A figure, or an empty cell for none.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// A text cell: quoted when it holds a separator or quote, and kept from being read as a
/// formula by a spreadsheet (wearer names are typed by people).
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// `t` if it falls in [`YEARS`]; a 422 on `field` otherwise.
fn in_years(field: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if YEARS.contains(&t.year()) {
        Ok(t)
    } else {
        Err(ApiError::field(field, format!("must be in the years {} to {}", YEARS.start(), YEARS.end())))
    }
}

/// Whether the caller asked for CSV, by `format` or by `Accept`; an unknown format is a 400.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::Malformed(format!("format {other:?}: expected json or csv"))),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv"))),
    }
}

/// The tenant's alarm report for the alarms raised in `[from, to)` (default: the last 30
/// days), as JSON or as CSV with the header `section,key,value`.
#[utoipa::path(get, path = "/api/v1/reports/alarms", tag = "reports", params(ReportQuery), security(("bearer" = [])),
    responses((status = 200, content((ReportOut = "application/json"), (String = "text/csv"))),
        (status = 400), (status = 403), (status = 422, description = "from is not before to, a year outside 1970 to 9999, or too many alarms")))]
#[tracing::instrument(skip_all)]
pub async fn alarms(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let now = Utc::now();
    let to = in_years("to", q.to.unwrap_or(now))?;
    let from = match q.from {
        Some(from) => in_years("from", from)?,
        None => {
            let earliest = DateTime::<Utc>::UNIX_EPOCH;
            to.checked_sub_signed(DEFAULT_PERIOD).map_or(earliest, |from| from.max(earliest))
        }
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    let filter =
        AlarmFilter { from: Some(from), to: Some(to), limit: MAX_ALARMS + 1, ..AlarmFilter::default() };
    let alarms = state.store.alarms(tenant, &filter).await?;
    if alarms.len() > MAX_ALARMS as usize {
        return Err(ApiError::field(
            "from",
            format!("the period has more than {MAX_ALARMS} alarms; choose a shorter one"),
        ));
    }
    let limit = Settings::load(state.store.as_ref(), tenant).await?.on_site_limit_secs;
    let names = state.store.wearers(tenant).await?.into_iter().map(|w| (w.id, w.fields.name)).collect();
    let out = ReportOut::new((from, to), report::report(&alarms, limit, now), &names, limit);
    if csv {
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out.to_csv()).into_response())
    } else {
        Ok(Json(out).into_response())
    }
}
