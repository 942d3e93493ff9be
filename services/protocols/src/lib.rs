//! Pure codecs for the device protocols trygg speaks: the watch text protocol (3G, SeTracker,
//! Beesure; [`watch`]), the binary Concox GT06 protocol ([`gt06`]) and the OsmAnd HTTP query
//! ([`osmand`]).
//!
//! Why a crate of its own: frames come from the network, so every byte here is untrusted. Keeping
//! the codecs free of sockets, tasks and databases lets them be tested with real published
//! frames, property-tested and fuzzed in isolation, and lets the listeners stay thin: they own a
//! buffer, call `decode_frame` (check → parse → advance, as in mini-redis), persist, then send
//! the reply this crate builds.
//!
//! Times in the TCP protocols are the *device clock* ([`chrono::NaiveDateTime`]): watches often
//! send local time, and only the listener knows the device's configured offset. It turns a
//! decoded [`DevicePosition`] into a [`trygg_core::Fix`] with [`DevicePosition::to_fix`].
#![deny(missing_docs)]

pub mod gt06;
pub mod osmand;
mod position;
#[cfg(test)]
mod properties;
pub mod watch;

pub use position::{
    CELL_ACCURACY_M, DevicePosition, LAST_KNOWN_ACCURACY_M, WIFI_ACCURACY_M, utc_offset_from_minutes,
};

/// A frame cut from the front of a receive buffer.
///
/// `consumed` counts the garbage that was skipped as well as the frame, so the listener
/// advances its buffer by exactly `consumed`; `skipped` tells it how many of those bytes were
/// garbage before the frame (worth a metric: a device talking the wrong protocol shows up here).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<F> {
    /// The frame.
    pub frame: F,
    /// Bytes to remove from the front of the buffer: `skipped` plus the frame itself.
    pub consumed: usize,
    /// Bytes of garbage skipped before the frame started.
    pub skipped: usize,
}
