//! The command line: parse, set up logging, run one command, map the outcome to an exit status.
//!
//! Exit statuses: 0 success; 1 a runtime failure (database unreachable, port taken);
//! 2 unusable input to `replay`; 64 invalid configuration or usage (`EX_USAGE`).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trygg_core::{DeviceId, TenantId, WearerId};
use trygg_store::{NewDevice, Protocol, Store, token};

use crate::config::{ConfigError, DbArgs, ServeArgs};
use crate::demo::DemoArgs;
use crate::server::{Server, shutdown_signal};

const EX_USAGE: u8 = 64;
const EX_BAD_INPUT: u8 = 2;

/// trygg: the backend for municipal GPS alarm watches (mobila trygghetslarm).
#[derive(Debug, Parser)]
#[command(name = "trygg", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the serve settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run every part of trygg in one process until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Start a throwaway server on a temporary SQLite file with simulated watches.
    Demo(DemoArgs),
    /// Run the geofence policy offline: one JSON event per line on stdout.
    Replay {
        /// Zones: a GeoJSON FeatureCollection.
        #[arg(long)]
        zones: PathBuf,
        /// Fixes: one JSON object per line, in time order per device.
        #[arg(long)]
        fixes: PathBuf,
    },
    /// Run a local fake of FCM that prints each push it receives (try push without Google).
    FakeFcm {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8765")]
        bind: std::net::SocketAddr,
        /// Where to write the matching TEST-ONLY service-account file for TRYGG_FCM_CREDENTIALS.
        #[arg(long, default_value = "fake-fcm-service-account.json")]
        credentials_out: PathBuf,
    },
    /// Manage tenants (municipalities).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage wearers.
    Wearer {
        #[command(subcommand)]
        command: WearerCommand,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Its name, e.g. "Skövde kommun".
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum WearerCommand {
    /// Create a wearer and print its id.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// The wearer's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register a device; for a native device, print its token (shown only this once).
    Register {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// The id the device reports (IMEI, watch id, or a name for native devices).
        #[arg(long)]
        device: String,
        /// The wearer's id to bind it to.
        #[arg(long)]
        wearer: Option<String>,
        /// native, watch, gt06 or osmand.
        #[arg(long, default_value = "native")]
        protocol: Protocol,
    },
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(EX_USAGE);
        }
    };
    // The demo prints its own story (escalations included); replay prints events.
    let level = match cli.command {
        Command::Demo(_) => "error",
        Command::Replay { .. } => "warn",
        _ => "info",
    };
    init_tracing(level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) if e.is::<ConfigError>() => {
            eprintln!("{e}");
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRYGG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let server = Server::build(args.config()?).await?;
            let shutdown = shutdown_signal().context("listening for SIGINT/SIGTERM")?;
            // The line scripts and tests read to find the port (useful with port 0), then one
            // line per device listener; written at once, so a reader that stops after the first
            // line never makes a later write fail.
            let mut lines = format!("trygg listening on http://{}\n", server.local_addr());
            for (name, addr) in server.device_addrs() {
                lines.push_str(&format!("trygg {name} listening on {addr}\n"));
            }
            std::io::stdout().write_all(lines.as_bytes())?;
            std::io::stdout().flush()?;
            server.run(shutdown).await?;
        }
        Command::Migrate(db) => {
            let store = open(&db).await?;
            store.close().await;
            println!("migrations applied");
        }
        Command::Demo(args) => crate::demo::run(args).await?,
        Command::FakeFcm { bind, credentials_out } => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding the fake FCM on {bind}"))?;
            let shutdown = shutdown_signal().context("listening for SIGINT/SIGTERM")?;
            // The first line says where to point trygg; then one JSON line per push received.
            println!(
                "fake FCM listening on http://{}: TRYGG_FCM_ENDPOINT=http://{0} TRYGG_FCM_CREDENTIALS={}",
                listener.local_addr()?,
                credentials_out.display()
            );
            std::io::stdout().flush()?;
            trygg_push::fake::run_printing(listener, &credentials_out, shutdown).await.with_context(
                || format!("running the fake FCM (credentials file {})", credentials_out.display()),
            )?;
        }
        Command::Replay { zones, fixes } => return replay(&zones, &fixes),
        Command::Tenant { command: TenantCommand::Create { db, name } } => {
            let store = open(&db).await?;
            println!("{}", store.create_tenant(&name).await?);
            store.close().await;
        }
        Command::Wearer { command: WearerCommand::Create { db, tenant, name } } => {
            let tenant = TenantId::parse(&tenant).map_err(|e| ConfigError(format!("--tenant: {e}")))?;
            let store = open(&db).await?;
            println!("{}", store.create_wearer(tenant, &name).await?);
            store.close().await;
        }
        Command::Device { command: DeviceCommand::Register { db, tenant, device, wearer, protocol } } => {
            let tenant = TenantId::parse(&tenant).map_err(|e| ConfigError(format!("--tenant: {e}")))?;
            let wearer = wearer
                .map(|w| WearerId::parse(&w).map_err(|e| ConfigError(format!("--wearer: {e}"))))
                .transpose()?;
            let id = DeviceId::parse(&device).map_err(|e| ConfigError(format!("--device: {e}")))?;
            let secret = (protocol == Protocol::Native).then(token::generate);
            let store = open(&db).await?;
            let new =
                NewDevice { id, tenant, wearer, protocol, token_hash: secret.as_deref().map(token::hash) };
            store.register_device(&new).await?;
            store.close().await;
            match secret {
                Some(secret) => println!("{secret}"),
                None => eprintln!("registered {device} ({}); it has no token", protocol.as_str()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open(db: &DbArgs) -> anyhow::Result<Arc<dyn Store>> {
    let options = db.options()?;
    trygg_store::connect(&db.database_url, &options)
        .await
        .with_context(|| format!("opening database {}", crate::config::redact(&db.database_url)))
}

fn replay(zones: &Path, fixes: &Path) -> anyhow::Result<ExitCode> {
    let unreadable = |path: &Path, e: std::io::Error| {
        eprintln!("error: cannot read {}: {e}", path.display());
        Ok(ExitCode::from(EX_BAD_INPUT))
    };
    let zones_text = match std::fs::read_to_string(zones) {
        Ok(t) => t,
        Err(e) => return unreadable(zones, e),
    };
    let fixes_file = match std::fs::File::open(fixes) {
        Ok(f) => f,
        Err(e) => return unreadable(fixes, e),
    };
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match trygg_geofence::replay::run(&zones_text, BufReader::new(fixes_file), stdout) {
        Ok(summary) => {
            eprintln!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_input() => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EX_BAD_INPUT))
        }
        Err(e) => Err(e.into()),
    }
}
