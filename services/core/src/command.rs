//! The way back from the alarm engine to devices: commands a connected device takes, and the
//! report interval the engine decides for battery-aware reporting.
//!
//! It lives here, beside [`Committed`](crate::Committed), for the same reason: the engine decides
//! and ingest delivers (a command on a watch's open connection, a field in a native device's next
//! ingest answer), and neither depends on the other.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use crate::DeviceId;

/// A command trygg can send to a connected device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCommand {
    /// Ask for a position now (`CR` on a watch).
    Locate,
    /// Set the position report interval (`UPLOAD,<secs>` on a watch).
    UploadInterval {
        /// Seconds between reports.
        secs: u32,
    },
}

impl DeviceCommand {
    /// The command's name in logs, metrics and the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Locate => "locate",
            Self::UploadInterval { .. } => "upload_interval",
        }
    }

    /// The command with its argument, for the command log.
    pub fn describe(self) -> String {
        match self {
            Self::Locate => "locate".to_owned(),
            Self::UploadInterval { secs } => format!("upload_interval {secs}"),
        }
    }
}

/// Why a command was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The device has no open connection to this server.
    #[error("the device is not connected")]
    NotConnected,
    /// The device's protocol has no such command.
    #[error("{protocol} devices do not take this command")]
    Unsupported {
        /// The protocol.
        protocol: &'static str,
    },
}

/// Sends commands to devices with an open connection (ingest's device links).
pub trait DeviceCommands: Debug + Send + Sync + 'static {
    /// Sends `command` on the device's open connection. Must not block.
    fn send(&self, device: &DeviceId, command: DeviceCommand) -> Result<(), CommandError>;
}

/// The report interval each native device is told in its ingest answers
/// (`report_interval_secs`), as the alarm engine last decided it for battery-aware reporting:
/// faster while a zone exit is suspected, the tenant's normal interval after. A device the engine
/// has decided nothing for is told nothing and keeps its own setting. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ReportIntervals(Arc<Mutex<HashMap<DeviceId, u32>>>);

impl ReportIntervals {
    /// Tells `device` to report every `secs` seconds from its next ingest answer on.
    pub fn set(&self, device: &DeviceId, secs: u32) {
        self.0.lock().expect("report intervals lock").insert(device.clone(), secs);
    }

    /// What the device's ingest answer tells it, if anything.
    pub fn get(&self, device: &DeviceId) -> Option<u32> {
        self.0.lock().expect("report intervals lock").get(device).copied()
    }
}
