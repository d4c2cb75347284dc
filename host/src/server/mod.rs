//! The HTTP server: hyper 1 with hyper-util's auto builder (HTTP/1.1 and h2c on
//! one port), graceful shutdown, connection limits in [`conn`], and the request
//! pipeline in [`pipeline`].

pub mod adapted;
pub mod body_budget;
mod conn;
pub mod endpoints;
mod not_found;
pub mod pipeline;
mod plugin_stream;
pub mod provider;
pub mod request_line;
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
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

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
    /// The bytes of request bodies in flight (`server.body_budget_bytes`).
    pub body_budget: body_budget::BodyBudget,
    /// The plugins' own health reports `/health` last gathered, and when.
    pub health_reports: tokio::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
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
        let body_budget = body_budget::BodyBudget::new(shared.config.server.body_budget_bytes);
        Self {
            shared,
            registry,
            routes,
            route_conflicts,
            middleware,
            ready: AtomicBool::new(true),
            body_budget,
            health_reports: tokio::sync::Mutex::new(None),
        }
    }
}

/// The app requests are served by: swapped whole by a live reload, so each
/// request runs start to end on the app it began with.
pub type CurrentApp = arc_swap::ArcSwap<App>;

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits
/// up to `grace` for in-flight requests.
///
/// Connections are held to `server.header_read_timeout_seconds` and
/// `server.idle_timeout_seconds`, and at most `server.max_connections` are
/// served at once (see [`conn`]); past that, a connection only gets `/health*`
/// answered, so a flood of idle sockets cannot hide the server from its checks.
pub async fn serve(
    apps: Arc<CurrentApp>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let shared = apps.load().shared.clone();
    let settings = &shared.config.server;
    let timeouts = conn::Timeouts {
        header: settings.header_read_timeout(),
        idle: settings.idle_timeout(),
    };
    let slots = conn::Slots::new(connection_cap(settings));
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut over_cap_builder = auto::Builder::new(TokioExecutor::new());
    over_cap_builder.http1().keep_alive(false);
    // Every connection task holds a receiver; all gone means all connections ended.
    let (stop, _) = watch::channel(false);
    let mut accept_failures = conn::Throttle::new(conn::WARNING_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    if let Some(failures) = accept_failures.hit(tokio::time::Instant::now()) {
                        tracing::warn!(
                            %error,
                            failures,
                            "accept failed; retrying every 50 ms (repeated at most every {} s \
                             with the count since). Out of file descriptors? Lower \
                             server.max_connections or raise the open-file limit (ulimit -n)",
                            conn::WARNING_INTERVAL.as_secs()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match slots.admit() {
            conn::Admission::Served(slot) => {
                let connection = serve_connection(
                    apps.clone(),
                    &builder,
                    stream,
                    remote,
                    timeouts,
                    stop.subscribe(),
                );
                tokio::spawn(async move {
                    connection.await;
                    drop(slot);
                });
            }
            conn::Admission::OverCap(slot) => {
                let connection =
                    serve_over_cap(apps.clone(), &over_cap_builder, stream, remote, slots.cap());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(conn::OVER_CAP_DEADLINE, connection).await;
                    drop(slot);
                });
            }
            conn::Admission::Closed => drop(stream),
        }
    }
    apps.load()
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {} s for in-flight requests",
        grace.as_secs()
    );
    let _ = stop.send(true);
    if tokio::time::timeout(grace, stop.closed()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within the grace period; closing them");
    }
}

/// The connection cap: `server.max_connections`, or derived from the open-file
/// limit; warns when a set cap leaves too few files for the sockets it implies.
fn connection_cap(settings: &crate::config::ServerConfig) -> usize {
    let limit = conn::open_file_limit();
    let cap = settings.connection_cap(limit.unwrap_or(u64::MAX));
    if let Some(limit) = limit
        && settings.max_connections > 0
        && cap > crate::config::ServerConfig::connections_supported_by(limit)
    {
        tracing::warn!(
            "server.max_connections = {cap} is more than the open-file limit of {limit} \
             (ulimit -n) supports; past it, accepting fails instead of answering health \
             checks. Raise the limit or lower server.max_connections"
        );
    }
    tracing::debug!(
        max_connections = cap,
        open_file_limit = limit,
        "connection limits"
    );
    cap
}

/// One client connection within the cap, until it ends.
fn serve_connection(
    apps: Arc<CurrentApp>,
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    remote: SocketAddr,
    timeouts: conn::Timeouts,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let activity = conn::Activity::new();
    let service = service_fn({
        let activity = activity.clone();
        move |request| {
            let app = apps.load_full();
            let in_flight = activity.begin();
            async move {
                // Boxed: hyper keeps a connection's service future in a box of
                // that future's size for the connection's whole life, so the
                // request's large future (several KiB) gets a box of its own,
                // freed once the head is ready; an idle or streaming
                // connection then holds only this small wrapper.
                let response = Box::pin(pipeline::handle(app.clone(), request, remote)).await;
                Ok::<_, Infallible>(
                    response.map(|body| conn::InFlightBody::new(body, in_flight, app)),
                )
            }
        }
    });
    let io = TokioIo::new(conn::Watched::new(stream, activity.clone()));
    // Boxed: hyper's connection (its state for either protocol) is then
    // stored once. Moved by value into `drive` and the task it would be
    // copied into each enclosing future's state, about 12 KiB per connection
    // where it needs 1.5 (measured with heaptrack, docs/PERFORMANCE.md).
    let connection = Box::pin(
        builder
            .serve_connection_with_upgrades(io, service)
            .into_owned(),
    );
    let driven = conn::drive(
        connection,
        |connection| connection.get_mut().as_mut().graceful_shutdown(),
        activity,
        timeouts,
        stop,
    );
    async move {
        match driven.await {
            conn::Ended::Done(Ok(())) => {}
            conn::Ended::Done(Err(error)) => {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            conn::Ended::TimedOut(wait) => {
                tracing::debug!(%remote, ?wait, "connection closed: its wait timed out");
            }
        }
    }
}

/// A connection past the cap: a `/health*` request is answered as usual,
/// anything else gets 503 with `Retry-After`; then it is closed.
fn serve_over_cap(
    apps: Arc<CurrentApp>,
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    remote: SocketAddr,
    cap: usize,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let app = apps.load_full();
        async move {
            let response = if conn::is_health_path(request.uri().path()) {
                pipeline::handle(app, request, remote).await
            } else {
                conn::over_cap_response(cap)
            };
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, %remote, "connection past the cap ended with an error");
        }
    }
}

/// Signals this soon after the first are taken for the same one, delivered twice.
#[cfg(unix)]
const SAME_SIGNAL_WINDOW: Duration = Duration::from_millis(250);

/// Resolves on SIGINT or SIGTERM; a second one after that (and at least
/// [`SAME_SIGNAL_WINDOW`] later) ends the process at once (exit 130).
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
            // A second signal while shutting down means "now": an operator
            // who pressed Ctrl-C twice does not wait out the grace period. One
            // right on the heels of the first is the same signal delivered
            // twice (GNU timeout sends it to the process and to its group).
            let first = std::time::Instant::now();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    if first.elapsed() >= SAME_SIGNAL_WINDOW {
                        break;
                    }
                }
                tracing::warn!(
                    "second signal received: stopping now, without waiting for requests in flight"
                );
                std::process::exit(130);
            });
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
