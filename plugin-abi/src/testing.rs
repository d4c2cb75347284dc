//! A mock host for unit-testing plugins without building or loading a library.
//!
//! [`MockHost`] stands in for the proxy: it instantiates a plugin through the
//! same exported root module and the same [`PluginObject`] vtable the real host
//! uses, so a test exercises the real SDK shim (operation names, JSON payloads,
//! panic containment), not a shortcut around it. Everything the plugin asks of
//! the host is answered in memory and recorded:
//!
//! - `Context::sleep` returns at once and records the duration ([`MockHost::sleeps`]);
//! - `Context::http` calls the handler given to [`MockHost::http`] ([`MockHost::http_requests`]);
//! - `Context::http_stream` calls the same handler and hands its body over as
//!   one piece;
//! - `Context::call_service` calls the handler given to [`MockHost::service`]
//!   ([`MockHost::service_calls`]);
//! - `Context::blocking` runs the job at once, on the test thread;
//! - `Context::spawn_process` really starts the program (`std::process`);
//!   reads and writes block the test thread, so a child that writes more than
//!   a pipe holds (64 KiB on Linux) before its output is read, while the test
//!   still writes to it, would stall the test;
//! - `Context::plugins_status` answers the value given to
//!   [`MockHost::plugins_status`];
//! - `Context::emit` is recorded ([`MockHost::emitted`]);
//! - log macros are recorded ([`MockHost::logs`]);
//! - `Context::spawn`ed futures run on the test thread after each operation,
//!   until they finish or stall (see [`TestPlugin::run_spawned`]).
//!
//! Every call is synchronous: the mock drives the plugin's futures on the
//! calling thread with a small executor of its own, so tests need no runtime.
//!
//! ```
//! use ccproxy_plugin_abi::prelude::*;
//! use ccproxy_plugin_abi::testing::{MockHost, request};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     type Config = ();
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "1.0.0").route("/hello", [Route::get("/")])
//!     }
//!     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
//!         Ok(Hello)
//!     }
//!     async fn on_route(&self, _req: Request) -> Result<Response, PluginError> {
//!         info!("greeting");
//!         Ok(Response::text(200, "hello"))
//!     }
//! }
//!
//! let host = MockHost::new();
//! let plugin = host.start::<Hello>().unwrap();
//! let response = plugin.route(request("GET", "/hello")).unwrap();
//! assert_eq!(response.body, b"hello");
//! assert!(host.logged("greeting"));
//! ```
//!
//! Limits: the host hands its log handle to the SDK once per process (a real
//! plugin library has its own copy of the SDK; unit tests share one), so the
//! mock routes log records to the mock host driving the current thread. A
//! plugin that logs from a thread of its own may have its records land in
//! another test's mock host.

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt,
    future::Future,
    path::PathBuf,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Poll, Wake, Waker},
    thread::{self, Thread},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString},
};
use async_ffi::{FfiFuture, FutureExt as _};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    API_VERSION, FormatConversion, Health, HealthStatus, HookContext, HookEvent, HookOutcome,
    HttpRequest, HttpResponse, MiddlewareAction, MiddlewareRequest, MiddlewareResponse, Plugin,
    PluginError, ProviderRequest, ServiceCall, UpstreamRequest,
    context::parse_meta,
    http::{Headers, Request, Response},
    manifest::{ConfiguredEndpoints, Manifest},
    protocol::{self, Operation, capability, host_op, op, ops},
    raw::{self, CallResult, HostObject, HostObject_TO, Message, PluginBox},
    shim::Shim,
};

pub use crate::log::Level;

/// How many rounds the mock keeps polling spawned futures after an operation
/// finished before it leaves them for [`TestPlugin::run_spawned`]. A spawned
/// `loop { ctx.sleep(..).await; .. }` never finishes (sleep returns at once), so
/// it must not hang the test.
const SPAWNED_ROUND_LIMIT: usize = 1_000;

/// The caller name the mock host passes to `on_service_call`.
pub const TEST_CALLER: &str = "test";

type HttpHandler = Arc<dyn Fn(HttpRequest) -> Result<HttpResponse, PluginError> + Send + Sync>;
type ServiceHandler = Arc<dyn Fn(&str, Value) -> Result<Value, PluginError> + Send + Sync>;

/// A stand-in for the ccproxy host: configure it with the builder methods, then
/// [`start`](MockHost::start) a plugin on it.
///
/// Cheap to clone: clones share what was recorded (logs, sleeps, emitted
/// events, HTTP requests, service calls).
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
/// use ccproxy_plugin_abi::testing::MockHost;
///
/// let host = MockHost::new()
///     .config(json!({"greeting": "Hi"}))
///     .http(|_req| Ok(HttpResponse { status: 204, ..Default::default() }))
///     .service("greeting", |_method, args| Ok(json!({"echo": args})));
/// assert!(host.logs().is_empty());
/// ```
#[derive(Clone)]
pub struct MockHost {
    settings: Settings,
    records: Arc<Records>,
}

#[derive(Clone)]
struct Settings {
    config: Value,
    http: Option<HttpHandler>,
    services: HashMap<String, ServiceHandler>,
    capabilities: Vec<String>,
    data_dir: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    bypass: bool,
    plugins_status: Value,
}

/// What the plugin did to the host, shared by every clone of a `MockHost`.
struct Records {
    max_level: Mutex<Level>,
    logs: Mutex<Vec<(Level, String)>>,
    sleeps: Mutex<Vec<Duration>>,
    emitted: Mutex<Vec<(String, Value)>>,
    http_requests: Mutex<Vec<HttpRequest>>,
    service_calls: Mutex<Vec<ServiceCall>>,
    spawned: Mutex<Vec<FfiFuture<()>>>,
    /// Bodies handed out by `host.http.stream`, by stream id.
    http_streams: Mutex<HashMap<u64, Vec<u8>>>,
    /// Children started by `host.process.spawn`, by handle.
    processes: Mutex<HashMap<u64, MockChild>>,
    next_id: AtomicU64,
}

impl Default for Records {
    fn default() -> Self {
        Self {
            max_level: Mutex::new(Level::Trace),
            logs: Mutex::default(),
            sleeps: Mutex::default(),
            emitted: Mutex::default(),
            http_requests: Mutex::default(),
            service_calls: Mutex::default(),
            spawned: Mutex::default(),
            http_streams: Mutex::default(),
            processes: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

/// Locks `mutex`, ignoring poisoning: a plugin panic caught by the SDK must not
/// make every later assertion fail too.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MockHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockHost")
            .field("config", &self.settings.config)
            .field(
                "services",
                &self.settings.services.keys().collect::<Vec<_>>(),
            )
            .field("capabilities", &self.settings.capabilities)
            .finish_non_exhaustive()
    }
}

impl MockHost {
    /// A host with an empty config (the plugin gets its defaults), every
    /// capability of this API version, no HTTP handler and no services.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// let host = MockHost::new();
    /// assert!(host.sleeps().is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            settings: Settings {
                config: Value::Object(Map::new()),
                http: None,
                services: HashMap::new(),
                capabilities: [
                    capability::SLEEP,
                    capability::HTTP,
                    capability::SERVICES,
                    capability::EMIT,
                    capability::SPAWN,
                    capability::HTTP_STREAM,
                    capability::BLOCKING,
                    capability::PROCESS,
                    capability::PLUGINS_STATUS,
                    capability::FORMAT_ADAPTERS,
                    capability::STREAM_ROUTES,
                    capability::HOOK_BODIES,
                    capability::PUBLIC_ROUTES,
                    capability::ROUTE_USAGE,
                ]
                .map(str::to_owned)
                .to_vec(),
                data_dir: None,
                config_dir: None,
                bypass: false,
                plugins_status: serde_json::json!({"plugins": []}),
            },
            records: Arc::new(Records::default()),
        }
    }

    /// Sets the user's config section for the plugin (`[plugins.<name>]` as
    /// JSON). As the real host does, it is merged key by key over the defaults
    /// the plugin declares (nested tables too; an empty default table takes any
    /// keys), the reserved key `enabled` is dropped unless the plugin declares
    /// it, and a key the plugin does not declare makes
    /// [`start`](MockHost::start) fail.
    ///
    /// ```
    /// use ccproxy_plugin_abi::{json, testing::MockHost};
    /// let host = MockHost::new().config(json!({"greeting": "Hi"}));
    /// # let _ = host;
    /// ```
    pub fn config(mut self, config: Value) -> Self {
        self.settings.config = config;
        self
    }

    /// Answers `Context::http` with `handler`. Without one, HTTP calls fail with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable). Return an
    /// error to simulate a connection failure (the real host answers those with
    /// [`ErrorKind::Upstream`](crate::ErrorKind::Upstream) or `Timeout`).
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    /// use ccproxy_plugin_abi::testing::MockHost;
    ///
    /// let host = MockHost::new().http(|req| {
    ///     assert_eq!(req.method, "GET");
    ///     Ok(HttpResponse { status: 200, body: b"pong".to_vec(), ..Default::default() })
    /// });
    /// # let _ = host;
    /// ```
    pub fn http(
        mut self,
        handler: impl Fn(HttpRequest) -> Result<HttpResponse, PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.settings.http = Some(Arc::new(handler));
        self
    }

    /// Answers `Context::call_service(name, method, args)` with
    /// `handler(method, args)`, as if another plugin provided service `name`.
    /// Calls to services without a handler fail with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    /// use ccproxy_plugin_abi::testing::MockHost;
    ///
    /// let host = MockHost::new().service("greeting", |method, args| match method {
    ///     "greet" => Ok(json!({"message": format!("Hello, {}!", args["name"].as_str().unwrap_or("you"))})),
    ///     other => Err(PluginError::not_found(format!("no method {other}"))),
    /// });
    /// # let _ = host;
    /// ```
    pub fn service(
        mut self,
        name: &str,
        handler: impl Fn(&str, Value) -> Result<Value, PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.settings
            .services
            .insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Replaces the capabilities the host offers (see
    /// [`protocol::capability`]). Host operations whose capability is missing
    /// answer [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), as an
    /// older host would.
    ///
    /// ```
    /// use ccproxy_plugin_abi::{protocol::capability, testing::MockHost};
    /// // A host without an HTTP client.
    /// let host = MockHost::new().capabilities([capability::SLEEP, capability::SPAWN]);
    /// # let _ = host;
    /// ```
    pub fn capabilities<'a>(mut self, capabilities: impl IntoIterator<Item = &'a str>) -> Self {
        self.settings.capabilities = capabilities.into_iter().map(str::to_owned).collect();
        self
    }

    /// Sets the directory `Context::data_dir` returns (created on start).
    /// Default: a fresh directory under the system temp dir, removed when the
    /// [`TestPlugin`] is dropped.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// let host = MockHost::new().data_dir(std::env::temp_dir().join("my-plugin-test"));
    /// # let _ = host;
    /// ```
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.data_dir = Some(path.into());
        self
    }

    /// Answers `Context::plugins_status` with `status` (default:
    /// `{"plugins": []}`); shape it like `GET /plugins/status`.
    ///
    /// ```
    /// use ccproxy_plugin_abi::{json, testing::MockHost};
    /// let host = MockHost::new().plugins_status(json!({"plugins": [{"name": "other", "calls": 3}]}));
    /// # let _ = host;
    /// ```
    pub fn plugins_status(mut self, status: Value) -> Self {
        self.settings.plugins_status = status;
        self
    }

    /// Starts plugins as a host in bypass mode would (`Context::bypass_mode`
    /// answers true).
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// let host = MockHost::new().bypass(true);
    /// # let _ = host;
    /// ```
    pub fn bypass(mut self, on: bool) -> Self {
        self.settings.bypass = on;
        self
    }

    /// Sets the directory `Context::config_dir` returns (not created).
    /// Default: the data directory.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// let host = MockHost::new().config_dir("/etc/ccproxy");
    /// # let _ = host;
    /// ```
    pub fn config_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.config_dir = Some(path.into());
        self
    }

    /// Records log lines up to `level` only (default: [`Level::Trace`],
    /// everything). The log macros skip formatting above it, as with the real
    /// host's filter.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::{Level, MockHost};
    /// let host = MockHost::new().max_log_level(Level::Info);
    /// # let _ = host;
    /// ```
    pub fn max_log_level(self, level: Level) -> Self {
        *lock(&self.records.max_level) = level;
        self
    }

    /// Loads plugin `P` the way the host loads a library: reads its manifest
    /// through the exported root module, merges the config over the declared
    /// defaults, instantiates it with this host's handle and runs
    /// `plugin.initialize` (so `P::init` runs). Fails with the error the host
    /// would show as the reason the plugin is disabled.
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    /// use ccproxy_plugin_abi::testing::MockHost;
    ///
    /// struct Noop;
    /// impl Plugin for Noop {
    ///     type Config = ();
    ///     fn manifest() -> Manifest { Manifest::new("noop", "1.0.0") }
    ///     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Noop) }
    /// }
    ///
    /// let plugin = MockHost::new().start::<Noop>().unwrap();
    /// assert_eq!(plugin.manifest().name, "noop");
    /// ```
    pub fn start<P: Plugin>(&self) -> Result<TestPlugin, PluginError> {
        // The same root module `export_plugin!` exports, so the manifest and
        // instantiate entry points run under the SDK's panic guards.
        let module = raw::module_for::<Shim<P>>();
        let manifest_json = match (module.manifest())() {
            RResult::ROk(json) => json,
            RResult::RErr(message) => {
                return Err(PluginError::invalid(format!("manifest refused: {message}")));
            }
        };
        let manifest: Manifest = serde_json::from_str(&manifest_json).map_err(|error| {
            PluginError::invalid(format!("manifest is not valid JSON: {error}"))
        })?;
        // As the host refuses it at load: `__` separates the parts of the
        // plugin's env overrides (PLUGINS__NAME__FIELD).
        if manifest.name.contains("__") {
            return Err(PluginError::invalid(format!(
                "plugin name {:?} contains \"__\", which the host refuses: it separates the parts of the plugin's environment overrides (PLUGINS__NAME__FIELD); use single underscores",
                manifest.name
            )));
        }
        let config = merged_config(&manifest, &self.settings.config)?;

        // Without a configured folder, a fresh one of its own (0700), removed
        // with the TestPlugin.
        let temporary_data_dir = match &self.settings.data_dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix(&format!("ccproxy-mock-{}-", manifest.name))
                    .tempdir()
                    .map_err(|error| {
                        PluginError::internal(format!(
                            "mock host could not create a temporary data dir: {error}"
                        ))
                    })?,
            ),
        };
        let data_dir = match (&temporary_data_dir, &self.settings.data_dir) {
            (Some(temporary), _) => temporary.path().to_owned(),
            (None, configured) => configured.clone().unwrap_or_default(),
        };
        std::fs::create_dir_all(&data_dir).map_err(|error| {
            PluginError::internal(format!(
                "mock host could not create {}: {error}",
                data_dir.display()
            ))
        })?;
        let config_dir = self
            .settings
            .config_dir
            .clone()
            .unwrap_or_else(|| data_dir.clone());

        let host_object = MockHostObject {
            settings: Arc::new(self.settings.clone()),
            records: self.records.clone(),
        };
        let host_box = HostObject_TO::from_ptr(RArc::new(host_object), TD_Opaque);
        let object = match (module.instantiate())(host_box) {
            RResult::ROk(object) => object,
            RResult::RErr(message) => return Err(PluginError::internal(message.into_string())),
        };
        let mut plugin = TestPlugin {
            object,
            manifest,
            configured: ConfiguredEndpoints::default(),
            provider_retries: false,
            host: self.clone(),
            _temporary_data_dir: temporary_data_dir,
            task_runs: Mutex::default(),
        };
        let init = protocol::InitializeInput {
            plugin_name: plugin.manifest.name.clone(),
            config,
            data_dir: data_dir.to_string_lossy().into_owned(),
            config_dir: config_dir.to_string_lossy().into_owned(),
            capabilities: self.settings.capabilities.clone(),
            bypass: self.settings.bypass,
        };
        let (output, _): (Option<protocol::InitializeOutput>, _) =
            plugin.call(op::INITIALIZE, &init, Vec::new())?;
        if let Some(output) = output {
            plugin.provider_retries = output.provider_retries;
            if let Some(served) = output.configured_endpoints {
                plugin.configured = served;
            }
        }
        Ok(plugin)
    }

    /// Every log record so far, in order, as (level, message).
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::{Level, MockHost};
    /// let host = MockHost::new();
    /// assert!(!host.logs().iter().any(|(level, _)| *level == Level::Error));
    /// ```
    pub fn logs(&self) -> Vec<(Level, String)> {
        lock(&self.records.logs).clone()
    }

    /// Whether any log message so far contains `text`.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert!(!MockHost::new().logged("panicked"));
    /// ```
    pub fn logged(&self, text: &str) -> bool {
        lock(&self.records.logs)
            .iter()
            .any(|(_, message)| message.contains(text))
    }

    /// Every custom event emitted with `Context::emit`, as (event, data).
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert!(MockHost::new().emitted().is_empty());
    /// ```
    pub fn emitted(&self) -> Vec<(String, Value)> {
        lock(&self.records.emitted).clone()
    }

    /// Every duration passed to `Context::sleep`; each sleep returned at once.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert_eq!(MockHost::new().sleeps().iter().sum::<std::time::Duration>(), std::time::Duration::ZERO);
    /// ```
    pub fn sleeps(&self) -> Vec<Duration> {
        lock(&self.records.sleeps).clone()
    }

    /// Every request sent with `Context::http`, whether or not a handler answered it.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert!(MockHost::new().http_requests().is_empty());
    /// ```
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        lock(&self.records.http_requests).clone()
    }

    /// Every call made with `Context::call_service`, whether or not a handler answered it.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert!(MockHost::new().service_calls().is_empty());
    /// ```
    pub fn service_calls(&self) -> Vec<ServiceCall> {
        lock(&self.records.service_calls).clone()
    }

    /// How many spawned futures have not finished yet.
    ///
    /// ```
    /// use ccproxy_plugin_abi::testing::MockHost;
    /// assert_eq!(MockHost::new().pending_spawned(), 0);
    /// ```
    pub fn pending_spawned(&self) -> usize {
        lock(&self.records.spawned).len()
    }

    /// Drives `future` to completion on this thread, together with the spawned
    /// futures; afterwards keeps polling spawned futures until they finish, stall
    /// or exceed [`SPAWNED_ROUND_LIMIT`] rounds.
    fn drive<F: Future>(&self, future: F) -> F::Output {
        let _current = CurrentRecords::enter(self.records.clone());
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        let waker = Waker::from(signal.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = pin!(future);
        let mut output = None;
        let mut rounds_after_output = 0;
        loop {
            signal.woken.store(false, Ordering::SeqCst);
            if output.is_none()
                && let Poll::Ready(value) = future.as_mut().poll(&mut cx)
            {
                output = Some(value);
            }
            let finished_some = self.poll_spawned_once(&mut cx);
            if let Some(value) = output.take() {
                let pending = self.pending_spawned();
                let stalled = !finished_some && !signal.woken.load(Ordering::SeqCst);
                rounds_after_output += 1;
                if pending == 0 || stalled {
                    return value;
                }
                if rounds_after_output >= SPAWNED_ROUND_LIMIT {
                    lock(&self.records.logs).push((
                        Level::Warn,
                        format!(
                            "mock host: {pending} spawned future(s) still running after {SPAWNED_ROUND_LIMIT} rounds; \
                             left for TestPlugin::run_spawned (periodic work belongs in a manifest task)"
                        ),
                    ));
                    return value;
                }
                output = Some(value);
            } else if !finished_some && !signal.woken.load(Ordering::SeqCst) {
                // The operation waits on something outside the mock (a thread
                // of the plugin's own): wait for its wake-up.
                thread::park_timeout(Duration::from_millis(10));
            }
        }
    }

    /// Polls every queued spawned future once; returns whether any finished.
    fn poll_spawned_once(&self, cx: &mut std::task::Context<'_>) -> bool {
        // Internal: the lock is not held while polling, because a spawned
        // future may spawn more.
        let mut batch = std::mem::take(&mut *lock(&self.records.spawned));
        let before = batch.len();
        batch.retain_mut(|future| Pin::new(future).poll(cx).is_pending());
        let finished_some = batch.len() < before;
        let mut queue = lock(&self.records.spawned);
        batch.append(&mut queue);
        *queue = batch;
        finished_some
    }
}

/// The merged config the host would pass (as the host's
/// `validate_plugin_section`): the user's keys over the declared defaults,
/// nested tables merged key by key, an empty default table taking any keys,
/// the reserved `enabled` dropped unless declared, undeclared keys refused.
fn merged_config(manifest: &Manifest, user: &Value) -> Result<Value, PluginError> {
    let user = match user {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            return Err(PluginError::invalid(format!(
                "config of plugin {} must be a table, got {other}",
                manifest.name
            )));
        }
    };
    let defaults = match &manifest.config.defaults {
        Value::Object(defaults) => defaults.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(PluginError::invalid(format!(
                "plugin {} declares config defaults that are not a table: {other}",
                manifest.name
            )));
        }
    };
    let mut merged = defaults.clone();
    merge_table(
        &format!("plugins.{}", manifest.name),
        &mut merged,
        &defaults,
        &user,
        true,
    )?;
    Ok(Value::Object(merged))
}

fn merge_table(
    prefix: &str,
    merged: &mut Map<String, Value>,
    defaults: &Map<String, Value>,
    given: &Map<String, Value>,
    top: bool,
) -> Result<(), PluginError> {
    for (key, value) in given {
        match defaults.get(key) {
            None if top && key == "enabled" => {}
            None => {
                let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                return Err(PluginError::invalid(format!(
                    "unknown config key {prefix}.{key}; known keys: {}",
                    known.join(", ")
                )));
            }
            Some(Value::Object(inner_defaults)) if !inner_defaults.is_empty() => {
                let Value::Object(inner_given) = value else {
                    return Err(PluginError::invalid(format!(
                        "config key {prefix}.{key} must be a table, got {value}"
                    )));
                };
                let target = merged
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(inner_defaults.clone()));
                if let Value::Object(target) = target {
                    merge_table(
                        &format!("{prefix}.{key}"),
                        target,
                        inner_defaults,
                        inner_given,
                        false,
                    )?;
                }
            }
            Some(_) => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            elapsed.as_millis().min(u128::from(u64::MAX)) as u64
        })
}

/// A plugin started on a [`MockHost`]. Each method performs one operation
/// exactly as the host would (same operation name and payload), drives it to
/// completion, then runs the futures the plugin spawned.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
/// use ccproxy_plugin_abi::testing::MockHost;
///
/// struct Ticker;
/// impl Plugin for Ticker {
///     type Config = ();
///     fn manifest() -> Manifest { Manifest::new("ticker", "1.0.0").task("tick", 5.0) }
///     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Ticker) }
///     async fn on_task(&self, task: String) -> Result<(), PluginError> {
///         debug!("ran {task}");
///         Ok(())
///     }
/// }
///
/// let host = MockHost::new();
/// let plugin = host.start::<Ticker>().unwrap();
/// plugin.task("tick").unwrap();
/// assert!(host.logged("ran tick"));
/// ```
pub struct TestPlugin {
    object: PluginBox,
    manifest: Manifest,
    configured: ConfiguredEndpoints,
    provider_retries: bool,
    host: MockHost,
    /// The data dir the mock host made, removed when dropped.
    _temporary_data_dir: Option<tempfile::TempDir>,
    task_runs: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for TestPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPlugin")
            .field("name", &self.manifest.name)
            .finish_non_exhaustive()
    }
}

impl TestPlugin {
    /// The manifest as the host read it (config defaults filled in).
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # #[derive(serde::Serialize, serde::Deserialize, Default)] struct Config { greeting: String }
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = Config;
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(_ctx: Context, _config: Config) -> Result<Self, PluginError> { Ok(P) }
    /// # }
    /// let plugin = MockHost::new().start::<P>().unwrap();
    /// assert_eq!(plugin.manifest().config.defaults, json!({"greeting": ""}));
    /// ```
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What a provider declared with `Manifest::configured_provider` answered
    /// to initialisation: the endpoints and routes its config adds (plugin
    /// API 1.3). [`TestPlugin::route`] matches the configured routes too.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::{MockHost, request};
    /// struct Upstreams;
    /// impl Plugin for Upstreams {
    ///     type Config = ();
    ///     fn manifest() -> Manifest { Manifest::new("upstreams", "1.0.0").configured_provider() }
    ///     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Upstreams) }
    ///     fn configured_endpoints(&self) -> ConfiguredEndpoints {
    ///         ConfiguredEndpoints::default()
    ///             .provider_endpoint("/local/v1/messages", "anthropic.messages", "openai.chat_completions")
    ///             .route("/local", [Route::new("GET", "/v1/models")])
    ///     }
    ///     async fn on_route(&self, _req: Request) -> Result<Response, PluginError> {
    ///         Ok(Response::json(200, &json!({"data": []})))
    ///     }
    /// }
    /// let plugin = MockHost::new().start::<Upstreams>().unwrap();
    /// let served = plugin.configured_endpoints();
    /// assert_eq!(served.provider_endpoints[0].path, "/local/v1/messages");
    /// assert_eq!(plugin.route(request("GET", "/local/v1/models")).unwrap().status, 200);
    /// // `prepare_upstream` knows the configured endpoints and their formats.
    /// let error = plugin
    ///     .prepare_upstream(ProviderRequest { endpoint: "/local/v1/messages".into(), ..Default::default() })
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    /// ```
    pub fn configured_endpoints(&self) -> &ConfiguredEndpoints {
        &self.configured
    }

    /// Whether the provider answered `plugin.initialize` saying it may ask
    /// for retries ([`Plugin::provider_retries`](crate::Plugin::provider_retries), plugin API 1.3).
    pub fn provider_retries(&self) -> bool {
        self.provider_retries
    }

    /// The host the plugin runs on.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(P) }
    /// # }
    /// let plugin = MockHost::new().start::<P>().unwrap();
    /// assert!(plugin.host().logs().is_empty());
    /// ```
    pub fn host(&self) -> &MockHost {
        &self.host
    }

    /// Sends `req` to the plugin's route, as the server does. When `req.route`
    /// is empty the mock matches `req.method` and `req.path` against the
    /// manifest's routes (filling `route` and `params`) and answers 404
    /// ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound)) without calling the
    /// plugin when none matches. An empty `request_id` becomes `test-<n>`.
    /// An `Err` is what the host turns into an error response
    /// (`err.kind().http_status()`).
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// use ccproxy_plugin_abi::testing::{MockHost, request};
    /// # struct Items;
    /// # impl Plugin for Items {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("items", "1.0.0").route("/items", [Route::get("/{id}")]) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Items) }
    /// #     async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
    /// #         Ok(Response::text(200, req.param("id").unwrap_or_default()))
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Items>().unwrap();
    /// assert_eq!(plugin.route(request("GET", "/items/42")).unwrap().body, b"42");
    /// assert_eq!(plugin.route(request("GET", "/nowhere")).unwrap_err().kind(), ErrorKind::NotFound);
    /// ```
    ///
    /// The answer's [`Response::answered_by`] and [`Response::usage`] are what
    /// the plugin reported (plugin API 1.3); for a stream, the usage is what
    /// its last chunk carried.
    pub fn route(&self, req: Request) -> Result<Response, PluginError> {
        let (mut response, stream) = self.route_head(req)?;
        if let Some(stream) = stream {
            let (pieces, end) = self.stream_pieces(stream, usize::MAX)?;
            for piece in pieces {
                response.body.extend_from_slice(&piece);
            }
            response.reported_at_end(end);
        }
        Ok(response)
    }

    /// Sends `req` to a route that may stream (plugin API 1.2
    /// [`StreamResponse`](crate::StreamResponse)) and reads at most
    /// `max_pieces` pieces of its body, one per pull as the host would; a
    /// stream not finished by then is cancelled, as when a client leaves. A
    /// complete answer is one piece. [`TestPlugin::route`] reads a whole
    /// stream into one body instead.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// use ccproxy_plugin_abi::testing::{MockHost, request};
    /// # struct Count;
    /// # impl Plugin for Count {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("count", "1.0.0").route("/count", [Route::get("/")]) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Count) }
    /// #     async fn on_route_response(&self, _req: Request) -> Result<RouteResponse, PluginError> {
    /// #         let pieces = (1..).map(|n: u32| Ok(format!("data: {n}\n\n").into_bytes()));
    /// #         Ok(StreamResponse::sse(BodyStream::new(ccproxy_plugin_abi::stream::iter(pieces))).into())
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Count>().unwrap();
    /// let (response, pieces) = plugin.route_stream(request("GET", "/count/"), 2).unwrap();
    /// assert_eq!(response.headers.get("content-type"), Some("text/event-stream"));
    /// assert_eq!(pieces, [b"data: 1\n\n".to_vec(), b"data: 2\n\n".to_vec()]);
    /// ```
    pub fn route_stream(
        &self,
        req: Request,
        max_pieces: usize,
    ) -> Result<(Response, Vec<Vec<u8>>), PluginError> {
        let (mut response, stream) = self.route_head(req)?;
        let pieces = match stream {
            Some(stream) => {
                let (pieces, end) = self.stream_pieces(stream, max_pieces)?;
                response.reported_at_end(end);
                pieces
            }
            None => vec![std::mem::take(&mut response.body)],
        };
        Ok((response, pieces))
    }

    /// Up to `max` pieces of route stream `stream`, and its last chunk;
    /// cancels it when it did not end.
    fn stream_pieces(
        &self,
        stream: u64,
        max: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<protocol::RouteStreamChunk>), PluginError> {
        let stream = protocol::StreamRef { stream };
        let mut pieces = Vec::new();
        while pieces.len() < max {
            let (chunk, piece) = self.call::<_, protocol::RouteStreamChunk>(
                <ops::RouteStreamNext as Operation>::NAME,
                &stream,
                Vec::new(),
            )?;
            if chunk.end {
                return Ok((pieces, Some(chunk)));
            }
            pieces.push(piece);
        }
        self.call::<_, Value>(
            <ops::RouteStreamCancel as Operation>::NAME,
            &stream,
            Vec::new(),
        )?;
        Ok((pieces, None))
    }

    /// The route's answer head (and its whole body, or the id of its stream).
    fn route_head(&self, mut req: Request) -> Result<(Response, Option<u64>), PluginError> {
        if req.route.is_empty() {
            let (route, params) = self.match_route(&req.method, &req.path).ok_or_else(|| {
                PluginError::not_found(format!(
                    "no route of plugin {} matches {} {}",
                    self.manifest.name, req.method, req.path
                ))
            })?;
            req.route = route;
            req.params = params;
        }
        if req.request_id.is_empty() {
            req.request_id = next_request_id();
        }
        let input = protocol::RouteInput {
            head: protocol::RequestHead {
                method: req.method,
                path: req.path,
                query: req.query,
                headers: req.headers.0,
                request_id: req.request_id,
            },
            route: req.route,
            params: req.params,
        };
        let (head, body) = self.call::<_, protocol::ResponseHead>(op::ROUTE, &input, req.body)?;
        let response = Response {
            status: head.status,
            headers: Headers(head.headers),
            body,
            answered_by: head.answered_by,
            usage: head.usage,
        };
        Ok((response, head.stream))
    }

    fn match_route(&self, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let groups = self.manifest.routes.iter();
        groups.chain(&self.configured.routes).find_map(|group| {
            group.routes.iter().find_map(|route| {
                if route.method != "*" && !route.method.eq_ignore_ascii_case(method) {
                    return None;
                }
                let pattern = format!("{}{}", group.prefix.trim_end_matches('/'), route.path);
                match_pattern(&pattern, path).map(|params| (pattern, params))
            })
        })
    }

    /// Delivers `event` with `data` to the first of the manifest's hooks
    /// subscribed to it, stamped now, with `request_id` taken from
    /// `data["request_id"]`. Fails with
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when no hook is
    /// subscribed (the host would not call the plugin). Use
    /// [`hook_with`](TestPlugin::hook_with) to choose the hook, the timestamp or
    /// a body.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Audit;
    /// # impl Plugin for Audit {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("audit", "1.0.0").hook("audit", ["request.completed"], 500) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Audit) }
    /// #     async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
    /// #         info!("saw {}", hook.request_id.unwrap_or_default());
    /// #         Ok(HookOutcome::Continue)
    /// #     }
    /// # }
    /// let host = MockHost::new();
    /// let plugin = host.start::<Audit>().unwrap();
    /// plugin.hook(HookEvent::RequestCompleted, json!({"request_id": "r1"})).unwrap();
    /// assert!(host.logged("saw r1"));
    /// ```
    pub fn hook(&self, event: HookEvent, data: Value) -> Result<HookOutcome, PluginError> {
        let hook = self
            .manifest
            .hooks
            .iter()
            .find(|spec| spec.events.iter().any(|name| name == event.as_str()))
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "plugin {} has no hook subscribed to {}",
                    self.manifest.name,
                    event.as_str()
                ))
            })?;
        let request_id = data
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.hook_with(HookContext {
            hook: hook.name.clone(),
            event,
            timestamp_ms: now_ms(),
            request_id,
            data,
            body: Vec::new(),
        })
    }

    /// Delivers one hook call exactly as given (any hook name, timestamp, body).
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Upper;
    /// # impl Plugin for Upper {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("upper", "1.0.0").hook("upper", ["provider.request.prepared"], 100) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Upper) }
    /// #     async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
    /// #         Ok(HookOutcome::Modify { data: hook.data, body: Some(hook.body.to_ascii_uppercase()) })
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Upper>().unwrap();
    /// let outcome = plugin
    ///     .hook_with(HookContext {
    ///         hook: "upper".into(),
    ///         event: HookEvent::ProviderRequestPrepared,
    ///         timestamp_ms: 0,
    ///         request_id: None,
    ///         data: json!({}),
    ///         body: b"hi".to_vec(),
    ///     })
    ///     .unwrap();
    /// assert!(matches!(outcome, HookOutcome::Modify { body: Some(body), .. } if body == b"HI"));
    /// ```
    pub fn hook_with(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
        use crate::hook_wire::{self, Outcome};
        // As the host sends it to a plugin of this SDK (plugin API 1.3): a
        // `hook.batch` of one call, its data indexed.
        let (data, index) = hook_wire::to_indexed_json(&hook.data)?;
        let mut frame = hook_wire::CallWriter::new(1, data.len() + hook.body.len() + 64);
        frame.entry(
            &hook.hook,
            hook.event.as_str(),
            hook.timestamp_ms,
            hook.request_id.as_deref(),
            &data,
            &hook_wire::encode_index(&index),
            &hook.body,
        );
        let (_, reply) =
            self.call::<_, Value>(hook_wire::BATCH_OP, &Value::Null, frame.finish())?;
        let malformed = |error: hook_wire::FrameError| PluginError::internal(error.to_string());
        let mut reader = hook_wire::Reader::new(&reply);
        if reader.u32().map_err(malformed)? != 1 {
            return Err(PluginError::internal(
                "hook.batch answered another number of calls",
            ));
        }
        match reader.outcome().map_err(malformed)? {
            Outcome::Continue => Ok(HookOutcome::Continue),
            Outcome::Modify { data, body, .. } => Ok(HookOutcome::Modify {
                data: serde_json::from_str(data)?,
                body: body.map(<[u8]>::to_vec),
            }),
            Outcome::Failed { code, message } => Err(PluginError::from_abi(raw::AbiError::new(
                raw::ErrorCode::from_u32(code),
                message,
            ))),
        }
    }

    /// Runs task `name` once, as the scheduler does. Fails with
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the manifest
    /// declares no such task.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct T;
    /// # impl Plugin for T {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("t", "1.0.0").task("cleanup", 60.0) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(T) }
    /// # }
    /// let plugin = MockHost::new().start::<T>().unwrap();
    /// plugin.task("cleanup").unwrap();
    /// assert!(plugin.task("other").is_err());
    /// ```
    pub fn task(&self, name: &str) -> Result<(), PluginError> {
        if !self.manifest.tasks.iter().any(|task| task.name == name) {
            return Err(PluginError::not_found(format!(
                "plugin {} declares no task {name}",
                self.manifest.name
            )));
        }
        let run = {
            let mut runs = lock(&self.task_runs);
            let count = runs.entry(name.to_owned()).or_insert(0);
            let run = *count;
            *count += 1;
            run
        };
        let input = protocol::TaskInput {
            task: name.to_owned(),
            run,
        };
        self.call::<_, Value>(op::TASK, &input, Vec::new())?;
        Ok(())
    }

    /// Calls `method` of `service`, which the plugin provides, as another
    /// plugin would through the host (the caller is [`TEST_CALLER`]). Fails with
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the manifest
    /// does not list the service in `provides`.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Echo;
    /// # impl Plugin for Echo {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("echo", "1.0.0").provides("echo") }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Echo) }
    /// #     async fn on_service_call(&self, call: ServiceCall) -> Result<ccproxy_plugin_abi::Value, PluginError> { Ok(call.args) }
    /// # }
    /// let plugin = MockHost::new().start::<Echo>().unwrap();
    /// assert_eq!(plugin.service("echo", "any", json!([1, 2])).unwrap(), json!([1, 2]));
    /// ```
    pub fn service(&self, service: &str, method: &str, args: Value) -> Result<Value, PluginError> {
        if !self
            .manifest
            .provides
            .iter()
            .any(|provided| provided == service)
        {
            return Err(PluginError::not_found(format!(
                "plugin {} does not provide service {service}",
                self.manifest.name
            )));
        }
        let input = protocol::ServiceInput {
            service: service.to_owned(),
            method: method.to_owned(),
            args,
            caller: TEST_CALLER.to_owned(),
        };
        let (value, _) = self.call::<_, Value>(op::SERVICE, &input, Vec::new())?;
        Ok(value)
    }

    /// Passes a request head through middleware `middleware.middleware`.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Gate;
    /// # impl Plugin for Gate {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("gate", "1.0.0").middleware("gate", layer::SECURITY, false) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Gate) }
    /// #     async fn on_middleware_request(&self, req: MiddlewareRequest) -> Result<MiddlewareAction, PluginError> {
    /// #         Ok(match req.headers.get("x-api-key") {
    /// #             Some(_) => MiddlewareAction::Continue { set_headers: vec![] },
    /// #             None => MiddlewareAction::Respond(Response::text(401, "no key")),
    /// #         })
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Gate>().unwrap();
    /// let action = plugin
    ///     .middleware_request(MiddlewareRequest {
    ///         middleware: "gate".into(),
    ///         method: "GET".into(),
    ///         path: "/".into(),
    ///         query: String::new(),
    ///         headers: Headers::default(),
    ///         request_id: "r1".into(),
    ///     })
    ///     .unwrap();
    /// assert!(matches!(action, MiddlewareAction::Respond(response) if response.status == 401));
    /// ```
    pub fn middleware_request(
        &self,
        middleware: MiddlewareRequest,
    ) -> Result<MiddlewareAction, PluginError> {
        let input = protocol::MiddlewareRequestInput {
            middleware: middleware.middleware,
            request: protocol::RequestHead {
                method: middleware.method,
                path: middleware.path,
                query: middleware.query,
                headers: middleware.headers.0,
                request_id: middleware.request_id,
            },
        };
        let (output, body) = self.call::<_, protocol::MiddlewareRequestOutput>(
            op::MIDDLEWARE_REQUEST,
            &input,
            Vec::new(),
        )?;
        Ok(match output.respond {
            Some(head) => MiddlewareAction::Respond(Response {
                status: head.status,
                headers: Headers(head.headers),
                body,
                answered_by: None,
                usage: None,
            }),
            None => MiddlewareAction::Continue {
                set_headers: output.set_headers,
            },
        })
    }

    /// Passes a response head through middleware `middleware.middleware`;
    /// returns the status and headers it lets out.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Stamp;
    /// # impl Plugin for Stamp {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("stamp", "1.0.0").middleware("stamp", layer::OBSERVABILITY, true) }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Stamp) }
    /// #     async fn on_middleware_response(&self, resp: MiddlewareResponse) -> Result<(u16, Headers), PluginError> {
    /// #         let mut headers = resp.headers;
    /// #         headers.set("x-stamp", "1");
    /// #         Ok((resp.status, headers))
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Stamp>().unwrap();
    /// let (status, headers) = plugin
    ///     .middleware_response(MiddlewareResponse {
    ///         middleware: "stamp".into(),
    ///         path: "/".into(),
    ///         request_id: "r1".into(),
    ///         status: 200,
    ///         headers: Headers::default(),
    ///     })
    ///     .unwrap();
    /// assert_eq!((status, headers.get("x-stamp")), (200, Some("1")));
    /// ```
    pub fn middleware_response(
        &self,
        middleware: MiddlewareResponse,
    ) -> Result<(u16, Headers), PluginError> {
        let input = protocol::MiddlewareResponseInput {
            middleware: middleware.middleware,
            request: protocol::RequestHead {
                method: String::new(),
                path: middleware.path,
                query: String::new(),
                headers: Vec::new(),
                request_id: middleware.request_id,
            },
            response: protocol::ResponseHead {
                status: middleware.status,
                headers: middleware.headers.0,
                stream: None,
                answered_by: None,
                usage: None,
            },
        };
        let (head, _) =
            self.call::<_, protocol::ResponseHead>(op::MIDDLEWARE_RESPONSE, &input, Vec::new())?;
        Ok((head.status, Headers(head.headers)))
    }

    /// Asks a provider plugin to prepare the upstream request for `req`, as
    /// the host does on a provider endpoint (after converting the body to the
    /// native format). An empty `req.native_format` is filled from the
    /// manifest. Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// when the manifest declares no provider endpoint `req.endpoint`.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Upstream;
    /// # impl Plugin for Upstream {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest {
    /// #         Manifest::new("upstream", "1.0.0")
    /// #             .provider("anthropic.messages")
    /// #             .provider_endpoint("/upstream/v1/messages", "anthropic.messages")
    /// #     }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Upstream) }
    /// #     async fn on_prepare_upstream(&self, req: ProviderRequest) -> Result<UpstreamRequest, PluginError> {
    /// #         Ok(UpstreamRequest {
    /// #             method: "POST".into(),
    /// #             url: "https://api.example.test/v1/messages".into(),
    /// #             body: req.body,
    /// #             stream: req.stream,
    /// #             ..UpstreamRequest::default()
    /// #         })
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Upstream>().unwrap();
    /// let upstream = plugin
    ///     .prepare_upstream(ProviderRequest {
    ///         endpoint: "/upstream/v1/messages".into(),
    ///         client_format: "anthropic.messages".into(),
    ///         native_format: String::new(),
    ///         stream: false,
    ///         model: None,
    ///         headers: Headers::default(),
    ///         query: String::new(),
    ///         body: b"{}".to_vec(),
    ///         request_id: "r1".into(),
    ///         attempt: None,
    ///         body_members: Vec::new(),
    ///     })
    ///     .unwrap();
    /// assert_eq!(upstream.url, "https://api.example.test/v1/messages");
    /// ```
    pub fn prepare_upstream(&self, req: ProviderRequest) -> Result<UpstreamRequest, PluginError> {
        // The manifest's endpoints, then those the config added (1.3), each
        // with its upstream format as the host mounts it.
        let provider = self.manifest.provider.as_ref();
        let declared = provider.into_iter().flat_map(|spec| spec.endpoints.iter());
        let native = declared
            .chain(&self.configured.provider_endpoints)
            .find(|endpoint| endpoint.path == req.endpoint)
            .map(|endpoint| {
                endpoint
                    .native_format
                    .clone()
                    .or_else(|| provider.map(|spec| spec.native_format.clone()))
                    .unwrap_or_default()
            })
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "plugin {} declares no provider endpoint {}",
                    self.manifest.name, req.endpoint
                ))
            })?;
        let input = protocol::ProviderPrepareInput {
            endpoint: req.endpoint,
            client_format: req.client_format,
            native_format: if req.native_format.is_empty() {
                native
            } else {
                req.native_format
            },
            stream: req.stream,
            model: req.model,
            request: protocol::RequestHead {
                method: "POST".to_owned(),
                path: String::new(),
                query: req.query,
                headers: req.headers.0,
                request_id: req.request_id,
            },
            attempt: req.attempt,
            // As the host indexes a body it read (an index the test gave
            // is sent as it is, to try what a plugin makes of a wrong one).
            body_members: if req.body_members.is_empty() {
                crate::hook_wire::index_object(&req.body).unwrap_or_default()
            } else {
                req.body_members
            },
        };
        let (output, body) = self.call::<_, protocol::ProviderPrepareOutput>(
            op::PROVIDER_PREPARE,
            &input,
            req.body,
        )?;
        Ok(UpstreamRequest {
            method: output.method,
            url: output.url,
            headers: Headers(output.headers),
            body,
            stream: output.stream,
            model_alias: output.model_alias,
            timeout: (output.timeout_ms > 0).then(|| Duration::from_millis(output.timeout_ms)),
            account: output.account,
            retry: output.retry,
            delay: (output.delay_ms > 0).then(|| Duration::from_millis(output.delay_ms)),
            exhausted: output.exhausted,
        })
    }

    /// Converts `conversion` with the plugin's format adapter, as the host does
    /// on an adapter endpoint (`format.convert`). Fails with
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the manifest
    /// declares no adapter between `conversion.from` and `conversion.to` (in
    /// either direction: the host converts answers back from `to` to `from`).
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct Upper;
    /// # impl Plugin for Upper {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest {
    /// #         Manifest::new("upper", "1.0.0").format_adapter("example.upper", "openai.chat_completions", 100)
    /// #     }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(Upper) }
    /// #     async fn on_format_convert(&self, conversion: FormatConversion) -> Result<Vec<u8>, PluginError> {
    /// #         Ok(conversion.body.to_ascii_uppercase())
    /// #     }
    /// # }
    /// let plugin = MockHost::new().start::<Upper>().unwrap();
    /// let body = plugin
    ///     .format_convert(FormatConversion {
    ///         from: "openai.chat_completions".into(),
    ///         to: "example.upper".into(),
    ///         kind: ConversionKind::Response,
    ///         stream: 0,
    ///         body: b"hi".to_vec(),
    ///     })
    ///     .unwrap();
    /// assert_eq!(body, b"HI");
    /// ```
    pub fn format_convert(&self, conversion: FormatConversion) -> Result<Vec<u8>, PluginError> {
        let declared = self.manifest.format_adapters.iter().any(|adapter| {
            (adapter.from == conversion.from && adapter.to == conversion.to)
                || (adapter.from == conversion.to && adapter.to == conversion.from)
        });
        if !declared {
            return Err(PluginError::not_found(format!(
                "plugin {} declares no format adapter between {} and {}",
                self.manifest.name, conversion.from, conversion.to
            )));
        }
        let input = protocol::FormatConvertInput {
            from: conversion.from,
            to: conversion.to,
            kind: conversion.kind.as_str().to_owned(),
            stream: conversion.stream,
        };
        let (_, body) = self.call::<_, Value>(
            <ops::FormatConvert as Operation>::NAME,
            &input,
            conversion.body,
        )?;
        Ok(body)
    }

    /// Asks the plugin for its health.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(P) }
    /// # }
    /// let plugin = MockHost::new().start::<P>().unwrap();
    /// assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
    /// ```
    pub fn health(&self) -> Result<Health, PluginError> {
        let (output, _) =
            self.call::<_, protocol::HealthOutput>(op::HEALTH, &Value::Null, Vec::new())?;
        let status = match output.status.as_str() {
            "healthy" => HealthStatus::Healthy,
            "degraded" => HealthStatus::Degraded,
            _ => HealthStatus::Unhealthy,
        };
        Ok(Health::with(status, output.details))
    }

    /// Shuts the plugin down, as the host does before it exits.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(P) }
    /// #     async fn on_shutdown(&self) { info!("bye") }
    /// # }
    /// let host = MockHost::new();
    /// host.start::<P>().unwrap().shutdown().unwrap();
    /// assert!(host.logged("bye"));
    /// ```
    pub fn shutdown(&self) -> Result<(), PluginError> {
        self.call::<_, Value>(op::SHUTDOWN, &Value::Null, Vec::new())?;
        Ok(())
    }

    /// Sends any operation, for operations this mock has no method for; `meta`
    /// is the JSON payload, the answer is the reply's JSON and body.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> { Ok(P) }
    /// # }
    /// let plugin = MockHost::new().start::<P>().unwrap();
    /// let error = plugin.call_operation("stream.chunk", json!({}), Vec::new()).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::Unsupported);
    /// ```
    pub fn call_operation(
        &self,
        operation: &str,
        meta: Value,
        body: Vec<u8>,
    ) -> Result<(Value, Vec<u8>), PluginError> {
        self.call::<_, Value>(operation, &meta, body)
    }

    /// Runs the futures the plugin spawned until they finish or stall. Each
    /// operation already does this; call it when one was left running (a
    /// spawned loop is cut off after a bounded number of rounds) or after the
    /// plugin spawned from a thread of its own.
    ///
    /// ```
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # use ccproxy_plugin_abi::testing::MockHost;
    /// # struct P;
    /// # impl Plugin for P {
    /// #     type Config = ();
    /// #     fn manifest() -> Manifest { Manifest::new("p", "1.0.0") }
    /// #     async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
    /// #         ctx.emit("custom.started", json!({}));
    /// #         Ok(P)
    /// #     }
    /// # }
    /// let host = MockHost::new();
    /// let plugin = host.start::<P>().unwrap();
    /// plugin.run_spawned();
    /// assert_eq!(host.pending_spawned(), 0);
    /// assert_eq!(host.emitted()[0].0, "custom.started");
    /// ```
    pub fn run_spawned(&self) {
        self.host.drive(async {});
    }

    fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        operation: &str,
        meta: &I,
        body: Vec<u8>,
    ) -> Result<(O, Vec<u8>), PluginError> {
        let meta = serde_json::to_string(meta).map_err(|error| {
            PluginError::internal(format!("mock host could not encode {operation}: {error}"))
        })?;
        let input = Message {
            meta: meta.into(),
            body: body.into(),
        };
        let future = self.object.call(RString::from(operation), input);
        match self.host.drive(future) {
            RResult::ROk(reply) => Ok((parse_meta(&reply.meta)?, reply.body.into_vec())),
            RResult::RErr(error) => Err(PluginError::from_abi(error)),
        }
    }
}

impl Response {
    /// Takes in what a stream's last chunk reported (plugin API 1.3), as the
    /// host does.
    fn reported_at_end(&mut self, end: Option<protocol::RouteStreamChunk>) {
        let Some(end) = end else { return };
        self.usage = end.usage.or(self.usage);
        if let (Some(by), Some(model)) = (&mut self.answered_by, end.model) {
            by.model = Some(model);
        }
    }
}

/// A request for [`TestPlugin::route`] from a method and a path with an
/// optional query (`/hello/greet?name=x`).
///
/// ```
/// use ccproxy_plugin_abi::testing::request;
/// let req = request("get", "/hello/greet?name=x");
/// assert_eq!((req.method.as_str(), req.path.as_str(), req.query.as_str()), ("GET", "/hello/greet", "name=x"));
/// ```
pub fn request(method: &str, uri: &str) -> Request {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    Request {
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        query: query.to_owned(),
        ..Request::default()
    }
}

/// Like [`request`], with `body` serialised as the JSON body and
/// `content-type: application/json`.
///
/// ```
/// use ccproxy_plugin_abi::{json, testing::json_request};
/// let req = json_request("POST", "/echo", &json!({"name": "x"}));
/// assert_eq!(req.headers.get("content-type"), Some("application/json"));
/// ```
pub fn json_request(method: &str, uri: &str, body: &Value) -> Request {
    let mut req = request(method, uri);
    req.headers.set("content-type", "application/json");
    req.body = body.to_string().into_bytes();
    req
}

fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("test-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Matches `path` against a route pattern with `{name}` (one segment) and
/// `{*name}` (the rest) placeholders; returns the captured values.
fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut path_segments = path.trim_end_matches('/').split('/');
    let mut pattern_segments = pattern.trim_end_matches('/').split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(expected), actual) => {
                if let Some(name) = expected
                    .strip_prefix("{*")
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    let rest: Vec<&str> = actual.into_iter().chain(path_segments).collect();
                    params.push((name.to_owned(), rest.join("/")));
                    return Some(params);
                }
                let actual = actual?;
                match expected
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    Some(name) if !actual.is_empty() => {
                        params.push((name.to_owned(), actual.to_owned()))
                    }
                    Some(_) => return None,
                    None if expected == actual => {}
                    None => return None,
                }
            }
            (None, Some(_)) => return None,
        }
    }
}

// Internal: the SDK keeps one host handle for logging per process (see the
// module docs), so log records are routed to the mock host whose `drive` runs
// on this thread, falling back to the host the handle belongs to.
thread_local! {
    static CURRENT: RefCell<Option<Arc<Records>>> = const { RefCell::new(None) };
}

struct CurrentRecords(Option<Arc<Records>>);

impl CurrentRecords {
    fn enter(records: Arc<Records>) -> Self {
        Self(CURRENT.with(|current| current.replace(Some(records))))
    }
}

impl Drop for CurrentRecords {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The host object handed to the plugin.
#[derive(Clone)]
struct MockHostObject {
    settings: Arc<Settings>,
    records: Arc<Records>,
}

impl MockHostObject {
    fn log_records(&self) -> Arc<Records> {
        CURRENT
            .with(|current| current.borrow().clone())
            .unwrap_or_else(|| self.records.clone())
    }

    fn offers(&self, capability: &str) -> bool {
        self.settings
            .capabilities
            .iter()
            .any(|offered| offered == capability)
    }

    /// Sends the request in `input` to the HTTP handler, recording it.
    fn http(&self, input: &Message) -> Result<HttpResponse, PluginError> {
        let head: protocol::HttpRequestHead = parse_meta(&input.meta)?;
        let request = HttpRequest {
            method: head.method,
            url: head.url,
            headers: Headers(head.headers),
            body: input.body.to_vec(),
            timeout: (head.timeout_ms > 0).then(|| Duration::from_millis(head.timeout_ms)),
        };
        lock(&self.records.http_requests).push(request.clone());
        let handler = self.settings.http.clone().ok_or_else(|| {
            PluginError::unavailable(format!(
                "mock host has no HTTP handler for {} {}",
                request.method, request.url
            ))
        })?;
        handler(request)
    }

    /// The operations added in plugin API 1.2; `None` for the others.
    fn answer_1_2(&self, operation: &str, input: &Message) -> Option<Result<Message, PluginError>> {
        let answer = match operation {
            <ops::HttpStream as Operation>::NAME => self.http(input).and_then(|response| {
                let stream = self.records.next_id.fetch_add(1, Ordering::Relaxed);
                lock(&self.records.http_streams).insert(stream, response.body);
                let head = protocol::HttpResponseHead {
                    status: response.status,
                    headers: response.headers.0,
                    stream: Some(stream),
                };
                encode(&head, Vec::new())
            }),
            <ops::HttpStreamNext as Operation>::NAME => {
                parse_meta::<protocol::StreamRef>(&input.meta).and_then(|input| {
                    // The whole body as one piece, then the end.
                    let body = lock(&self.records.http_streams).remove(&input.stream);
                    match body {
                        Some(body) if !body.is_empty() => {
                            lock(&self.records.http_streams).insert(input.stream, Vec::new());
                            encode(&protocol::StreamChunk { end: false }, body)
                        }
                        Some(_) => encode(&protocol::StreamChunk { end: true }, Vec::new()),
                        None => Err(PluginError::not_found(format!(
                            "HTTP stream {} is unknown",
                            input.stream
                        ))),
                    }
                })
            }
            <ops::HttpStreamCancel as Operation>::NAME => {
                parse_meta::<protocol::StreamRef>(&input.meta).map(|input| {
                    lock(&self.records.http_streams).remove(&input.stream);
                    Message::default()
                })
            }
            <ops::Blocking as Operation>::NAME => {
                parse_meta::<protocol::BlockingInput>(&input.meta).and_then(|input| {
                    // At once, on this thread: the mock has no other.
                    raw::catch_panic(|| {
                        crate::blocking::run(input.job).map_err(PluginError::into_abi)
                    })
                    .map_err(PluginError::from_abi)?;
                    Ok(Message::default())
                })
            }
            <ops::PluginsStatus as Operation>::NAME => {
                encode(&self.settings.plugins_status, Vec::new())
            }
            <ops::ProcessSpawn as Operation>::NAME => parse_meta(&input.meta)
                .and_then(|spec| self.spawn_process(spec))
                .and_then(|spawned| encode(&spawned, Vec::new())),
            <ops::ProcessWrite as Operation>::NAME => {
                parse_meta::<protocol::ProcessWriteInput>(&input.meta).and_then(|write| {
                    self.with_child(write.process, |child| child.write(&input.body, write.close))?;
                    Ok(Message::default())
                })
            }
            <ops::ProcessRead as Operation>::NAME => {
                parse_meta::<protocol::ProcessReadInput>(&input.meta).and_then(|read| {
                    let piece = self.with_child(read.process, |child| child.read(read.stderr))?;
                    encode(
                        &protocol::StreamChunk {
                            end: piece.is_empty(),
                        },
                        piece,
                    )
                })
            }
            <ops::ProcessWait as Operation>::NAME => {
                parse_meta::<protocol::ProcessRef>(&input.meta).and_then(|wait| {
                    let exit = self.with_child(wait.process, MockChild::wait)?;
                    encode(&exit, Vec::new())
                })
            }
            <ops::ProcessKill as Operation>::NAME => {
                parse_meta::<protocol::ProcessRef>(&input.meta).map(|kill| {
                    // Dropping the child kills it.
                    lock(&self.records.processes).remove(&kill.process);
                    Message::default()
                })
            }
            _ => return None,
        };
        Some(answer)
    }

    fn spawn_process(
        &self,
        spec: protocol::ProcessSpawnInput,
    ) -> Result<protocol::ProcessSpawnOutput, PluginError> {
        let mut command = std::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if spec.clear_env {
            command.env_clear();
        }
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|error| {
            let kind = if error.kind() == std::io::ErrorKind::NotFound {
                crate::ErrorKind::NotFound
            } else {
                crate::ErrorKind::Internal
            };
            PluginError::new(kind, format!("cannot start {}: {error}", spec.program))
        })?;
        let pid = child.id();
        let process = self.records.next_id.fetch_add(1, Ordering::Relaxed);
        let mock = MockChild {
            program: spec.program,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
        };
        lock(&self.records.processes).insert(process, mock);
        Ok(protocol::ProcessSpawnOutput { process, pid })
    }

    fn with_child<T>(
        &self,
        process: u64,
        f: impl FnOnce(&mut MockChild) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let mut processes = lock(&self.records.processes);
        let child = processes.get_mut(&process).ok_or_else(|| {
            PluginError::not_found(format!(
                "process {process} is unknown (never started, or killed)"
            ))
        })?;
        f(child)
    }

    fn answer(&self, operation: &str, input: Message) -> Result<Message, PluginError> {
        let needed = match operation {
            host_op::SLEEP => capability::SLEEP,
            host_op::HTTP => capability::HTTP,
            host_op::SERVICE_CALL => capability::SERVICES,
            host_op::EMIT => capability::EMIT,
            <ops::HttpStream as Operation>::NAME
            | <ops::HttpStreamNext as Operation>::NAME
            | <ops::HttpStreamCancel as Operation>::NAME => capability::HTTP_STREAM,
            <ops::Blocking as Operation>::NAME => capability::BLOCKING,
            <ops::ProcessSpawn as Operation>::NAME
            | <ops::ProcessWrite as Operation>::NAME
            | <ops::ProcessRead as Operation>::NAME
            | <ops::ProcessWait as Operation>::NAME
            | <ops::ProcessKill as Operation>::NAME => capability::PROCESS,
            <ops::PluginsStatus as Operation>::NAME => capability::PLUGINS_STATUS,
            other => {
                return Err(PluginError::unsupported(format!(
                    "mock host does not know operation {other}"
                )));
            }
        };
        if !self.offers(needed) {
            return Err(PluginError::unsupported(format!(
                "host does not offer capability {needed} (operation {operation})"
            )));
        }
        if let Some(answer) = self.answer_1_2(operation, &input) {
            return answer;
        }
        match operation {
            host_op::SLEEP => {
                let sleep: protocol::SleepInput = parse_meta(&input.meta)?;
                lock(&self.records.sleeps).push(Duration::from_millis(sleep.millis));
                Ok(Message::default())
            }
            host_op::HTTP => {
                let response = self.http(&input)?;
                let head = protocol::HttpResponseHead {
                    status: response.status,
                    headers: response.headers.0,
                    stream: None,
                };
                encode(&head, response.body)
            }
            host_op::SERVICE_CALL => {
                let call: protocol::ServiceInput = parse_meta(&input.meta)?;
                lock(&self.records.service_calls).push(ServiceCall {
                    service: call.service.clone(),
                    method: call.method.clone(),
                    args: call.args.clone(),
                    caller: call.caller.clone(),
                });
                let handler = self
                    .settings
                    .services
                    .get(&call.service)
                    .cloned()
                    .ok_or_else(|| {
                        PluginError::unavailable(format!(
                            "no plugin provides service {}",
                            call.service
                        ))
                    })?;
                let value = handler(&call.method, call.args)?;
                encode(&value, Vec::new())
            }
            _ => {
                let emit: protocol::EmitInput = parse_meta(&input.meta)?;
                lock(&self.records.emitted).push((emit.event, emit.data));
                Ok(Message::default())
            }
        }
    }
}

fn encode<T: Serialize>(meta: &T, body: Vec<u8>) -> Result<Message, PluginError> {
    let meta = serde_json::to_string(meta).map_err(|error| {
        PluginError::internal(format!("mock host could not encode its answer: {error}"))
    })?;
    Ok(Message {
        meta: meta.into(),
        body: body.into(),
    })
}

/// A child process the mock started for the plugin; killed when dropped.
struct MockChild {
    program: String,
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
}

impl MockChild {
    fn write(&mut self, bytes: &[u8], close: bool) -> Result<(), PluginError> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            PluginError::invalid(format!("the stdin of {} is already closed", self.program))
        })?;
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|error| {
                PluginError::unavailable(format!("cannot write to {}: {error}", self.program))
            })?;
        if close {
            self.stdin = None;
        }
        Ok(())
    }

    /// The next piece of stdout or stderr; empty at the end.
    fn read(&mut self, stderr: bool) -> Result<Vec<u8>, PluginError> {
        use std::io::Read as _;
        let mut buffer = vec![0u8; 64 * 1024];
        let read = if stderr {
            self.stderr.as_mut().map(|pipe| pipe.read(&mut buffer))
        } else {
            self.stdout.as_mut().map(|pipe| pipe.read(&mut buffer))
        };
        let read = read.unwrap_or(Ok(0)).map_err(|error| {
            PluginError::internal(format!("cannot read from {}: {error}", self.program))
        })?;
        buffer.truncate(read);
        Ok(buffer)
    }

    fn wait(&mut self) -> Result<protocol::ProcessExit, PluginError> {
        let status = self.child.wait().map_err(|error| {
            PluginError::internal(format!("cannot wait for {}: {error}", self.program))
        })?;
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        #[cfg(not(unix))]
        let signal = None;
        Ok(protocol::ProcessExit {
            code: status.code(),
            signal,
        })
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn level_from(raw_level: u8) -> Level {
    match raw_level {
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        4 => Level::Debug,
        _ => Level::Trace,
    }
}

/// Returns `Pending` once (waking itself), then `Ready`, so a plugin's
/// `loop { sleep().await }` yields to the mock's executor between rounds.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl HostObject for MockHostObject {
    fn api_version(&self) -> RString {
        RString::from(API_VERSION)
    }

    fn log_enabled(&self, level: u8, _target: RStr<'_>) -> bool {
        level_from(level) <= *lock(&self.log_records().max_level)
    }

    fn log(&self, level: u8, _target: RStr<'_>, message: RStr<'_>) {
        lock(&self.log_records().logs).push((level_from(level), message.as_str().to_owned()));
    }

    fn spawn(&self, future: FfiFuture<()>) {
        lock(&self.records.spawned).push(future);
    }

    fn call(&self, op: RString, input: Message) -> FfiFuture<CallResult> {
        let host = self.clone();
        async move {
            let is_sleep = op.as_str() == host_op::SLEEP;
            let result = host.answer(op.as_str(), input);
            if is_sleep {
                YieldOnce(false).await;
            }
            match result {
                Ok(message) => RResult::ROk(message),
                Err(error) => RResult::RErr(error.into_abi()),
            }
        }
        .into_ffi()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use serde::Deserialize;

    use super::*;
    use crate::prelude::*;

    #[derive(Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct ProbeConfig {
        greeting: String,
        retries: u32,
    }

    impl Default for ProbeConfig {
        fn default() -> Self {
            Self {
                greeting: "Hello".into(),
                retries: 2,
            }
        }
    }

    /// A plugin that uses every host operation and panics on request.
    struct Probe {
        ctx: Context,
        config: ProbeConfig,
        task_runs: AtomicUsize,
    }

    impl Plugin for Probe {
        type Config = ProbeConfig;

        fn manifest() -> Manifest {
            Manifest::new("probe", "1.0.0")
                .provides("probe")
                .route(
                    "/probe",
                    [
                        Route::get("/greet"),
                        Route::get("/panic"),
                        Route::get("/items/{id}"),
                        Route::get("/files/{*rest}"),
                        Route::post("/upstream"),
                        Route::get("/nap"),
                        Route::get("/spawn"),
                        Route::get("/service"),
                    ],
                )
                .hook(
                    "probe_hook",
                    ["request.completed", "provider.request.prepared"],
                    500,
                )
                .task("probe_task", 1.0)
        }

        async fn init(ctx: Context, config: ProbeConfig) -> Result<Self, PluginError> {
            info!("probe initialised with {}", config.greeting);
            Ok(Probe {
                ctx,
                config,
                task_runs: AtomicUsize::new(0),
            })
        }

        async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
            match req.route.as_str() {
                "/probe/greet" => Ok(Response::text(
                    200,
                    format!("{} {}", self.config.greeting, req.query),
                )),
                "/probe/panic" => panic!("route panicked on purpose"),
                "/probe/items/{id}" | "/probe/files/{*rest}" => {
                    Ok(Response::json(200, &req.params))
                }
                "/probe/upstream" => {
                    let response = self
                        .ctx
                        .http(
                            HttpRequest::post("http://upstream.test/echo", req.body)
                                .header("x-probe", "1"),
                        )
                        .await?;
                    Ok(Response::new(response.status, response.body))
                }
                "/probe/nap" => {
                    self.ctx.sleep(Duration::from_millis(1500)).await;
                    self.ctx.sleep(Duration::from_secs(2)).await;
                    Ok(Response::text(200, "rested"))
                }
                "/probe/spawn" => {
                    let ctx = self.ctx.clone();
                    self.ctx.spawn(async move {
                        ctx.sleep(Duration::from_millis(5)).await;
                        ctx.emit("custom.spawned", json!({"n": 1}));
                    });
                    self.ctx
                        .spawn(async { panic!("spawned future panicked on purpose") });
                    Ok(Response::text(202, "spawned"))
                }
                "/probe/service" => {
                    let value = self
                        .ctx
                        .call_service("other", "ask", json!({"q": 1}))
                        .await?;
                    Ok(Response::json(200, &value))
                }
                other => Err(PluginError::not_found(other.to_owned())),
            }
        }

        async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
            debug!("hook {} {}", hook.hook, hook.event.as_str());
            if hook.event.is_mutating() {
                let mut data = hook.data;
                data["seen"] = json!(true);
                data["body"] = json!(String::from_utf8_lossy(&hook.body));
                return Ok(HookOutcome::Modify { data, body: None });
            }
            Ok(HookOutcome::Continue)
        }

        async fn on_task(&self, task: String) -> Result<(), PluginError> {
            let runs = self.task_runs.fetch_add(1, Ordering::SeqCst) + 1;
            debug!("{task} run {runs}");
            Ok(())
        }

        async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
            Ok(
                json!({"method": call.method, "args": call.args, "caller": call.caller, "retries": self.config.retries}),
            )
        }

        async fn on_health(&self) -> Health {
            Health::with(
                HealthStatus::Degraded,
                json!({"task_runs": self.task_runs.load(Ordering::SeqCst)}),
            )
        }

        async fn on_shutdown(&self) {
            info!("probe shutting down");
        }
    }

    struct FailsInit;

    impl Plugin for FailsInit {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("fails_init", "1.0.0")
        }
        async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Err(PluginError::unavailable("token file missing"))
        }
    }

    struct PanicsInManifest;

    impl Plugin for PanicsInManifest {
        type Config = ();
        fn manifest() -> Manifest {
            panic!("manifest panicked on purpose")
        }
        async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Ok(PanicsInManifest)
        }
    }

    struct Looper;

    impl Plugin for Looper {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("looper", "1.0.0")
        }
        async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
            let handle = ctx.clone();
            ctx.spawn(async move {
                loop {
                    handle.sleep(Duration::from_secs(1)).await;
                }
            });
            Ok(Looper)
        }
    }

    fn start_probe(host: &MockHost) -> TestPlugin {
        host.start::<Probe>()
            .expect("probe starts on a default mock host")
    }

    #[test]
    fn start_runs_init_with_the_declared_defaults() {
        let host = MockHost::new();
        let plugin = start_probe(&host);
        assert_eq!(plugin.manifest().name, "probe");
        assert_eq!(
            plugin.manifest().config.defaults,
            json!({"greeting": "Hello", "retries": 2})
        );
        assert!(
            host.logs()
                .contains(&(Level::Info, "probe initialised with Hello".to_owned()))
        );
    }

    #[test]
    fn user_config_is_merged_over_the_defaults_without_enabled() {
        let host = MockHost::new().config(json!({"greeting": "Hi", "enabled": true}));
        let plugin = start_probe(&host);
        let answer = plugin.service("probe", "m", json!(null)).unwrap();
        assert_eq!(answer["retries"], 2);
        assert!(host.logged("initialised with Hi"));
    }

    #[test]
    fn an_unknown_config_key_refuses_the_plugin() {
        let error = MockHost::new()
            .config(json!({"greting": "Hi"}))
            .start::<Probe>()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(
            error
                .message()
                .contains("unknown config key plugins.probe.greting"),
            "{error}"
        );
    }

    #[test]
    fn nested_tables_merge_deeply_and_empty_tables_are_free_form() {
        #[derive(Serialize, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Limits {
            requests: u32,
            tokens: u32,
        }
        #[derive(Serialize, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct NestedConfig {
            limits: Limits,
            labels: std::collections::BTreeMap<String, String>,
        }
        struct Nested(Value);
        impl Plugin for Nested {
            type Config = NestedConfig;
            fn manifest() -> Manifest {
                Manifest::new("nested", "1.0.0")
            }
            async fn init(_ctx: Context, config: NestedConfig) -> Result<Self, PluginError> {
                Ok(Nested(serde_json::to_value(config)?))
            }
            async fn on_health(&self) -> Health {
                Health::with(HealthStatus::Healthy, self.0.clone())
            }
        }
        let host =
            MockHost::new().config(json!({"limits": {"tokens": 5}, "labels": {"team": "a"}}));
        let plugin = host.start::<Nested>().unwrap();
        assert_eq!(
            plugin.health().unwrap().details,
            json!({"limits": {"requests": 0, "tokens": 5}, "labels": {"team": "a"}})
        );
        let error = MockHost::new()
            .config(json!({"limits": {"token": 5}}))
            .start::<Nested>()
            .unwrap_err();
        assert!(
            error.message().contains("plugins.nested.limits.token"),
            "{error}"
        );
    }

    #[test]
    fn a_wrongly_typed_config_value_refuses_the_plugin() {
        let error = MockHost::new()
            .config(json!({"retries": "two"}))
            .start::<Probe>()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.message().starts_with("invalid config"), "{error}");
    }

    #[test]
    fn a_failing_init_is_returned() {
        let error = MockHost::new().start::<FailsInit>().unwrap_err();
        assert_eq!(error, PluginError::unavailable("token file missing"));
    }

    #[test]
    fn a_panicking_manifest_is_contained() {
        let error = MockHost::new().start::<PanicsInManifest>().unwrap_err();
        assert!(
            error.message().contains("manifest panicked on purpose"),
            "{error}"
        );
    }

    #[test]
    fn routes_match_patterns_and_fill_params() {
        let plugin = start_probe(&MockHost::new());
        let greet = plugin.route(request("GET", "/probe/greet?x=1")).unwrap();
        assert_eq!(
            (greet.status, greet.body.as_slice()),
            (200, b"Hello x=1".as_slice())
        );
        let item = plugin.route(request("GET", "/probe/items/7")).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&item.body).unwrap(),
            json!([["id", "7"]])
        );
        let file = plugin
            .route(request("GET", "/probe/files/a/b.txt"))
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&file.body).unwrap(),
            json!([["rest", "a/b.txt"]])
        );
    }

    #[test]
    fn unmatched_routes_answer_not_found_without_calling_the_plugin() {
        let plugin = start_probe(&MockHost::new());
        assert_eq!(
            plugin
                .route(request("POST", "/probe/greet"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            plugin
                .route(request("GET", "/probe/items"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            plugin
                .route(request("GET", "/elsewhere"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn a_panicking_route_fails_only_that_call() {
        let plugin = start_probe(&MockHost::new());
        let error = plugin.route(request("GET", "/probe/panic")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Panicked);
        assert_eq!(error.kind().http_status(), 500);
        assert!(error.message().contains("route panicked on purpose"));
        assert_eq!(
            plugin.route(request("GET", "/probe/greet")).unwrap().status,
            200
        );
    }

    #[test]
    fn http_goes_through_the_handler_and_is_recorded() {
        let host = MockHost::new().http(|req| {
            Ok(HttpResponse {
                status: 201,
                headers: Headers::default(),
                body: [b"echo:".as_slice(), &req.body].concat(),
            })
        });
        let plugin = start_probe(&host);
        let response = plugin
            .route(json_request("POST", "/probe/upstream", &json!(1)))
            .unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (201, b"echo:1".as_slice())
        );
        let sent = host.http_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].url.as_str()),
            ("POST", "http://upstream.test/echo")
        );
        assert_eq!(sent[0].headers.get("x-probe"), Some("1"));
    }

    #[test]
    fn http_errors_and_missing_handlers_reach_the_plugin() {
        let failing = MockHost::new()
            .http(|_| Err(PluginError::new(ErrorKind::Upstream, "connection refused")));
        let error = start_probe(&failing)
            .route(request("POST", "/probe/upstream"))
            .unwrap_err();
        assert_eq!(
            error,
            PluginError::new(ErrorKind::Upstream, "connection refused")
        );

        let error = start_probe(&MockHost::new())
            .route(request("POST", "/probe/upstream"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn missing_capabilities_answer_unsupported() {
        let host = MockHost::new()
            .capabilities([capability::SLEEP])
            .http(|_| Ok(HttpResponse::default()));
        let error = start_probe(&host)
            .route(request("POST", "/probe/upstream"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn sleeps_return_at_once_and_are_recorded() {
        let host = MockHost::new();
        let started = std::time::Instant::now();
        let response = start_probe(&host)
            .route(request("GET", "/probe/nap"))
            .unwrap();
        assert_eq!(response.body, b"rested");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            host.sleeps(),
            vec![Duration::from_millis(1500), Duration::from_secs(2)]
        );
    }

    #[test]
    fn spawned_futures_run_and_their_panics_are_logged() {
        let host = MockHost::new();
        let plugin = start_probe(&host);
        assert_eq!(
            plugin.route(request("GET", "/probe/spawn")).unwrap().status,
            202
        );
        assert_eq!(host.pending_spawned(), 0);
        assert_eq!(
            host.emitted(),
            vec![("custom.spawned".to_owned(), json!({"n": 1}))]
        );
        assert!(
            host.logs()
                .iter()
                .any(|(level, message)| *level == Level::Error
                    && message.contains("spawned future panicked on purpose"))
        );
    }

    #[test]
    fn an_endless_spawned_loop_does_not_hang_the_test() {
        let host = MockHost::new();
        let plugin = host.start::<Looper>().unwrap();
        assert_eq!(host.pending_spawned(), 1);
        assert!(host.logged("still running after"));
        let before = host.sleeps().len();
        plugin.run_spawned();
        assert!(host.sleeps().len() > before);
    }

    #[test]
    fn services_are_answered_by_handlers_and_recorded() {
        let host = MockHost::new().service("other", |method, args| {
            Ok(json!({"method": method, "args": args}))
        });
        let response = start_probe(&host)
            .route(request("GET", "/probe/service"))
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&response.body).unwrap(),
            json!({"method": "ask", "args": {"q": 1}})
        );
        let calls = host.service_calls();
        assert_eq!(
            (calls[0].service.as_str(), calls[0].caller.as_str()),
            ("other", "probe")
        );

        let error = start_probe(&MockHost::new())
            .route(request("GET", "/probe/service"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn provided_services_are_callable() {
        let plugin = start_probe(&MockHost::new());
        let answer = plugin
            .service("probe", "greet", json!({"name": "x"}))
            .unwrap();
        assert_eq!(
            answer,
            json!({"method": "greet", "args": {"name": "x"}, "caller": TEST_CALLER, "retries": 2})
        );
        assert_eq!(
            plugin
                .service("nope", "greet", json!({}))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn hooks_go_to_the_subscribed_hook() {
        let host = MockHost::new();
        let plugin = start_probe(&host);
        let outcome = plugin
            .hook(HookEvent::RequestCompleted, json!({"request_id": "r1"}))
            .unwrap();
        assert!(matches!(outcome, HookOutcome::Continue));
        assert!(host.logged("hook probe_hook request.completed"));
        let outcome = plugin
            .hook(HookEvent::ProviderRequestPrepared, json!({"url": "u"}))
            .unwrap();
        assert!(
            matches!(outcome, HookOutcome::Modify { data, body: None } if data == json!({"url": "u", "seen": true, "body": ""}))
        );
        assert_eq!(
            plugin
                .hook(HookEvent::AppReady, json!({}))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn hook_data_is_read_in_either_layout_with_the_body_after_it() {
        let host = MockHost::new();
        let plugin = start_probe(&host);
        // The 1.0 layout: the data inside the call's JSON.
        let (meta, _) = plugin
            .call_operation(
                op::HOOK,
                json!({"hook": "probe_hook", "event": "provider.request.prepared", "timestamp_ms": 1, "data": {"url": "u"}}),
                b"body".to_vec(),
            )
            .unwrap();
        assert_eq!(
            meta["data"],
            json!({"url": "u", "seen": true, "body": "body"})
        );
        // The 1.1 layout: `data_len` bytes of data, then the event's body.
        let (meta, body) = plugin
            .call_operation(
                op::HOOK,
                json!({"hook": "probe_hook", "event": "provider.request.prepared", "timestamp_ms": 1, "data": null, "data_len": 11}),
                br#"{"url":"v"}the body"#.to_vec(),
            )
            .unwrap();
        assert_eq!(
            meta["data"],
            json!({"url": "v", "seen": true, "body": "the body"})
        );
        assert!(body.is_empty(), "the body is not replaced: {body:?}");
        // A length beyond the body is refused, not read past.
        let error = plugin
            .call_operation(
                op::HOOK,
                json!({"hook": "probe_hook", "event": "request.completed", "data_len": 99}),
                b"{}".to_vec(),
            )
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.message().contains("data_len"), "{error}");
    }

    #[test]
    fn a_hook_call_reads_only_the_keys_it_names() {
        #[derive(serde::Deserialize)]
        struct Completed<'a> {
            path: &'a str,
            status_code: u16,
        }
        let call = HookCall::new(
            "h",
            HookEvent::RequestCompleted,
            1,
            None,
            r#"{"path":"/v1/messages","status_code":200,"headers":{"x":"y"}}"#,
            Vec::new(),
        )
        .unwrap();
        let completed: Completed = call.data().unwrap();
        assert_eq!(
            (completed.path, completed.status_code),
            ("/v1/messages", 200)
        );
        let wrong = call.data::<Vec<u8>>().unwrap_err();
        assert!(
            wrong
                .message()
                .starts_with("request.completed data does not have the expected shape"),
            "{wrong}"
        );
        assert!(HookCall::new("h", HookEvent::RequestCompleted, 1, None, "{", Vec::new()).is_err());
        let context = call.into_context().unwrap();
        assert_eq!(context.data["headers"]["x"], "y");
    }

    #[test]
    fn tasks_health_and_shutdown() {
        let host = MockHost::new();
        let plugin = start_probe(&host);
        plugin.task("probe_task").unwrap();
        plugin.task("probe_task").unwrap();
        assert!(host.logged("probe_task run 2"));
        assert_eq!(
            plugin.task("unknown").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            plugin.health().unwrap(),
            Health::with(HealthStatus::Degraded, json!({"task_runs": 2}))
        );
        plugin.shutdown().unwrap();
        assert!(host.logged("probe shutting down"));
    }

    #[test]
    fn log_level_filter_skips_records() {
        let host = MockHost::new().max_log_level(Level::Info);
        let plugin = start_probe(&host);
        plugin.task("probe_task").unwrap();
        assert!(!host.logged("probe_task run"));
        assert!(host.logged("probe initialised"));
    }

    /// A provider with two keys that fails over between them (plugin API 1.3).
    struct TwoKeys;

    impl Plugin for TwoKeys {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("two_keys", "1.0.0")
                .provider("anthropic.messages")
                .provider_endpoint("/two/v1/messages", "anthropic.messages")
        }
        async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Ok(TwoKeys)
        }
        fn provider_retries(&self) -> bool {
            true
        }
        async fn on_prepare_upstream(
            &self,
            req: ProviderRequest,
        ) -> Result<UpstreamRequest, PluginError> {
            let account = match &req.attempt {
                None => "first",
                Some(attempt) if attempt.previous_account.as_deref() == Some("first") => "second",
                Some(attempt) => {
                    return Ok(UpstreamRequest::exhausted(
                        format!(
                            "both keys failed, the last with {}",
                            attempt.previous_status
                        ),
                        attempt.retry_after_ms.map(Duration::from_millis),
                    ));
                }
            };
            Ok(UpstreamRequest {
                method: "POST".into(),
                url: "https://api.example.test/v1/messages".into(),
                body: req.body,
                ..UpstreamRequest::default()
            }
            .with_account(account)
            .with_retries(3)
            .after(Duration::from_millis(if account == "second" {
                250
            } else {
                0
            })))
        }
    }

    #[test]
    fn provider_retries_travel_both_ways() {
        let plugin = MockHost::new().start::<TwoKeys>().unwrap();
        assert!(plugin.provider_retries());
        assert!(!start_probe(&MockHost::new()).provider_retries());
        let mut request = ProviderRequest {
            endpoint: "/two/v1/messages".into(),
            body: b"{}".to_vec(),
            ..ProviderRequest::default()
        };
        let first = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(first.account.as_deref(), Some("first"));
        assert_eq!(first.retry, Some(crate::RetryPolicy { max_attempts: 3 }));
        assert_eq!((first.delay, first.exhausted.as_ref()), (None, None));
        request.attempt = Some(ProviderAttempt {
            number: 2,
            previous_status: 429,
            previous_account: Some("first".into()),
            retry_after_ms: Some(7000),
        });
        assert!(request.is_retry());
        let second = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(second.account.as_deref(), Some("second"));
        assert_eq!(second.delay, Some(Duration::from_millis(250)));
        request.attempt = Some(ProviderAttempt {
            number: 3,
            previous_status: 529,
            previous_account: Some("second".into()),
            retry_after_ms: Some(7000),
        });
        let last = plugin.prepare_upstream(request).unwrap();
        let exhausted = last.exhausted.expect("exhausted");
        assert_eq!(exhausted.message, "both keys failed, the last with 529");
        assert_eq!(exhausted.retry_after_ms, Some(7000));
        // None of it is on the wire for a provider that does not use it.
        let plain = protocol::ProviderPrepareOutput::default();
        let wire = serde_json::to_value(&plain).unwrap();
        for key in ["account", "retry", "delay_ms", "exhausted"] {
            assert!(wire.get(key).is_none(), "{key} in {wire}");
        }
        let input: protocol::ProviderPrepareInput = serde_json::from_value(json!({
            "endpoint": "/e", "client_format": "anthropic.messages",
            "native_format": "anthropic.messages", "request": {"method": "POST", "path": "/e"}
        }))
        .unwrap();
        assert!(
            input.attempt.is_none(),
            "a 1.2 host's input reads as a first attempt"
        );
    }

    #[test]
    fn undeclared_provider_endpoints_are_not_found() {
        let plugin = start_probe(&MockHost::new());
        let error = plugin
            .prepare_upstream(ProviderRequest {
                endpoint: "/probe/v1/messages".into(),
                client_format: "anthropic.messages".into(),
                native_format: String::new(),
                stream: false,
                model: None,
                headers: Headers::default(),
                query: String::new(),
                body: Vec::new(),
                request_id: "r1".into(),
                attempt: None,
                body_members: Vec::new(),
            })
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn unknown_operations_are_unsupported() {
        let plugin = start_probe(&MockHost::new());
        let error = plugin
            .call_operation("stream.chunk", json!({}), Vec::new())
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn the_data_dir_exists_and_is_removed_on_drop() {
        struct DirProbe(PathBuf);
        impl Plugin for DirProbe {
            type Config = ();
            fn manifest() -> Manifest {
                Manifest::new("dir_probe", "1.0.0")
            }
            async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
                Ok(DirProbe(ctx.data_dir().to_owned()))
            }
            async fn on_health(&self) -> Health {
                Health::with(HealthStatus::Healthy, json!(self.0))
            }
        }
        let plugin = MockHost::new().start::<DirProbe>().unwrap();
        let dir = PathBuf::from(plugin.health().unwrap().details.as_str().unwrap());
        assert!(dir.is_dir());
        drop(plugin);
        assert!(!dir.exists());
    }

    #[test]
    fn patterns() {
        fn check(pattern: &str, path: &str, expected: Option<&[(&str, &str)]>) {
            let expected = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(
                match_pattern(pattern, path),
                expected,
                "{pattern} vs {path}"
            );
        }
        check("/a/b", "/a/b", Some(&[]));
        check("/a/b", "/a/b/", Some(&[]));
        check("/a", "/a/b", None);
        check("/a/{id}", "/a/1", Some(&[("id", "1")]));
        check("/a/{id}", "/a/", None);
        check("/a/{*rest}", "/a/x/y", Some(&[("rest", "x/y")]));
        check("/a/{*rest}", "/a", Some(&[("rest", "")]));
    }

    /// Uses the host operations of plugin API 1.2.
    struct Services {
        ctx: Context,
    }

    impl Plugin for Services {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("services", "1.0.0").route(
                "/s",
                [
                    Route::get("/blocking"),
                    Route::get("/panic"),
                    Route::get("/stream"),
                    Route::get("/status"),
                    Route::get("/process"),
                    Route::get("/missing"),
                ],
            )
        }
        async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Ok(Services { ctx })
        }
        async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
            match req.route.as_str() {
                "/s/blocking" => {
                    let sum = self.ctx.blocking(|| (1..=10u32).sum::<u32>()).await?;
                    Ok(Response::text(200, sum.to_string()))
                }
                "/s/panic" => {
                    self.ctx
                        .blocking(|| -> u32 { panic!("job panicked on purpose") })
                        .await?;
                    Ok(Response::text(200, "unreachable"))
                }
                "/s/stream" => {
                    let stream = self
                        .ctx
                        .http_stream(HttpRequest::get("http://upstream.test/sse"))
                        .await?;
                    let mut pieces = 0;
                    let mut body = stream.body;
                    let mut all = Vec::new();
                    while let Some(piece) = body.next().await {
                        pieces += 1;
                        all.extend_from_slice(&piece?);
                    }
                    Ok(Response::text(
                        stream.status,
                        format!("{pieces}:{}", String::from_utf8_lossy(&all)),
                    ))
                }
                "/s/status" => Ok(Response::json(200, &self.ctx.plugins_status().await?)),
                "/s/process" => {
                    let mut child = self.ctx.spawn_process(Command::new("cat")).await?;
                    child.write("hi\n").await?;
                    child.close_stdin().await?;
                    let mut out = Vec::new();
                    while let Some(piece) = child.read_stdout().await? {
                        out.extend_from_slice(&piece);
                    }
                    let exit = child.wait().await?;
                    Ok(Response::text(
                        200,
                        format!("{}{:?}", String::from_utf8_lossy(&out), exit.code),
                    ))
                }
                "/s/missing" => {
                    self.ctx
                        .spawn_process(Command::new("ccproxy-no-such-program"))
                        .await?;
                    Ok(Response::text(200, "started?"))
                }
                _ => Err(PluginError::not_found("no route")),
            }
        }
    }

    #[test]
    fn blocking_jobs_run_inline_and_their_panics_are_errors() {
        let plugin = MockHost::new().start::<Services>().unwrap();
        assert_eq!(
            plugin.route(request("GET", "/s/blocking")).unwrap().body,
            b"55"
        );
        let error = plugin.route(request("GET", "/s/panic")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Panicked);
        assert!(
            error.message().contains("job panicked on purpose"),
            "{error}"
        );
    }

    #[test]
    fn http_streams_come_from_the_http_handler_in_one_piece() {
        let host = MockHost::new().http(|req| {
            assert_eq!(req.url, "http://upstream.test/sse");
            Ok(HttpResponse {
                status: 200,
                body: b"data: 1\n\n".to_vec(),
                ..Default::default()
            })
        });
        let plugin = host.start::<Services>().unwrap();
        let response = plugin.route(request("GET", "/s/stream")).unwrap();
        assert_eq!(response.body, b"1:data: 1\n\n");
        assert_eq!(host.http_requests().len(), 1);
    }

    #[test]
    fn plugins_status_is_the_configured_value() {
        let status = json!({"plugins": [{"name": "other", "calls": 3}]});
        let plugin = MockHost::new()
            .plugins_status(status.clone())
            .start::<Services>()
            .unwrap();
        let body = plugin.route(request("GET", "/s/status")).unwrap().body;
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), status);
    }

    #[test]
    fn processes_really_run() {
        let plugin = MockHost::new().start::<Services>().unwrap();
        assert_eq!(
            plugin.route(request("GET", "/s/process")).unwrap().body,
            b"hi\nSome(0)"
        );
        let error = plugin.route(request("GET", "/s/missing")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(
            error
                .message()
                .contains("cannot start ccproxy-no-such-program"),
            "{error}"
        );
    }

    #[test]
    fn the_1_2_operations_need_their_capabilities() {
        let plugin = MockHost::new()
            .capabilities([capability::HTTP])
            .start::<Services>()
            .unwrap();
        for path in ["/s/status", "/s/process"] {
            let error = plugin.route(request("GET", path)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unsupported, "{path}: {error}");
        }
        // Blocking work runs right there on a host without the pool.
        assert_eq!(
            plugin.route(request("GET", "/s/blocking")).unwrap().status,
            200
        );
    }

    #[test]
    fn a_name_with_a_double_underscore_is_refused_as_the_host_refuses_it() {
        struct Doubled;
        impl Plugin for Doubled {
            type Config = ();
            fn manifest() -> Manifest {
                Manifest::new("my__plugin", "1.0.0")
            }
            async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
                Ok(Doubled)
            }
        }
        let error = MockHost::new().start::<Doubled>().expect_err("refused");
        assert!(error.message().contains("PLUGINS__NAME__FIELD"), "{error}");
    }

    /// A route that answers like a provider (plugin API 1.3).
    struct Answering;

    impl Plugin for Answering {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("answering", "1.0.0").route(
                "/a",
                [
                    Route::get("/whole"),
                    Route::get("/stream"),
                    Route::get("/plain"),
                ],
            )
        }
        async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Ok(Answering)
        }
        async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
            let usage = TokenUsage {
                input_tokens: 7,
                output_tokens: 3,
                cache_read_input_tokens: 1,
                ..TokenUsage::default()
            };
            Ok(match req.route.as_str() {
                "/a/whole" => Response::text(200, "whole")
                    .answered_by("cli", "model-1")
                    .with_usage(usage)
                    .into(),
                "/a/stream" => {
                    let (mut sender, body) = BodyStream::channel(4);
                    sender
                        .send("one ")
                        .await
                        .map_err(|closed| PluginError::internal(closed.to_string()))?;
                    sender
                        .send("two")
                        .await
                        .map_err(|closed| PluginError::internal(closed.to_string()))?;
                    sender.set_model("model-2");
                    sender.finish_with_usage(usage);
                    StreamResponse::sse(body).answered_by("cli", "").into()
                }
                _ => Response::text(200, "plain").into(),
            })
        }
    }

    #[test]
    fn a_route_reports_who_answered_and_its_usage() {
        let plugin = MockHost::new().start::<Answering>().unwrap();
        let whole = plugin.route(request("GET", "/a/whole")).unwrap();
        let by = whole.answered_by.expect("who answered");
        assert_eq!(
            (by.provider.as_str(), by.model.as_deref()),
            ("cli", Some("model-1"))
        );
        let usage = whole.usage.expect("usage");
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_input_tokens
            ),
            (7, 3, 1)
        );

        // A stream's usage and late model come with its last chunk.
        let streamed = plugin.route(request("GET", "/a/stream")).unwrap();
        assert_eq!(streamed.body, b"one two");
        assert_eq!(
            streamed.answered_by.and_then(|by| by.model).as_deref(),
            Some("model-2")
        );
        assert_eq!(streamed.usage, Some(usage));
        // Not read to its end: no usage yet.
        let (head, pieces) = plugin.route_stream(request("GET", "/a/stream"), 1).unwrap();
        assert_eq!(pieces, [b"one ".to_vec()]);
        assert_eq!(head.usage, None);
        // The head's empty model is none.
        assert_eq!(
            head.answered_by.as_ref().and_then(|by| by.model.as_ref()),
            None
        );
        assert_eq!(
            head.answered_by.map(|by| by.provider).as_deref(),
            Some("cli")
        );

        let plain = plugin.route(request("GET", "/a/plain")).unwrap();
        assert!(plain.answered_by.is_none() && plain.usage.is_none());
    }

    #[test]
    fn answered_by_and_usage_are_optional_on_the_wire() {
        // What a 1.2 plugin sends reads as none; what a 1.3 plugin sends
        // without them is what a 1.2 host knows.
        let head: protocol::ResponseHead =
            serde_json::from_value(json!({"status": 200, "headers": [], "stream": 3})).unwrap();
        assert!(head.answered_by.is_none() && head.usage.is_none());
        let chunk: protocol::RouteStreamChunk =
            serde_json::from_value(json!({"end": true})).unwrap();
        assert!(chunk.end && chunk.usage.is_none());
        assert_eq!(
            serde_json::to_value(protocol::ResponseHead {
                status: 200,
                ..Default::default()
            })
            .unwrap(),
            json!({"status": 200, "headers": []})
        );
        assert_eq!(
            serde_json::to_value(protocol::RouteStreamChunk {
                end: true,
                ..Default::default()
            })
            .unwrap(),
            json!({"end": true})
        );
        // A usage with fields missing (a plugin built elsewhere) counts them as 0.
        let usage: protocol::TokenUsage =
            serde_json::from_value(json!({"output_tokens": 4})).unwrap();
        assert_eq!(
            usage,
            TokenUsage {
                output_tokens: 4,
                ..TokenUsage::default()
            }
        );
    }
}
