//! Alarms a device raises by itself: the button, the fall sensor, the strap sensor, and the
//! daily test alarm (a check of the whole chain that pages nobody).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A manual or sensor alarm sent by the device. All but `test` are critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceAlarmKind {
    /// The wearer pressed the alarm button.
    Sos,
    /// The device detected a fall.
    Fall,
    /// The watch was taken off (strap or skin sensor).
    WatchRemoved,
    /// The wearer (or staff) sent the daily test alarm: recorded, closed as `test` at once,
    /// never pushed.
    Test,
}

/// A text that names no [`DeviceAlarmKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alarm kind {0:?}; expected sos, fall, watch_removed or test")]
pub struct UnknownAlarmKind(pub String);

impl DeviceAlarmKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 4] = [Self::Sos, Self::Fall, Self::WatchRemoved, Self::Test];

    /// The name used in JSON, in the database and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sos => "sos",
            Self::Fall => "fall",
            Self::WatchRemoved => "watch_removed",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for DeviceAlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceAlarmKind {
    type Err = UnknownAlarmKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownAlarmKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in DeviceAlarmKind::ALL {
            assert_eq!(k.as_str().parse::<DeviceAlarmKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("panic".parse::<DeviceAlarmKind>().is_err());
    }
}
