//! Settings of the device listeners (watch and GT06 over TCP, OsmAnd over HTTP): where each
//! listens, and the limits every device connection lives under.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use trygg_ingest::{DeviceBinds, DeviceConfig};

use crate::config::ConfigError;

/// `trygg serve` device listener settings.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Address of the watch (3G / SeTracker / Beesure) TCP listener; empty turns it off.
    #[arg(long, env = "TRYGG_WATCH_BIND", default_value = "0.0.0.0:5093")]
    pub watch_bind: String,
    /// Address of the GT06 (Concox) TCP listener; empty turns it off.
    #[arg(long, env = "TRYGG_GT06_BIND", default_value = "0.0.0.0:5023")]
    pub gt06_bind: String,
    /// Address of the OsmAnd / Traccar Client HTTP listener; empty turns it off.
    #[arg(long, env = "TRYGG_OSMAND_BIND", default_value = "0.0.0.0:5055")]
    pub osmand_bind: String,
    /// Most open device connections (watch, GT06 and OsmAnd together); more wait in the backlog.
    #[arg(long, env = "TRYGG_MAX_DEVICE_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_device_connections: u64,
    /// Seconds a device connection may go without delivering a complete frame before it is
    /// closed (mobile links go half-open; watches send a keep-alive about every 5 minutes).
    #[arg(long, env = "TRYGG_DEVICE_READ_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub device_read_timeout_secs: u64,
    /// Largest device frame accepted, in bytes; a connection sending a longer one is closed.
    #[arg(long, env = "TRYGG_MAX_DEVICE_FRAME_BYTES", default_value_t = 64 << 10, value_parser = clap::value_parser!(u64).range(256..=16 << 20))]
    pub max_device_frame_bytes: u64,
}

/// Checked device listener settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceSettings {
    /// Where each listener binds.
    pub binds: DeviceBinds,
    /// Connection limits.
    pub config: DeviceConfig,
}

impl DeviceSettings {
    /// Every listener on 127.0.0.1 with a free port (demo, tests).
    pub fn loopback() -> Self {
        let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        Self { binds: DeviceBinds { watch: any, gt06: any, osmand: any }, config: DeviceConfig::default() }
    }
}

fn bind(setting: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ConfigError(format!("{setting} {value:?} is not an address like 0.0.0.0:5093 (or empty for off)"))
    })
}

impl DeviceArgs {
    /// Checks the addresses.
    pub fn settings(&self) -> Result<DeviceSettings, ConfigError> {
        Ok(DeviceSettings {
            binds: DeviceBinds {
                watch: bind("TRYGG_WATCH_BIND", &self.watch_bind)?,
                gt06: bind("TRYGG_GT06_BIND", &self.gt06_bind)?,
                osmand: bind("TRYGG_OSMAND_BIND", &self.osmand_bind)?,
            },
            config: DeviceConfig {
                max_connections: usize::try_from(self.max_device_connections).unwrap_or(usize::MAX),
                read_timeout: Duration::from_secs(self.device_read_timeout_secs),
                max_frame_bytes: usize::try_from(self.max_device_frame_bytes).unwrap_or(usize::MAX),
            },
        })
    }
}
