//! The HTTP server: hyper 1 with hyper-util's auto builder (HTTP/1.1 and h2c on
//! one port), graceful shutdown, and the request pipeline in [`pipeline`].

pub mod adapted;
pub mod endpoints;
pub mod pipeline;
mod plugin_stream;
pub mod provider;
pub mod response;
pub mod router;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;

use crate::{
    plugins::registry::{ActivePlugin, Registry},
    services::Shared,
};

/// One plugin middleware, placed by its layer.
#[derive(Debug, Clone)]
pub struct Middleware {
    /// The plugin.
    pub plugin: Arc<ActivePlugin>,
    /// Its name from the manifest.
    pub name: String,
    /// Its layer.
    pub layer: u16,
    /// Whether it sees responses.
    pub on_response: bool,
}

/// Everything a request needs, built once at start-up.
pub struct App {
    /// Shared host state.
    pub shared: Arc<Shared>,
    /// The plugins.
    pub registry: Arc<Registry>,
    /// The route table.
    pub routes: router::RouteTable,
    /// Routes that could not be mounted.
    pub route_conflicts: Vec<router::Conflict>,
    /// Plugin middleware, lowest layer first.
    pub middleware: Vec<Middleware>,
    /// False while shutting down.
    pub ready: AtomicBool,
}

impl App {
    /// Builds the app from the initialised plugins.
    pub fn new(shared: Arc<Shared>, registry: Arc<Registry>) -> Self {
        let (routes, route_conflicts) = router::RouteTable::build(&registry.active);
        let mut middleware: Vec<Middleware> = registry
            .active
            .iter()
            .flat_map(|plugin| {
                plugin.manifest.middleware.iter().map(|spec| Middleware {
                    plugin: plugin.clone(),
                    name: spec.name.clone(),
                    layer: spec.layer,
                    on_response: spec.on_response,
                })
            })
            .collect();
        // Stable: equal layers keep initialisation order.
        middleware.sort_by_key(|m| m.layer);
        Self {
            shared,
            registry,
            routes,
            route_conflicts,
            middleware,
            ready: AtomicBool::new(true),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits
/// up to `grace` for in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(pipeline::handle(app, request, remote).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
    app.ready.store(false, std::sync::atomic::Ordering::Release);
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {} s for in-flight requests",
        grace.as_secs()
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period; closing them");
    }
}

/// Resolves on SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: the accept loop may answer requests before it first polls the
/// future, and a signal in that window would kill the process with the
/// default action instead of shutting down gracefully.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for SIGINT and SIGTERM; only ctrl-c stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The address the server is listening on, for the start-up line.
pub fn describe(address: SocketAddr) -> String {
    format!("http://{address}")
}
