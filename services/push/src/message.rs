//! What a staff phone receives: Swedish texts and the FCM message shape per alarm kind.
//!
//! A critical alarm must wake the phone and break through Focus, so it goes at Android
//! priority `HIGH` on the alarm notification channel and APNs priority 10 with the
//! `time-sensitive` interruption level, with a short TTL (after that, escalation is the better
//! channel) and the alarm id as collapse key (a retried send replaces, never doubles, the
//! notification). Technical alerts (battery, offline) must not drown critical ones: they go at
//! normal priority and several are bundled into one message under one collapse key.
//!
//! Personal data stays out by default: the app fetches details over the authenticated API. A
//! tenant may allow the wearer's name in critical alarms ([`MessageBuilder::include_wearer_name`]).
//! The 4 KiB FCM payload limit is enforced here, with an error the worker can log, rather than
//! as a 400 from Google.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
pub use trygg_core::{AlarmKind, Position};

/// FCM's limit on a message's payload, in bytes.
pub const PAYLOAD_LIMIT_BYTES: usize = 4096;

/// At most this many alarm ids are listed in a technical bundle; `count` has the total.
pub const MAX_BUNDLED_IDS: usize = 20;

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A technical alert was given where a critical alarm was expected.
    #[error("{0} is a technical alert; bundle it with MessageBuilder::technical")]
    NotCritical(AlarmKind),
    /// A critical alarm was given to be bundled as a technical alert.
    #[error("{0} is a critical alarm; send it alone with MessageBuilder::critical")]
    NotTechnical(AlarmKind),
    /// A bundle needs at least one alert.
    #[error("a technical bundle needs at least one alert")]
    EmptyBundle,
    /// A bundle goes to one phone: every alert must carry the same push token.
    #[error("the alerts of one bundle are addressed to different push tokens")]
    MixedRecipients,
    /// The payload exceeds FCM's limit; FCM would refuse it with 400 INVALID_ARGUMENT.
    #[error("push payload is {bytes} bytes, over FCM's limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload size as FCM counts it.
        bytes: usize,
        /// The limit, [`PAYLOAD_LIMIT_BYTES`].
        limit: usize,
    },
}

/// The notification title staff see for an alarm of `kind`.
fn title_sv(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::Sos => "Larm: SOS",
        AlarmKind::Fall => "Fallarm",
        AlarmKind::ZoneExit => "Zonlarm: lämnat trygghetszon",
        AlarmKind::ZoneEnter => "Zonlarm: gått in i otillåten zon",
        AlarmKind::WatchRemoved => "Klockan avtagen",
        AlarmKind::LowBattery => "Lågt batteri",
        AlarmKind::DeviceOffline => "Enhet offline",
        AlarmKind::Test => "Testlarm",
        AlarmKind::TestAlarmMissing => "Testlarm saknas",
    }
}

/// One alarm to push to one staff phone: what the alarm engine maps its alarms onto.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmPush {
    /// The alarm's id; also the collapse key, so repeats of one alarm replace each other.
    pub alarm_id: String,
    /// What happened.
    pub kind: AlarmKind,
    /// The latest position, if any, with the time the device took the fix.
    pub position: Option<(Position, DateTime<Utc>)>,
    /// The recipient's FCM registration token.
    pub push_token: String,
    /// The wearer's name; only sent when the tenant allows it.
    pub wearer_name: Option<String>,
}

/// Builds FCM messages from alarms. The fields are per-tenant or per-deployment settings.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    /// Put the wearer's name in critical alarms' text and data (tenant setting; default off).
    pub include_wearer_name: bool,
    /// The Android notification channel the app creates for alarms (high importance).
    pub alarm_channel_id: String,
    /// The Android notification channel for technical alerts.
    pub technical_channel_id: String,
    /// How long FCM keeps an undelivered critical alarm; after that escalation takes over.
    pub alarm_ttl: Duration,
    /// How long FCM keeps an undelivered technical bundle.
    pub technical_ttl: Duration,
    /// The sound played for critical alarms (a sound file bundled in the app, or `default`).
    pub alarm_sound: String,
}

impl Default for MessageBuilder {
    fn default() -> Self {
        Self {
            include_wearer_name: false,
            alarm_channel_id: "trygg_alarm".to_owned(),
            technical_channel_id: "trygg_technical".to_owned(),
            alarm_ttl: Duration::from_secs(300),
            technical_ttl: Duration::from_secs(3600),
            alarm_sound: "default".to_owned(),
        }
    }
}

/// The collapse key and tag of technical bundles: a new bundle replaces the previous one, and
/// alarms keep the other three of the four collapse keys Android allows per device.
const TECHNICAL_COLLAPSE_KEY: &str = "technical";

/// A message for FCM's `messages:send`, ready to serialise as `{"message": …}`.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    token: String,
    notification: Notification,
    data: BTreeMap<&'static str, String>,
    android: AndroidConfig,
    apns: ApnsConfig,
}

#[derive(Debug, Clone, Serialize)]
struct Notification {
    title: String,
    body: String,
}

#[derive(Debug, Clone, Serialize)]
struct AndroidConfig {
    priority: &'static str,
    ttl: String,
    collapse_key: String,
    notification: AndroidNotification,
}

#[derive(Debug, Clone, Serialize)]
struct AndroidNotification {
    channel_id: String,
    tag: String,
    notification_priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct ApnsConfig {
    headers: BTreeMap<&'static str, String>,
    payload: ApnsPayload,
}

#[derive(Debug, Clone, Serialize)]
struct ApnsPayload {
    aps: Aps,
}

#[derive(Debug, Clone, Serialize)]
struct Aps {
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<String>,
    #[serde(rename = "interruption-level")]
    interruption_level: &'static str,
}

/// How urgent a message is, and the platform settings that follow from it.
struct Urgency {
    android_priority: &'static str,
    notification_priority: &'static str,
    apns_priority: &'static str,
    interruption_level: &'static str,
    channel_id: String,
    ttl: Duration,
    sound: Option<String>,
}

impl Message {
    /// The recipient's registration token (what to disable on `UNREGISTERED`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The collapse key: the alarm id, or `technical` for bundles.
    pub fn collapse_key(&self) -> &str {
        &self.android.collapse_key
    }

    /// The `data` map the app reads.
    pub fn data(&self) -> &BTreeMap<&'static str, String> {
        &self.data
    }

    fn new(
        token: &str,
        collapse_key: &str,
        notification: Notification,
        data: BTreeMap<&'static str, String>,
        urgency: Urgency,
        now: DateTime<Utc>,
    ) -> Result<Self, MessageError> {
        let expires = now.timestamp() + i64::try_from(urgency.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let message = Self {
            token: token.to_owned(),
            notification,
            data,
            android: AndroidConfig {
                priority: urgency.android_priority,
                ttl: format!("{}s", urgency.ttl.as_secs()),
                collapse_key: collapse_key.to_owned(),
                notification: AndroidNotification {
                    channel_id: urgency.channel_id,
                    tag: collapse_key.to_owned(),
                    notification_priority: urgency.notification_priority,
                    sound: urgency.sound.clone(),
                },
            },
            apns: ApnsConfig {
                headers: BTreeMap::from([
                    ("apns-priority", urgency.apns_priority.to_owned()),
                    ("apns-push-type", "alert".to_owned()),
                    ("apns-collapse-id", collapse_key.to_owned()),
                    ("apns-expiration", expires.to_string()),
                ]),
                payload: ApnsPayload {
                    aps: Aps { sound: urgency.sound, interruption_level: urgency.interruption_level },
                },
            },
        };
        let json = serde_json::to_value(&message).expect("a message always serialises");
        let bytes = payload_bytes(&json);
        if bytes > PAYLOAD_LIMIT_BYTES {
            return Err(MessageError::PayloadTooLarge { bytes, limit: PAYLOAD_LIMIT_BYTES });
        }
        Ok(message)
    }
}

/// The payload size as FCM counts it: `data` keys and values plus the notification's title and
/// body. Shared with the fake FCM so both sides agree on the limit.
pub(crate) fn payload_bytes(message: &serde_json::Value) -> usize {
    let data: usize = message
        .get("data")
        .and_then(|d| d.as_object())
        .map(|d| d.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum())
        .unwrap_or(0);
    let notification: usize = ["title", "body"]
        .iter()
        .filter_map(|field| message.get("notification")?.get(field)?.as_str())
        .map(str::len)
        .sum();
    data + notification
}

impl MessageBuilder {
    /// The message for one critical alarm to one phone.
    ///
    /// `now` dates the position's age; build the message when sending, not when queueing.
    pub fn critical(&self, alarm: &AlarmPush, now: DateTime<Utc>) -> Result<Message, MessageError> {
        if alarm.kind.is_technical() {
            return Err(MessageError::NotCritical(alarm.kind));
        }
        let name = alarm.wearer_name.as_deref().filter(|_| self.include_wearer_name);
        let mut data = BTreeMap::from([
            ("type", "alarm".to_owned()),
            ("alarm_id", alarm.alarm_id.clone()),
            ("kind", alarm.kind.as_str().to_owned()),
        ]);
        let mut body = String::new();
        if let Some(name) = name {
            data.insert("wearer_name", name.to_owned());
            body.push_str(&format!("{name}. "));
        }
        match &alarm.position {
            Some((position, time)) => {
                let age_s = (now - *time).num_seconds().max(0);
                data.insert("lat", format!("{:.6}", position.lat));
                data.insert("lon", format!("{:.6}", position.lon));
                data.insert("position_age_secs", age_s.to_string());
                data.insert("position_time", time.to_rfc3339_opts(SecondsFormat::Secs, true));
                let accuracy = match position.accuracy_m {
                    Some(accuracy) => {
                        data.insert("accuracy_m", format!("{accuracy:.0}"));
                        format!("±{accuracy:.0} m")
                    }
                    None => "okänd noggrannhet".to_owned(),
                };
                body.push_str(&format!("Position {accuracy}, {} gammal.", age_sv(age_s)));
            }
            None => body.push_str("Ingen position."),
        }
        body.push_str(" Öppna appen för att kvittera.");
        let urgency = Urgency {
            android_priority: "HIGH",
            notification_priority: "PRIORITY_MAX",
            apns_priority: "10",
            interruption_level: "time-sensitive",
            channel_id: self.alarm_channel_id.clone(),
            ttl: self.alarm_ttl,
            sound: Some(self.alarm_sound.clone()),
        };
        let notification = Notification { title: title_sv(alarm.kind).to_owned(), body };
        Message::new(&alarm.push_token, &alarm.alarm_id, notification, data, urgency, now)
    }

    /// One message summarising several technical alerts for one phone.
    ///
    /// Wearer names are never included: a bundle is a to-do list, not an emergency.
    pub fn technical(&self, alerts: &[AlarmPush], now: DateTime<Utc>) -> Result<Message, MessageError> {
        let first = alerts.first().ok_or(MessageError::EmptyBundle)?;
        if let Some(alarm) = alerts.iter().find(|a| !a.kind.is_technical()) {
            return Err(MessageError::NotTechnical(alarm.kind));
        }
        if alerts.iter().any(|a| a.push_token != first.push_token) {
            return Err(MessageError::MixedRecipients);
        }
        let mut per_kind: BTreeMap<AlarmKind, usize> = BTreeMap::new();
        for alert in alerts {
            *per_kind.entry(alert.kind).or_default() += 1;
        }
        let title = match alerts {
            [only] => title_sv(only.kind).to_owned(),
            _ => format!("Tekniska larm ({})", alerts.len()),
        };
        let body = per_kind
            .iter()
            .map(|(kind, n)| format!("{}: {n}", title_sv(*kind)))
            .collect::<Vec<_>>()
            .join(", ");
        let kinds: Vec<&str> = per_kind.keys().map(|k| k.as_str()).collect();
        let ids: Vec<&str> = alerts.iter().take(MAX_BUNDLED_IDS).map(|a| a.alarm_id.as_str()).collect();
        let data = BTreeMap::from([
            ("type", "technical".to_owned()),
            ("count", alerts.len().to_string()),
            ("kinds", kinds.join(",")),
            ("alarm_ids", ids.join(",")),
        ]);
        let urgency = Urgency {
            android_priority: "NORMAL",
            notification_priority: "PRIORITY_DEFAULT",
            apns_priority: "5",
            interruption_level: "active",
            channel_id: self.technical_channel_id.clone(),
            ttl: self.technical_ttl,
            sound: None,
        };
        let notification = Notification { title, body };
        Message::new(&first.push_token, TECHNICAL_COLLAPSE_KEY, notification, data, urgency, now)
    }
}

/// "45 s", "12 min", "3 h 5 min".
fn age_sv(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_age_reads_in_seconds_minutes_or_hours() {
        assert_eq!(age_sv(45), "45 s");
        assert_eq!(age_sv(125), "2 min");
        assert_eq!(age_sv(3 * 3600 + 5 * 60 + 9), "3 h 5 min");
    }

    #[test]
    fn payload_counts_data_keys_and_values_and_notification_text() {
        let json = serde_json::json!({
            "data": {"ab": "cde"},
            "notification": {"title": "xy", "body": "z"},
            "android": {"priority": "HIGH"},
        });
        assert_eq!(payload_bytes(&json), 8);
    }
}
