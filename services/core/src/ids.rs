//! Identifiers. Tenants and wearers get UUIDs we mint; a device id is whatever the hardware
//! calls itself (an IMEI, a 10-digit watch id, a name chosen for a native device), so it is
//! a validated string rather than a number: leading zeros and letters occur in the field.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A municipality (kommun). Every row in the system belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

/// A person wearing an alarm device (brukare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WearerId(pub Uuid);

macro_rules! uuid_id {
    ($t:ident) => {
        impl $t {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the canonical hyphenated form.
            pub fn parse(s: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(TenantId);
uuid_id!(WearerId);

/// The id a device reports itself with: 1 to 64 characters of `A-Z a-z 0-9 - _ . :`.
///
/// The character set covers IMEIs, watch ids and readable names while keeping ids safe to
/// print in logs and to use in URLs without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

/// Why a string is not a [`DeviceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    /// The id is empty.
    #[error("device id is empty")]
    Empty,
    /// The id is longer than [`DeviceId::MAX_LEN`].
    #[error("device id is longer than {} characters", DeviceId::MAX_LEN)]
    TooLong,
    /// The id contains a character outside the allowed set.
    #[error("device id contains {0:?}; allowed are letters, digits and - _ . :")]
    BadChar(char),
}

impl DeviceId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps a device id.
    ///
    /// ```
    /// use trygg_core::DeviceId;
    /// assert!(DeviceId::parse("863921034567890").is_ok());
    /// assert!(DeviceId::parse("watch 1").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, DeviceIdError> {
        if s.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(DeviceIdError::TooLong);
        }
        if let Some(c) =
            s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(DeviceIdError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_accepts_imei_and_names() {
        for ok in ["863921034567890", "0012345678", "demo-watch_1", "a.b:c"] {
            assert_eq!(DeviceId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn device_id_rejects_empty_long_and_odd_characters() {
        assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Empty));
        assert_eq!(DeviceId::parse(&"1".repeat(65)), Err(DeviceIdError::TooLong));
        assert_eq!(DeviceId::parse("a/b"), Err(DeviceIdError::BadChar('/')));
        assert_eq!(DeviceId::parse("ä"), Err(DeviceIdError::BadChar('ä')));
    }

    #[test]
    fn device_id_is_validated_when_deserialized() {
        assert!(serde_json::from_str::<DeviceId>("\"d 1\"").is_err());
        assert_eq!(serde_json::from_str::<DeviceId>("\"d1\"").unwrap().as_str(), "d1");
    }

    #[test]
    fn uuid_ids_round_trip_through_text() {
        let t = TenantId::new();
        assert_eq!(TenantId::parse(&t.to_string()).unwrap(), t);
        assert!(WearerId::parse("not-a-uuid").is_err());
    }
}
