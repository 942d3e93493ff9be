//! Offline replay: the real policy over a zones file and a fixes file, one event per line out.
//!
//! This is what `trygg replay --zones Z --fixes F` runs. It exists so the policy can be tuned
//! and evaluated on recorded or simulated tracks without a server, and so a disputed alarm can
//! be re-run exactly as the engine saw it. Formats are those of DESIGN.md ("Replay formats"):
//!
//! - zones: a GeoJSON FeatureCollection; `properties` has `id`, `device` (one id or a list),
//!   `kind` (`stay_inside` | `keep_out`), optional `radius_m` (then the geometry is a Point, a
//!   circle) and optional `schedule` (see [`Schedule`](crate::Schedule));
//! - fixes: JSON lines `{"device":"d1","time":"…","lat":57.7,"lon":11.9,"accuracy_m":12}`, in
//!   time order per device; `source` (`gps`, `wifi`, `cell`, `unknown`) is optional;
//! - output: JSON lines `{"device":"d1","zone":"z1","event":"exit","time":"…"}`.
//!
//! Input is checked strictly and the first problem stops the run with a one-line message that
//! names the feature or the line, because a silently skipped zone would make an evaluation lie.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trygg_core::{DeviceId, Fix};

use crate::index::ZoneIndex;
use crate::policy::{DeviceState, EventKind, Policy};
use crate::schedule::Schedule;
use crate::zone::{Shape, Zone, ZoneId, ZoneKind};

/// Why a replay stopped. Every variant but [`ReplayError::Output`] means the input is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The zones file is not JSON or not a GeoJSON FeatureCollection.
    #[error("zones: {0}")]
    ZonesFile(String),
    /// One zone feature is unusable; `feature` is its `properties.id`, or `#n` (1-based) without one.
    #[error("zones: feature {feature}: {reason}")]
    Zone {
        /// The feature's id, or its position in the collection.
        feature: String,
        /// What is wrong with it.
        reason: String,
    },
    /// One line of the fixes file is unusable.
    #[error("fixes: line {line}: {reason}")]
    Fix {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an event failed (a closed pipe, a full disk): not the input's fault.
    #[error("writing events: {0}")]
    Output(#[source] std::io::Error),
}

impl ReplayError {
    /// Whether the input was unusable (as opposed to the output failing).
    pub fn is_input(&self) -> bool {
        !matches!(self, Self::Output(_))
    }
}

/// Counts from one replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Zones read.
    pub zones: usize,
    /// Fix lines read.
    pub fixes: u64,
    /// Distinct devices seen in the fixes.
    pub devices: usize,
    /// `exit` events written.
    pub exits: u64,
    /// `return` events written.
    pub returns: u64,
    /// `enter` events written.
    pub enters: u64,
}

/// Runs the real policy (with default [`Policy`] settings) over the fixtures and writes one
/// JSON event per line to `out`.
///
/// ```
/// let zones = r#"{"type":"FeatureCollection","features":[{"type":"Feature",
///   "properties":{"id":"home","device":"w1","kind":"stay_inside","radius_m":100},
///   "geometry":{"type":"Point","coordinates":[11.97,57.70]}}]}"#;
/// let fixes = [
///     r#"{"device":"w1","time":"2026-05-04T10:00:00Z","lat":57.700,"lon":11.97,"accuracy_m":10}"#,
///     r#"{"device":"w1","time":"2026-05-04T10:01:00Z","lat":57.702,"lon":11.97,"accuracy_m":10}"#,
///     r#"{"device":"w1","time":"2026-05-04T10:02:00Z","lat":57.703,"lon":11.97,"accuracy_m":10}"#,
/// ].join("\n");
/// let mut out = Vec::new();
/// let summary = trygg_geofence::replay::run(zones, fixes.as_bytes(), &mut out)?;
/// assert_eq!(summary.exits, 1);
/// assert_eq!(
///     String::from_utf8(out)?,
///     "{\"device\":\"w1\",\"zone\":\"home\",\"event\":\"exit\",\"time\":\"2026-05-04T10:02:00Z\"}\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(
    zones_geojson: &str,
    fixes_jsonl: impl BufRead,
    mut out: impl Write,
) -> Result<Summary, ReplayError> {
    let index =
        ZoneIndex::build(parse_zones(zones_geojson)?).map_err(|e| ReplayError::ZonesFile(e.to_string()))?;
    let policy = Policy::default();
    let mut states: HashMap<DeviceId, DeviceState> = HashMap::new();
    let mut summary = Summary { zones: index.len(), ..Summary::default() };
    for (n, line) in fixes_jsonl.lines().enumerate() {
        let line_no = n + 1;
        let bad = |reason: String| ReplayError::Fix { line: line_no, reason };
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (device, fix) = parse_fix(&line).map_err(bad)?;
        summary.fixes += 1;
        let state = states.entry(device.clone()).or_default();
        for event in policy.evaluate(&index, &device, state, &fix) {
            *match event.kind {
                EventKind::Exit => &mut summary.exits,
                EventKind::Return => &mut summary.returns,
                EventKind::Enter => &mut summary.enters,
            } += 1;
            let line = EventLine { device: &device, zone: &event.zone, event: event.kind, time: event.time };
            serde_json::to_writer(&mut out, &line).map_err(|e| ReplayError::Output(e.into()))?;
            out.write_all(b"\n").map_err(ReplayError::Output)?;
        }
    }
    summary.devices = states.len();
    out.flush().map_err(ReplayError::Output)?;
    Ok(summary)
}

#[derive(Serialize)]
struct EventLine<'a> {
    device: &'a DeviceId,
    zone: &'a ZoneId,
    event: EventKind,
    time: DateTime<Utc>,
}

#[derive(Deserialize)]
struct FixLine {
    device: String,
    #[serde(flatten)]
    fix: Fix,
}

fn parse_fix(line: &str) -> Result<(DeviceId, Fix), String> {
    let FixLine { device, fix } = serde_json::from_str(line).map_err(|e| format!("not a fix object: {e}"))?;
    let device = DeviceId::parse(&device).map_err(|e| e.to_string())?;
    // Replayed fixes are history: check the values, not their age.
    fix.check_values().map_err(|e| e.to_string())?;
    Ok((device, fix))
}

/// Reads a zones FeatureCollection into checked zones.
pub fn parse_zones(geojson: &str) -> Result<Vec<Zone>, ReplayError> {
    let file = |m: String| ReplayError::ZonesFile(m);
    let root: Value = serde_json::from_str(geojson).map_err(|e| file(format!("not valid JSON: {e}")))?;
    if root.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(file("expected a GeoJSON FeatureCollection".into()));
    }
    let features = root
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| file("FeatureCollection has no features array".into()))?;
    features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let props = f.get("properties").and_then(Value::as_object);
            let id = props.and_then(|p| p.get("id")).and_then(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let name = id.clone().unwrap_or_else(|| format!("#{}", i + 1));
            parse_zone(id, props, f).map_err(|reason| ReplayError::Zone { feature: name, reason })
        })
        .collect()
}

fn parse_zone(
    id: Option<String>,
    props: Option<&Map<String, Value>>,
    feature: &Value,
) -> Result<Zone, String> {
    let props = props.ok_or("has no properties")?;
    let id = id.ok_or("has no properties.id (a string or number)")?;
    let kind: ZoneKind = serde_json::from_value(props.get("kind").cloned().unwrap_or(Value::Null))
        .map_err(|_| "properties.kind must be \"stay_inside\" or \"keep_out\"")?;
    let devices = match props.get("device") {
        Some(Value::String(d)) => vec![d.as_str()],
        Some(Value::Array(ds)) => ds
            .iter()
            .map(|d| d.as_str().ok_or("properties.device lists a non-string"))
            .collect::<Result<_, _>>()?,
        _ => return Err("properties.device must be a device id or a list of them".into()),
    };
    let devices = devices
        .into_iter()
        .map(|d| DeviceId::parse(d).map_err(|e| format!("properties.device {d:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let radius_m = match props.get("radius_m") {
        None | Some(Value::Null) => None,
        Some(r) => Some(r.as_f64().ok_or("properties.radius_m must be a number")?),
    };
    let geometry = feature.get("geometry").filter(|g| !g.is_null()).ok_or("has no geometry")?;
    let geometry = geojson::Geometry::from_json_value(geometry.clone())
        .map_err(|e| format!("invalid GeoJSON geometry: {e}"))?;
    let shape = Shape::from_geojson(&geometry.value, radius_m).map_err(|e| e.to_string())?;
    let mut zone = Zone::new(ZoneId::new(id), kind, shape).map_err(|e| e.to_string())?.for_devices(devices);
    if let Some(s) = props.get("schedule").filter(|s| !s.is_null()) {
        let schedule: Schedule =
            serde_json::from_value(s.clone()).map_err(|e| format!("properties.schedule: {e}"))?;
        zone = zone.with_schedule(schedule);
    }
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONES: &str = include_str!("../tests/data/zones.geojson");
    const FIXES: &str = include_str!("../tests/data/fixes.jsonl");
    const EVENTS: &str = include_str!("../tests/data/events.jsonl");

    fn replay(zones: &str, fixes: &str) -> Result<(Summary, String), ReplayError> {
        let mut out = Vec::new();
        let summary = run(zones, fixes.as_bytes(), &mut out)?;
        Ok((summary, String::from_utf8(out).unwrap()))
    }

    fn zone_error(feature: &str) -> String {
        let zones = format!(r#"{{"type":"FeatureCollection","features":[{feature}]}}"#);
        replay(&zones, "").unwrap_err().to_string()
    }

    fn feature(props: &str, geometry: &str) -> String {
        format!(r#"{{"type":"Feature","properties":{props},"geometry":{geometry}}}"#)
    }

    const SQUARE: &str =
        r#"{"type":"Polygon","coordinates":[[[11,57],[11.01,57],[11.01,57.01],[11,57.01],[11,57]]]}"#;
    const PROPS: &str = r#"{"id":"z7","device":"d1","kind":"stay_inside"}"#;

    #[test]
    fn fixture_pair_replays_to_the_expected_events() {
        let (summary, out) = replay(ZONES, FIXES).unwrap();
        assert_eq!(out, EVENTS);
        assert_eq!(summary, Summary { zones: 3, fixes: 20, devices: 3, exits: 2, returns: 2, enters: 1 });
    }

    #[test]
    fn polygon_feature_with_id_device_and_kind_is_accepted() {
        let zones = format!(r#"{{"type":"FeatureCollection","features":[{}]}}"#, feature(PROPS, SQUARE));
        assert_eq!(replay(&zones, "").unwrap().0.zones, 1);
    }

    #[test]
    fn zones_file_that_is_not_json_is_refused() {
        let err = replay("{not json", "").unwrap_err();
        assert!(err.is_input());
        assert!(err.to_string().starts_with("zones: not valid JSON"), "{err}");
    }

    #[test]
    fn zones_file_that_is_not_a_feature_collection_is_refused() {
        let err = replay(SQUARE, "").unwrap_err().to_string();
        assert_eq!(err, "zones: expected a GeoJSON FeatureCollection");
    }

    #[test]
    fn invalid_geojson_geometry_names_the_feature() {
        let err = zone_error(&feature(PROPS, r#"{"type":"Polygon","coordinates":"x"}"#));
        assert!(err.starts_with("zones: feature z7: invalid GeoJSON geometry"), "{err}");
    }

    #[test]
    fn self_intersecting_polygon_names_the_feature() {
        let bowtie =
            r#"{"type":"Polygon","coordinates":[[[11,57],[11.01,57.01],[11.01,57],[11,57.01],[11,57]]]}"#;
        let err = zone_error(&feature(PROPS, bowtie));
        assert!(
            err.starts_with("zones: feature z7: invalid polygon:") && err.contains("self-intersection"),
            "{err}"
        );
    }

    #[test]
    fn unclosed_polygon_names_the_feature() {
        let open = r#"{"type":"Polygon","coordinates":[[[11,57],[11.01,57],[11.01,57.01],[11,57.01]]]}"#;
        let err = zone_error(&feature(PROPS, open));
        assert_eq!(err, "zones: feature z7: ring 0 is not closed (its last position must repeat the first)");
    }

    #[test]
    fn radius_of_zero_or_less_names_the_feature() {
        let props = r#"{"id":"c1","device":"d1","kind":"keep_out","radius_m":0}"#;
        let err = zone_error(&feature(props, r#"{"type":"Point","coordinates":[11,57]}"#));
        assert_eq!(err, "zones: feature c1: circle radius 0 m must be a positive number");
        let props = r#"{"id":"c2","device":"d1","kind":"keep_out","radius_m":-3}"#;
        assert!(zone_error(&feature(props, r#"{"type":"Point","coordinates":[11,57]}"#)).contains("c2"));
    }

    #[test]
    fn swapped_zone_coordinates_out_of_range_name_the_feature_and_hint_at_the_swap() {
        let swapped =
            r#"{"type":"Polygon","coordinates":[[[-33.9,151.2],[-33.8,151.2],[-33.8,151.3],[-33.9,151.2]]]}"#;
        let err = zone_error(&feature(PROPS, swapped));
        assert!(err.starts_with("zones: feature z7: coordinate [-33.9, 151.2] is outside"), "{err}");
        assert!(err.contains("swapped"), "{err}");
    }

    #[test]
    fn feature_without_an_id_is_named_by_its_position() {
        let err = zone_error(&feature(r#"{"device":"d1","kind":"stay_inside"}"#, SQUARE));
        assert_eq!(err, "zones: feature #1: has no properties.id (a string or number)");
    }

    #[test]
    fn unknown_kind_missing_device_and_point_without_radius_are_refused() {
        let bad_kind = zone_error(&feature(r#"{"id":"k","device":"d1","kind":"inside"}"#, SQUARE));
        assert!(bad_kind.contains("feature k: properties.kind"), "{bad_kind}");
        let no_device = zone_error(&feature(r#"{"id":"n","kind":"keep_out"}"#, SQUARE));
        assert!(no_device.contains("feature n: properties.device"), "{no_device}");
        let point = zone_error(&feature(PROPS, r#"{"type":"Point","coordinates":[11,57]}"#));
        assert!(point.contains("needs properties.radius_m"), "{point}");
        let line = zone_error(&feature(PROPS, r#"{"type":"LineString","coordinates":[[11,57],[12,57]]}"#));
        assert!(line.contains("LineString cannot be a zone"), "{line}");
    }

    #[test]
    fn duplicate_zone_ids_are_refused() {
        let zones = format!(r#"{{"type":"FeatureCollection","features":[{0},{0}]}}"#, feature(PROPS, SQUARE));
        assert_eq!(
            replay(&zones, "").unwrap_err().to_string(),
            "zones: zone id z7 is used by more than one zone"
        );
    }

    #[test]
    fn fix_line_that_is_not_json_names_the_line() {
        let fixes =
            "{\"device\":\"d1\",\"time\":\"2026-05-04T10:00:00Z\",\"lat\":57.7,\"lon\":11.97}\n\nnot json\n";
        let err = replay(ZONES, fixes).unwrap_err();
        assert!(err.is_input());
        assert!(err.to_string().starts_with("fixes: line 3: not a fix object"), "{err}");
    }

    #[test]
    fn fix_with_latitude_out_of_range_names_the_line() {
        let fixes = r#"{"device":"d1","time":"2026-05-04T10:00:00Z","lat":11.97,"lon":57.7}
{"device":"d1","time":"2026-05-04T10:01:00Z","lat":157.7,"lon":11.97}"#;
        let err = replay(ZONES, fixes).unwrap_err().to_string();
        assert_eq!(err, "fixes: line 2: lat 157.7 is outside [-90, 90]");
    }

    #[test]
    fn fix_with_a_bad_device_id_or_missing_time_names_the_line() {
        let err = replay(ZONES, r#"{"device":"d 1","time":"2026-05-04T10:00:00Z","lat":57.7,"lon":11.97}"#);
        assert!(err.unwrap_err().to_string().starts_with("fixes: line 1: device id contains"));
        let err = replay(ZONES, r#"{"device":"d1","lat":57.7,"lon":11.97}"#).unwrap_err().to_string();
        assert!(err.starts_with("fixes: line 1: not a fix object") && err.contains("time"), "{err}");
    }

    #[test]
    fn failing_output_is_not_an_input_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = run(ZONES, FIXES.as_bytes(), Closed).unwrap_err();
        assert!(!err.is_input());
        assert!(err.to_string().starts_with("writing events:"), "{err}");
    }
}
