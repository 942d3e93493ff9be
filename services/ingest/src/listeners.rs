//! Binding and running the device listeners: watch (TCP), GT06 (TCP) and OsmAnd (HTTP).
//!
//! [`DeviceListeners::bind`] binds every configured address before anything runs, so a caller
//! that asked for port 0 can read the real ports back and a taken port fails the start.
//! [`DeviceListeners::run`] serves until the shutdown signal, then stops accepting and lets each
//! connection finish the frame it is on (its commit and reply) before closing it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::device::DeviceIngest;
use crate::gt06::Gt06;
use crate::tcp::{accept_loop, serve_connection, stopped};
use crate::watch::Watch;

/// Where each device listener binds; `None` turns it off.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceBinds {
    /// The watch (3G) TCP protocol.
    pub watch: Option<SocketAddr>,
    /// The GT06 TCP protocol.
    pub gt06: Option<SocketAddr>,
    /// OsmAnd HTTP.
    pub osmand: Option<SocketAddr>,
}

/// Bound device listeners, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct DeviceListeners {
    watch: Option<TcpListener>,
    gt06: Option<TcpListener>,
    osmand: Option<TcpListener>,
    ctx: Arc<DeviceIngest>,
}

impl DeviceListeners {
    /// Binds each configured address.
    pub async fn bind(binds: DeviceBinds, ctx: DeviceIngest) -> std::io::Result<Self> {
        async fn bind(addr: Option<SocketAddr>, what: &str) -> std::io::Result<Option<TcpListener>> {
            match addr {
                None => Ok(None),
                Some(a) => crate::listen(a).map(Some).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("binding the {what} listener on {a}: {e}"))
                }),
            }
        }
        Ok(Self {
            watch: bind(binds.watch, "watch").await?,
            gt06: bind(binds.gt06, "GT06").await?,
            osmand: bind(binds.osmand, "OsmAnd").await?,
            ctx: Arc::new(ctx),
        })
    }

    /// The bound addresses, by protocol name (`watch`, `gt06`, `osmand`), of the listeners that
    /// are on.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        [("watch", &self.watch), ("gt06", &self.gt06), ("osmand", &self.osmand)]
            .into_iter()
            .filter_map(|(name, l)| Some((name, l.as_ref()?.local_addr().ok()?)))
            .collect()
    }

    /// Serves until `shutdown` turns true, then drains and returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let Self { watch, gt06, osmand, ctx } = self;
        let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(listener) = watch {
            let ctx = ctx.clone();
            tasks.spawn(accept_loop(
                "watch",
                listener,
                limit.clone(),
                shutdown.clone(),
                move |s, p, stop, slot| serve_connection::<Watch>(ctx.clone(), s, p, stop, slot),
            ));
        }
        if let Some(listener) = gt06 {
            let ctx = ctx.clone();
            tasks.spawn(accept_loop(
                "gt06",
                listener,
                limit.clone(),
                shutdown.clone(),
                move |s, p, stop, slot| serve_connection::<Gt06>(ctx.clone(), s, p, stop, slot),
            ));
        }
        if let Some(listener) = osmand {
            let app = crate::osmand::router(ctx.clone());
            let mut stop = shutdown.clone();
            // Its connections count against the same limit as the TCP devices' (an unbounded
            // HTTP listener lets a flood of posts take memory without limit).
            let listener = crate::LimitedListener::sharing(listener, limit.clone());
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped(&mut stop).await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "OsmAnd listener failed");
                }
            });
        }
        drop(ctx);
        while tasks.join_next().await.is_some() {}
    }
}
