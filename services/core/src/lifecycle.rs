//! The alarm (larm) and its lifecycle: `raised → notified → acknowledged → on_site → closed`.
//!
//! The rules of which step may follow which live here, once; the store applies them as a
//! conditional update (so two staff acknowledging at once cannot both win) and the API maps a
//! refused step to 409.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DeviceAlarmKind;

/// A stored name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct UnknownName {
    /// What was being parsed.
    pub what: &'static str,
    /// The text.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: String,
}

/// A fieldless enum with stable snake_case names used in JSON, SQL and metrics, ordered as declared.
macro_rules! named_enum {
    ($(#[$m:meta])* pub enum $name:ident ($what:literal) { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            /// Every value, in a stable order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The name used in JSON, in the database and in metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| UnknownName {
                    what: $what,
                    value: s.to_owned(),
                    expected: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

named_enum! {
    /// What an alarm is about.
    pub enum AlarmKind ("alarm kind") {
        /// The wearer pressed the alarm button.
        Sos = "sos",
        /// The device detected a fall.
        Fall = "fall",
        /// The wearer left a `stay_inside` zone (passive alarm).
        ZoneExit = "zone_exit",
        /// The wearer entered a `keep_out` zone (passive alarm).
        ZoneEnter = "zone_enter",
        /// The watch was taken off.
        WatchRemoved = "watch_removed",
        /// The battery is low (technical).
        LowBattery = "low_battery",
        /// The device stopped reporting (technical).
        DeviceOffline = "device_offline",
        /// A test alarm.
        Test = "test",
        /// The device sent no test alarm in the tenant's daily window (technical).
        TestAlarmMissing = "test_alarm_missing",
    }
}

impl AlarmKind {
    /// Critical alarms go out at high priority and escalate when nobody acknowledges them.
    pub fn is_critical(self) -> bool {
        matches!(self, Self::Sos | Self::Fall | Self::ZoneExit | Self::ZoneEnter | Self::WatchRemoved)
    }

    /// Technical alerts: about the equipment, not the wearer.
    pub fn is_technical(self) -> bool {
        matches!(self, Self::LowBattery | Self::DeviceOffline | Self::TestAlarmMissing)
    }
}

impl From<DeviceAlarmKind> for AlarmKind {
    fn from(k: DeviceAlarmKind) -> Self {
        match k {
            DeviceAlarmKind::Sos => Self::Sos,
            DeviceAlarmKind::Fall => Self::Fall,
            DeviceAlarmKind::WatchRemoved => Self::WatchRemoved,
            DeviceAlarmKind::Test => Self::Test,
        }
    }
}

named_enum! {
    /// Where an alarm is in its lifecycle.
    pub enum AlarmState ("alarm state") {
        /// Stored, not yet pushed to anyone.
        Raised = "raised",
        /// Pushed to at least one staff phone.
        Notified = "notified",
        /// A staff member took it (kvitterat).
        Acknowledged = "acknowledged",
        /// A staff member is with the wearer (närvaro).
        OnSite = "on_site",
        /// Done, with an outcome.
        Closed = "closed",
    }
}

named_enum! {
    /// How a closed alarm ended.
    pub enum Outcome ("outcome") {
        /// The wearer was helped.
        Assisted = "assisted",
        /// Nothing was wrong (pressed by mistake, GPS glitch).
        FalseAlarm = "false_alarm",
        /// A planned test.
        Test = "test",
        /// The wearer was not found (handed over to others, e.g. the police).
        NotFound = "not_found",
        /// Anything else; the note says what.
        Other = "other",
    }
}

/// A step a person or the push worker asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A push reached a phone.
    Notify,
    /// A staff member takes the alarm.
    Acknowledge,
    /// A staff member is on site.
    OnSite,
    /// The alarm is done.
    Close(Outcome),
}

impl Step {
    /// The state the step leads to.
    pub fn target(self) -> AlarmState {
        match self {
            Self::Notify => AlarmState::Notified,
            Self::Acknowledge => AlarmState::Acknowledged,
            Self::OnSite => AlarmState::OnSite,
            Self::Close(_) => AlarmState::Closed,
        }
    }

    /// The states the step may be taken from. Acknowledging does not wait for a push (staff may
    /// see the alarm in the app first); on-site needs someone to have taken the alarm; a human
    /// closes an alarm only once someone took it, so nothing is closed unseen.
    pub fn allowed_from(self) -> &'static [AlarmState] {
        use AlarmState::*;
        match self {
            Self::Notify => &[Raised],
            Self::Acknowledge => &[Raised, Notified],
            Self::OnSite => &[Acknowledged],
            Self::Close(_) => &[Acknowledged, OnSite],
        }
    }

    /// The name of the event the step records.
    pub fn event(self) -> &'static str {
        self.target().as_str()
    }

    /// Whether the step may be taken from `state`.
    pub fn allowed(self, state: AlarmState) -> bool {
        self.allowed_from().contains(&state)
    }
}

impl AlarmState {
    /// Still needs someone.
    pub fn is_open(self) -> bool {
        self != Self::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for k in AlarmKind::ALL {
            assert_eq!(k.as_str().parse::<AlarmKind>().unwrap(), *k);
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        for s in AlarmState::ALL {
            assert_eq!(s.as_str().parse::<AlarmState>().unwrap(), *s);
        }
        let err = "lost".parse::<Outcome>().unwrap_err();
        assert!(err.to_string().contains("assisted, false_alarm"), "{err}");
    }

    #[test]
    fn the_lifecycle_only_moves_forward() {
        use AlarmState::*;
        let close = Step::Close(Outcome::Assisted);
        assert!(Step::Acknowledge.allowed(Raised) && Step::Acknowledge.allowed(Notified));
        assert!(!Step::Acknowledge.allowed(Acknowledged), "a second acknowledgement is refused");
        assert!(!Step::OnSite.allowed(Notified), "on site needs an acknowledgement first");
        assert!(close.allowed(Acknowledged) && close.allowed(OnSite));
        assert!(
            !close.allowed(Closed) && !Step::Acknowledge.allowed(Closed) && !Step::OnSite.allowed(Closed)
        );
        assert!(!close.allowed(Raised), "nobody closes an alarm nobody took");
    }

    #[test]
    fn device_alarms_but_the_test_are_critical_and_technical_alerts_are_not() {
        for k in DeviceAlarmKind::ALL {
            assert_eq!(AlarmKind::from(k).is_critical(), k != DeviceAlarmKind::Test, "{k}");
        }
        assert!(AlarmKind::TestAlarmMissing.is_technical() && !AlarmKind::TestAlarmMissing.is_critical());
        assert!(!AlarmKind::LowBattery.is_critical() && AlarmKind::LowBattery.is_technical());
        assert!(!AlarmKind::Test.is_critical() && !AlarmKind::Test.is_technical());
    }
}
