//! The trygg binary as a library, so tests and the demo run the same server code as `serve`.
//!
//! [`cli`] parses the command line and maps failures to exit codes; [`server`] assembles the
//! parts (store, ingest, health and metrics) into one HTTP service that binds first and runs
//! until a shutdown future resolves; [`console`] serves the web console's embedded files; [`demo`] drives a throwaway server for a first look.

pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod device_config;
pub mod server;
mod supervise;
