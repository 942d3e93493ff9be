//! `trygg replay` as a tuner uses it: files in, one JSON event per line out, exit 2 on
//! unusable input with a line that says where.

mod common;

use std::path::{Path, PathBuf};

use common::cli;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/geofence/tests/data").join(name)
}

fn replay(zones: &Path, fixes: &Path) -> (Option<i32>, String, String) {
    let out = cli(&["replay", "--zones", zones.to_str().unwrap(), "--fixes", fixes.to_str().unwrap()]);
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn replay_prints_the_expected_events_for_the_sample_files() {
    let (code, stdout, stderr) = replay(&data("zones.geojson"), &data("fixes.jsonl"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, std::fs::read_to_string(data("events.jsonl")).unwrap());
    let summary: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(summary["exits"], 2);
}

#[test]
fn unusable_input_exits_2_naming_the_feature_or_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good_zones = data("zones.geojson");
    let good_fixes = data("fixes.jsonl");
    let unclosed = write(
        "unclosed.geojson",
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"z9","device":"d1","kind":"stay_inside"},
            "geometry":{"type":"Polygon","coordinates":[[[11.9,57.7],[12.0,57.7],[12.0,57.8],[11.9,57.8]]]}}]}"#,
    );
    let bad_radius = write(
        "radius.geojson",
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"c1","device":"d1","kind":"stay_inside","radius_m":0},
            "geometry":{"type":"Point","coordinates":[11.9,57.7]}}]}"#,
    );
    let not_json_line = write(
        "fixes.jsonl",
        "{\"device\":\"d1\",\"time\":\"2026-05-04T10:00:00Z\",\"lat\":57.7,\"lon\":11.9}\nnot json\n",
    );
    let swapped = write(
        "swapped.jsonl",
        "{\"device\":\"d1\",\"time\":\"2026-05-04T10:00:00Z\",\"lat\":11.9,\"lon\":157.7}\n{\"device\":\"d1\",\"time\":\"2026-05-04T10:01:00Z\",\"lat\":157.7,\"lon\":11.9}\n",
    );
    for (zones, fixes, expected) in [
        (&unclosed, &good_fixes, "feature z9"),
        (&bad_radius, &good_fixes, "feature c1"),
        (&good_zones, &not_json_line, "line 2"),
        (&good_zones, &swapped, "line 2"),
        (&dir.path().join("missing.geojson"), &good_fixes, "missing.geojson"),
    ] {
        let (code, _, stderr) = replay(zones, fixes);
        assert_eq!(code, Some(2), "{zones:?} {fixes:?}: {stderr}");
        assert!(stderr.contains(expected), "{stderr:?} should name {expected}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}
