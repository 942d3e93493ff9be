//! Feeds arbitrary bytes to the OsmAnd query parser, as a query and as a form body. It must
//! answer with a report or an error, never panic.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use trygg_protocols::osmand::parse_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_request("", data) {
        assert!(!r.device_id.is_empty());
        assert!(r.battery_pct.is_none_or(|b| b <= 100));
        // A fixed instant, so runs are reproducible.
        let _ = r.to_fix(DateTime::<Utc>::UNIX_EPOCH);
        let _ = r.device_alarm();
    }
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = parse_request(query, b"");
    }
});
