//! # storage: every finished request, stored
//!
//! Writes one row per finished client request (`request.completed` and
//! `request.failed`: the original's `AccessLog` columns, see
//! `ccproxy_plugin_kit::logs::LogRow`) to an embedded SQLite database by
//! default (`$XDG_DATA_HOME/ccproxy/logs.db`, WAL mode, its folder created
//! 0700), or to PostgreSQL when `url = "postgres://…"` is set, so several
//! proxies can share one store. Other plugins read it through the service
//! `log_storage` (`query`, `analytics`, `reset`, and `recent`: the rows
//! this proxy finished lately, for live streams), which the `analytics`
//! plugin serves as `/logs/*`: one plugin owns the database and the only
//! hook on finished requests.
//!
//! Nothing is written on the request path: the hook (priority 800, after
//! `pricing` added `cost_usd`) only pushes the row into a bounded queue
//! (`queue_size`); the `flush` task (every `flush_interval` seconds) or a
//! full batch (`batch_size`) writes it in one transaction inside
//! `Context::blocking`, so the database's I/O runs on the host's blocking
//! threads. At shutdown the queue is written out before the plugin stops.
//! A database that cannot be reached keeps the rows queued (the oldest
//! beyond `queue_size` dropped and counted), makes
//! `/plugins/storage/health` unhealthy with the reason (so the host's
//! `/health` warns), and is retried every
//! `reconnect_seconds`; requests keep flowing.
//!
//! Each insert also adds the rows to rollups per hour and per minute
//! (counts, sums and a duration histogram per model, provider, status and
//! streaming), which is what `/logs/analytics` reads, so it answers in time
//! that grows with the hours of its window rather than the requests in it
//! (see `sql`).
//! Retention: rows older than `retention_days` and beyond the newest
//! `max_rows` are deleted by the `retention` task (and at start-up).
#![forbid(unsafe_code)]

mod postgres;
mod sql;
mod sqlite;

use std::{
    collections::VecDeque,
    ffi::OsStr,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{Value, prelude::*};
use ccproxy_plugin_kit::{
    logs::{AnalyticsRequest, LogRow, QueryRequest},
    now_ms,
    private_files::PrivateDir,
    secret_file::expand_home,
};
use serde::{Deserialize, Serialize};

use crate::{postgres::PgTarget, sql::Db, sqlite::Sqlite};

/// The service other plugins read the store through.
const SERVICE: &str = "log_storage";
/// The database file's name in `$XDG_DATA_HOME/ccproxy`.
const DEFAULT_FILE: &str = "logs.db";
/// How long after dropping rows health stays degraded.
const RECENT_DROPS: Duration = Duration::from_secs(300);

/// `[plugins.storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Off by default (opt-in, as the original's): the host loads it only
    /// once the user sets it true. Read by the host, not the plugin.
    #[allow(dead_code)]
    enabled: bool,
    /// SQLite file; `None`: `$XDG_DATA_HOME/ccproxy/logs.db`.
    database_path: Option<String>,
    /// `postgres://user:password@host:port/database`: store in PostgreSQL
    /// instead of SQLite.
    url: Option<String>,
    /// Rows older than this many days are deleted; 0 keeps them.
    retention_days: f64,
    /// At most this many rows are kept (the oldest go first); 0: no limit.
    max_rows: u64,
    /// Rows waiting to be written at most; more are dropped and counted.
    queue_size: usize,
    /// A batch this large is written at once, without waiting for the task.
    batch_size: usize,
    /// Seconds between writes of the queue.
    flush_interval: f64,
    /// Seconds between retention runs.
    retention_interval: f64,
    /// Seconds between attempts to reach a database that failed.
    reconnect_seconds: f64,
    /// Requests whose path starts with one of these are not stored.
    exclude_paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            database_path: None,
            url: None,
            retention_days: 30.0,
            max_rows: 1_000_000,
            queue_size: 10_000,
            batch_size: 500,
            flush_interval: 0.2,
            retention_interval: 600.0,
            reconnect_seconds: 2.0,
            // The dashboard polls `/logs`; storing its own reads would fill
            // the store with them.
            exclude_paths: [
                "/health",
                "/metrics",
                "/readyz",
                "/livez",
                "/logs",
                "/dashboard",
                "/plugins",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// Where the rows go.
#[derive(Debug, Clone)]
enum Target {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => format!("sqlite {}", path.display()),
            Target::Postgres(target) => format!("postgresql {}", target.masked()),
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgresql",
        }
    }

    /// A new connection, the schema created when missing.
    fn connect(&self) -> Result<Box<dyn Db>, String> {
        let mut db: Box<dyn Db> = match self {
            Target::Sqlite(path) => {
                let folder = path
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                let name = path
                    .file_name()
                    .and_then(OsStr::to_str)
                    .ok_or_else(|| format!("{} names no file", path.display()))?;
                // The folder 0700 and private; the file 0600, never through a link.
                let dir = PrivateDir::open(folder).map_err(|error| error.message().to_owned())?;
                dir.append(name)
                    .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
                Box::new(Sqlite::open(path)?)
            }
            Target::Postgres(target) => Box::new(target.connect()?),
        };
        db.batch(&sql::schema())
            .map_err(|error| format!("cannot create the tables: {error}"))?;
        Ok(db)
    }
}

/// The connection rows are written with, and when to try again after a failure.
#[derive(Default)]
struct Writer {
    db: Option<Box<dyn Db>>,
    retry_at: Option<Instant>,
}

/// What the hook, the tasks and the service share.
struct Store {
    target: Target,
    config: Config,
    queue: Mutex<VecDeque<LogRow>>,
    writer: Mutex<Writer>,
    /// Connections for reads (queries run while the writer writes).
    readers: Mutex<Vec<Box<dyn Db>>>,
    flush_scheduled: AtomicBool,
    written: AtomicU64,
    dropped: AtomicU64,
    last_drop: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    deleted_by_retention: AtomicU64,
    /// The latest rows, for live streams (`recent`), kept only while a
    /// reader asked within [`WATCH_FOR`].
    recent: Mutex<Recent>,
    watched_until_ms: AtomicU64,
}

/// How long after the last `recent` call rows are still kept for it.
const WATCH_FOR: Duration = Duration::from_secs(5);
/// Rows kept for `recent` at most.
const RECENT_ROWS: usize = 2048;

/// The latest rows with their sequence numbers (the first one's is
/// `next - rows.len()`).
#[derive(Default)]
struct Recent {
    rows: VecDeque<LogRow>,
    next: u64,
}

impl Recent {
    fn push(&mut self, row: LogRow) {
        if self.rows.len() == RECENT_ROWS {
            self.rows.pop_front();
        }
        self.rows.push_back(row);
        self.next += 1;
    }

    /// The rows numbered `after` and later, and the number of the next one.
    fn since(&self, after: Option<u64>) -> (u64, Vec<LogRow>) {
        let first = self.next - self.rows.len() as u64;
        let skip = after.map_or(self.rows.len() as u64, |after| after.saturating_sub(first));
        let rows = self.rows.iter().skip(skip as usize).cloned().collect();
        (self.next, rows)
    }
}

/// `log_storage.recent`'s arguments: the `next` of the previous answer, or
/// none to start.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RecentArgs {
    after: Option<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    fn drop_rows(&self, count: usize) {
        if count > 0 {
            self.dropped.fetch_add(count as u64, Ordering::Relaxed);
            *lock(&self.last_drop) = Some(Instant::now());
        }
    }

    /// Queues `row`; answers whether a full batch is waiting.
    fn push(&self, row: LogRow) -> bool {
        let mut queue = lock(&self.queue);
        if queue.len() >= self.config.queue_size {
            drop(queue);
            self.drop_rows(1);
            return false;
        }
        queue.push_back(row);
        queue.len() >= self.config.batch_size
    }

    fn record_error(&self, error: String) {
        let mut last = lock(&self.last_error);
        if last.as_deref() != Some(error.as_str()) {
            warn!("storage: {error}; rows stay queued and are retried");
        }
        *last = Some(error);
    }

    fn clear_error(&self) {
        if lock(&self.last_error).take().is_some() {
            info!("storage: writing to {} again", self.target.describe());
        }
    }

    /// The writer's connection, opened when missing and not backing off.
    fn writer_db<'a>(&self, writer: &'a mut Writer) -> Result<&'a mut Box<dyn Db>, String> {
        if writer.db.is_none() {
            if let Some(retry_at) = writer.retry_at
                && Instant::now() < retry_at
            {
                return Err(lock(&self.last_error)
                    .clone()
                    .unwrap_or_else(|| "the database is unavailable".to_owned()));
            }
            match self.target.connect() {
                Ok(db) => {
                    writer.db = Some(db);
                    writer.retry_at = None;
                }
                Err(error) => {
                    writer.retry_at = Some(
                        Instant::now() + Duration::from_secs_f64(self.config.reconnect_seconds),
                    );
                    return Err(error);
                }
            }
        }
        writer.db.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Writes the queue in batches until it is empty or the database fails
    /// (the batch then goes back to the queue's front). Blocking.
    fn flush_blocking(&self) {
        let mut writer = lock(&self.writer);
        loop {
            let batch: Vec<LogRow> = {
                let mut queue = lock(&self.queue);
                let take = queue.len().min(self.config.batch_size.max(1));
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                return;
            }
            let result = self
                .writer_db(&mut writer)
                .and_then(|db| sql::insert(db.as_mut(), &batch));
            match result {
                Ok(()) => {
                    self.written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.clear_error();
                }
                Err(error) => {
                    // A broken connection is opened anew next time.
                    if writer.db.is_some() {
                        writer.db = None;
                        writer.retry_at = Some(
                            Instant::now() + Duration::from_secs_f64(self.config.reconnect_seconds),
                        );
                    }
                    self.record_error(error);
                    let mut queue = lock(&self.queue);
                    for row in batch.into_iter().rev() {
                        queue.push_front(row);
                    }
                    let excess = queue.len().saturating_sub(self.config.queue_size);
                    queue.drain(..excess);
                    drop(queue);
                    self.drop_rows(excess);
                    return;
                }
            }
        }
    }

    /// Runs `read` on a reader connection: a pooled one, or a new one when
    /// none is free or the pooled one fails (a server restarted since, or a
    /// connection it cut). A connection that failed is not reused.
    fn read<T>(&self, read: impl Fn(&mut dyn Db) -> Result<T, String>) -> Result<T, String> {
        let pooled = lock(&self.readers).pop();
        let was_pooled = pooled.is_some();
        let mut db = match pooled {
            Some(db) => db,
            None => self.target.connect()?,
        };
        let mut result = read(db.as_mut());
        if result.is_err() && was_pooled {
            db = self.target.connect()?;
            result = read(db.as_mut());
        }
        if result.is_ok() {
            let mut readers = lock(&self.readers);
            if readers.len() < 4 {
                readers.push(db);
            }
        }
        result
    }

    /// Writes what is queued, then deletes everything stored.
    fn reset_blocking(&self) -> Result<u64, String> {
        self.flush_blocking();
        let mut writer = lock(&self.writer);
        let db = self.writer_db(&mut writer)?;
        sql::reset(db.as_mut())
    }

    fn retain_blocking(&self) -> Result<u64, String> {
        let oldest_ms = (self.config.retention_days > 0.0).then(|| {
            i64::try_from(now_ms()).unwrap_or(i64::MAX)
                - (self.config.retention_days * 86_400_000.0) as i64
        });
        let max_rows = (self.config.max_rows > 0).then_some(self.config.max_rows);
        let mut writer = lock(&self.writer);
        let db = self.writer_db(&mut writer)?;
        let deleted = sql::retain(db.as_mut(), oldest_ms, max_rows)?;
        self.deleted_by_retention
            .fetch_add(deleted, Ordering::Relaxed);
        Ok(deleted)
    }
}

/// The plugin.
struct Storage {
    ctx: Context,
    store: Arc<Store>,
}

impl Storage {
    /// Writes the queue on a blocking thread, once at a time from the hook.
    fn schedule_flush(&self) {
        if self.store.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.store.clone();
        let blocking = self.ctx.clone();
        self.ctx.spawn(async move {
            let job = store.clone();
            let _ = blocking.blocking(move || job.flush_blocking()).await;
            store.flush_scheduled.store(false, Ordering::Release);
        });
    }

    async fn flush(&self) -> Result<(), PluginError> {
        let store = self.store.clone();
        self.ctx.blocking(move || store.flush_blocking()).await
    }

    fn is_excluded(&self, path: &str) -> bool {
        self.store
            .config
            .exclude_paths
            .iter()
            .any(|excluded| path.starts_with(excluded.as_str()))
    }
}

/// The configured SQLite path (`~/` expanded), or `logs.db` in
/// `$XDG_DATA_HOME/ccproxy` (`~/.local/share/ccproxy`).
fn database_path(
    configured: Option<&str>,
    xdg_data_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<PathBuf, PluginError> {
    if let Some(path) = expand_home(configured.unwrap_or_default(), home, "storage")? {
        return Ok(path);
    }
    let absolute = |value: &OsStr| {
        let path = PathBuf::from(value);
        path.is_absolute().then_some(path)
    };
    xdg_data_home
        .and_then(absolute)
        .or_else(|| {
            home.and_then(absolute)
                .map(|home| home.join(".local/share"))
        })
        .map(|data| data.join("ccproxy").join(DEFAULT_FILE))
        .ok_or_else(|| {
            PluginError::invalid(
                "neither XDG_DATA_HOME nor HOME is set: set database_path to the SQLite file",
            )
        })
}

fn positive(value: f64, key: &str) -> Result<(), PluginError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(PluginError::invalid(format!(
            "{key} must be a positive number of seconds"
        )))
    }
}

fn service_error(error: String) -> PluginError {
    PluginError::unavailable(format!("the log store cannot answer: {error}"))
}

impl Plugin for Storage {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("storage", env!("CARGO_PKG_VERSION"))
            .description("Stores every finished request in SQLite or PostgreSQL, off the request path")
            .provides(SERVICE)
            .hook("storage", ["request.completed", "request.failed"], 800)
            .task_from_config("flush", "flush_interval", 0.2, false)
            .task_from_config("retention", "retention_interval", 600.0, false)
            .config_key("database_path", "SQLite file, in a folder only you can write; null: $XDG_DATA_HOME/ccproxy/logs.db")
            .config_key("url", "postgres://user:password@host:port/database: store in PostgreSQL instead of SQLite")
            .config_key("retention_days", "rows older than this many days are deleted; 0 keeps them")
            .config_key("max_rows", "at most this many rows are kept, the oldest deleted first; 0: no limit")
            .config_key("queue_size", "rows waiting to be written at most; beyond it rows are dropped and counted")
            .config_key("batch_size", "rows written in one transaction")
            .config_key("flush_interval", "seconds between writes of queued rows")
            .config_key("retention_interval", "seconds between retention runs")
            .config_key("reconnect_seconds", "seconds between attempts to reach a database that failed")
            .config_key("exclude_paths", "requests whose path starts with one of these are not stored")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        positive(config.flush_interval, "flush_interval")?;
        positive(config.retention_interval, "retention_interval")?;
        positive(config.reconnect_seconds, "reconnect_seconds")?;
        if !config.retention_days.is_finite() || config.retention_days < 0.0 {
            return Err(PluginError::invalid("retention_days must be 0 or more"));
        }
        if config.queue_size == 0 || config.batch_size == 0 {
            return Err(PluginError::invalid(
                "queue_size and batch_size must be at least 1",
            ));
        }
        let target = match config.url.as_deref().filter(|url| !url.trim().is_empty()) {
            Some(url) => {
                Target::Postgres(PgTarget::parse(url.trim()).map_err(PluginError::invalid)?)
            }
            None => Target::Sqlite(database_path(
                config.database_path.as_deref(),
                std::env::var_os("XDG_DATA_HOME").as_deref(),
                std::env::var_os("HOME").as_deref(),
            )?),
        };
        let store = Arc::new(Store {
            target,
            config,
            queue: Mutex::default(),
            writer: Mutex::default(),
            readers: Mutex::default(),
            flush_scheduled: AtomicBool::new(false),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_drop: Mutex::new(None),
            last_error: Mutex::new(None),
            deleted_by_retention: AtomicU64::new(0),
            recent: Mutex::default(),
            watched_until_ms: AtomicU64::new(0),
        });
        // Open it now, so a bad path or an unreachable server shows in health
        // from the start; the plugin runs either way and retries.
        let opening = store.clone();
        let opened = ctx.blocking(move || opening.retain_blocking()).await?;
        match opened {
            Ok(_) => info!(
                "storage writing request logs to {}",
                store.target.describe()
            ),
            Err(error) => store.record_error(error),
        }
        Ok(Self { ctx, store })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        if matches!(
            call.event,
            HookEvent::RequestCompleted | HookEvent::RequestFailed
        ) {
            let row = LogRow::from_hook(&call)?;
            if self.is_excluded(&row.path) {
                return Ok(HookOutcome::Continue);
            }
            // A copy for live streams only while someone reads them.
            if now_ms() < self.store.watched_until_ms.load(Ordering::Relaxed) {
                lock(&self.store.recent).push(row.clone());
            }
            if self.store.push(row) {
                self.schedule_flush();
            }
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        match task.as_str() {
            "flush" => self.flush().await,
            "retention" => {
                let store = self.store.clone();
                if let Err(error) = self.ctx.blocking(move || store.retain_blocking()).await? {
                    self.store.record_error(error);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        let store = self.store.clone();
        match call.method.as_str() {
            "query" => {
                let request: QueryRequest = call.args_as()?;
                self.ctx
                    .blocking(move || store.read(|db| sql::query(db, &request)))
                    .await?
                    .map_err(service_error)
            }
            "analytics" => {
                let request: AnalyticsRequest = call.args_as()?;
                self.ctx
                    .blocking(move || store.read(|db| sql::analytics(db, &request)))
                    .await?
                    .map_err(service_error)
            }
            "recent" => {
                let args: RecentArgs = call.args_as()?;
                let until = now_ms().saturating_add(WATCH_FOR.as_millis() as u64);
                self.store.watched_until_ms.store(until, Ordering::Relaxed);
                let (next, rows) = lock(&self.store.recent).since(args.after);
                Ok(json!({"next": next, "rows": rows}))
            }
            "reset" => {
                let deleted = self
                    .ctx
                    .blocking(move || store.reset_blocking())
                    .await?
                    .map_err(service_error)?;
                info!("storage: reset, {deleted} rows deleted");
                Ok(json!({"status": "success", "deleted": deleted}))
            }
            other => Err(PluginError::not_found(format!(
                "service {SERVICE} has no method {other}; it has query, analytics, recent and reset"
            ))),
        }
    }

    async fn on_health(&self) -> Health {
        let store = &self.store;
        let error = lock(&store.last_error).clone();
        let dropping = lock(&store.last_drop).is_some_and(|at| at.elapsed() < RECENT_DROPS);
        let dropped = store.dropped.load(Ordering::Relaxed);
        let mut details = json!({
            "backend": store.target.backend(),
            "database": store.target.describe(),
            "queued": lock(&store.queue).len(),
            "written": store.written.load(Ordering::Relaxed),
            "dropped": dropped,
            "deleted_by_retention": store.deleted_by_retention.load(Ordering::Relaxed),
            "error": error,
        });
        let mut reasons = Vec::new();
        // A store it cannot write to is a storage that does not do its job:
        // unhealthy, which makes the host's `/health` warn. Drops alone
        // (a burst over the queue) only degrade it.
        let unreachable = error.is_some();
        if let Some(error) = error {
            reasons.push(error);
        }
        if dropping {
            reasons.push(format!(
                "{dropped} rows dropped (the queue of {} was full), the last within {} minutes",
                store.config.queue_size,
                RECENT_DROPS.as_secs() / 60
            ));
        }
        if reasons.is_empty() {
            return Health::with(HealthStatus::Healthy, details);
        }
        details["reason"] = Value::from(reasons.join("; "));
        let status = if unreachable {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Degraded
        };
        Health::with(status, details)
    }

    async fn on_shutdown(&self) {
        // Every committed request reaches the store before the host exits.
        let store = self.store.clone();
        let _ = self.ctx.blocking(move || store.flush_blocking()).await;
        let queued = lock(&self.store.queue).len();
        if queued > 0 {
            warn!("storage: {queued} rows could not be written before shutdown");
        }
    }
}

export_plugin!(Storage);

/// For `scripts/logs-bench` only: rows written into a SQLite file exactly as
/// the plugin writes them (the same schema, insert and rollup), so a
/// benchmark can fill a million rows without sending a million requests.
#[doc(hidden)]
pub mod bench {
    use std::path::Path;

    use ccproxy_plugin_kit::logs::LogRow;

    use crate::{Target, sql};

    /// A connection to the database file at a path.
    pub struct SqliteWriter(Box<dyn sql::Db>);

    impl SqliteWriter {
        /// Opens (creates) the file and its tables.
        pub fn open(path: &Path) -> Result<Self, String> {
            Target::Sqlite(path.to_path_buf()).connect().map(Self)
        }

        /// Writes `rows` in one transaction, rollup included.
        pub fn write(&mut self, rows: &[LogRow]) -> Result<(), String> {
            sql::insert(self.0.as_mut(), rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

    use super::*;

    fn start(config: Value) -> (MockHost, TestPlugin) {
        let host = MockHost::new().config(config);
        let plugin = host.start::<Storage>().expect("storage starts");
        (host, plugin)
    }

    fn completed(n: u32, path: &str) -> Value {
        json!({"request_id": format!("r{n}"), "method": "POST", "path": path, "query": "",
               "status_code": 200, "duration_ms": 12.0, "client_ip": "127.0.0.1",
               "user_agent": "test", "streaming": false, "provider": "claude_api",
               "model": "claude-sonnet-4", "usage": {"input_tokens": 3, "output_tokens": 4},
               "cost_usd": 0.25, "headers": {"authorization": "***"}})
    }

    fn count(plugin: &TestPlugin) -> Value {
        plugin
            .service(
                SERVICE,
                "query",
                json!({"filter": {}, "limit": 100, "cursor": null, "order": "asc"}),
            )
            .unwrap()["count"]
            .clone()
    }

    #[test]
    fn it_is_opt_in() {
        // The host loads a plugin whose defaults say `enabled = false` only
        // once the user enables it (docs/PERFORMANCE.md, "Round 2 changes:
        // the plugins", says why this one is off by default).
        let dir = tempfile::tempdir().unwrap();
        let (_host, plugin) = start(json!({"database_path": dir.path().join("logs.db")}));
        assert_eq!(plugin.manifest().config.defaults["enabled"], false);
    }

    #[test]
    fn rows_are_queued_by_the_hook_and_written_by_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db").join("logs.db");
        let (_host, plugin) = start(json!({"database_path": path}));
        for n in 0..3 {
            plugin
                .hook(
                    HookEvent::RequestCompleted,
                    completed(n, "/claude/v1/messages"),
                )
                .unwrap();
        }
        plugin
            .hook(HookEvent::RequestCompleted, completed(9, "/logs/query"))
            .unwrap();
        assert_eq!(plugin.health().unwrap().details["queued"], 3);
        assert_eq!(count(&plugin), 0);
        plugin.task("flush").unwrap();
        assert_eq!(count(&plugin), 3);
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.details);
        assert_eq!(health.details["written"], 3);
        assert_eq!(health.details["backend"], "sqlite");
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("db")), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_the_task_and_shutdown_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let (host, plugin) = start(json!({"database_path": path, "batch_size": 2}));
        plugin
            .hook(HookEvent::RequestCompleted, completed(1, "/a"))
            .unwrap();
        plugin
            .hook(HookEvent::RequestFailed, completed(2, "/b"))
            .unwrap();
        plugin.run_spawned();
        assert_eq!(host.pending_spawned(), 0);
        assert_eq!(count(&plugin), 2);
        plugin
            .hook(HookEvent::RequestCompleted, completed(3, "/c"))
            .unwrap();
        plugin.shutdown().unwrap();
        let (_host, again) = start(json!({"database_path": path}));
        assert_eq!(count(&again), 3);
    }

    #[test]
    fn an_unusable_database_degrades_health_and_counts_dropped_rows() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let (_host, plugin) =
            start(json!({"database_path": blocker.join("logs.db"), "queue_size": 2}));
        for n in 0..5 {
            plugin
                .hook(
                    HookEvent::RequestCompleted,
                    completed(n, "/claude/v1/messages"),
                )
                .unwrap();
        }
        plugin.task("flush").unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Unhealthy);
        assert_eq!(health.details["queued"], 2, "{:?}", health.details);
        assert_eq!(health.details["dropped"], 3, "{:?}", health.details);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(
            reason.contains("blocker") && reason.contains("3 rows dropped"),
            "{reason}"
        );
        let error = plugin
            .service(
                SERVICE,
                "query",
                json!({"filter": {}, "limit": 1, "cursor": null, "order": "desc"}),
            )
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    }

    #[test]
    fn a_postgres_url_is_checked_and_never_logged_with_its_password() {
        // Nothing listens on port 1: the plugin runs, unhealthy, and retries.
        let (host, plugin) = start(json!({"url": "postgres://ada:hunter2@127.0.0.1:1/logs"}));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Unhealthy);
        let details = health.details.to_string();
        assert!(
            details.contains("postgres://ada:***@127.0.0.1:1/logs"),
            "{details}"
        );
        assert!(!details.contains("hunter2"), "{details}");
        assert!(
            host.logs()
                .iter()
                .all(|(_, line)| !line.contains("hunter2"))
        );
        let error = MockHost::new()
            .config(json!({"url": "mysql://x"}))
            .start::<Storage>()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn bad_config_is_refused() {
        for config in [
            json!({"flush_interval": 0}),
            json!({"retention_days": -1}),
            json!({"queue_size": 0}),
            json!({"database": "x"}),
        ] {
            let error = MockHost::new()
                .config(config.clone())
                .start::<Storage>()
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
        }
    }

    #[test]
    fn the_default_database_is_in_the_xdg_data_folder() {
        let path = |configured, xdg: Option<&str>, home: Option<&str>| {
            database_path(configured, xdg.map(OsStr::new), home.map(OsStr::new))
        };
        assert_eq!(
            path(None, Some("/data"), Some("/home/ada")).unwrap(),
            PathBuf::from("/data/ccproxy/logs.db")
        );
        assert_eq!(
            path(None, Some("relative"), Some("/home/ada")).unwrap(),
            PathBuf::from("/home/ada/.local/share/ccproxy/logs.db")
        );
        assert_eq!(
            path(Some("~/x.db"), None, Some("/home/ada")).unwrap(),
            PathBuf::from("/home/ada/x.db")
        );
        assert!(path(None, None, None).is_err());
    }

    #[test]
    fn recent_rows_are_kept_only_while_someone_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_host, plugin) = start(json!({"database_path": dir.path().join("logs.db")}));
        plugin
            .hook(HookEvent::RequestCompleted, completed(1, "/a"))
            .unwrap();
        let start = plugin.service(SERVICE, "recent", json!({})).unwrap();
        assert_eq!(
            start,
            json!({"next": 0, "rows": []}),
            "nobody watched row 1"
        );
        for n in 2..5 {
            plugin
                .hook(HookEvent::RequestCompleted, completed(n, "/b"))
                .unwrap();
        }
        plugin
            .hook(HookEvent::RequestCompleted, completed(9, "/logs/query"))
            .unwrap();
        let recent = plugin
            .service(SERVICE, "recent", json!({"after": 0}))
            .unwrap();
        assert_eq!(recent["next"], 3);
        let ids: Vec<&str> = recent["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["request_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["r2", "r3", "r4"]);
        assert_eq!(recent["rows"][0]["cost_usd"], 0.25);
        let later = plugin
            .service(SERVICE, "recent", json!({"after": 2}))
            .unwrap();
        assert_eq!(later["rows"].as_array().unwrap().len(), 1);
        let mut ring = Recent::default();
        for n in 0..RECENT_ROWS as i64 + 10 {
            ring.push(LogRow {
                timestamp_ms: n,
                ..LogRow::default()
            });
        }
        let (next, rows) = ring.since(Some(0));
        assert_eq!((next, rows.len()), (RECENT_ROWS as u64 + 10, RECENT_ROWS));
        assert_eq!(rows[0].timestamp_ms, 10, "the oldest rows fell off");
    }

    #[test]
    fn reset_deletes_what_was_stored_and_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (_host, plugin) = start(json!({"database_path": dir.path().join("logs.db")}));
        plugin
            .hook(HookEvent::RequestCompleted, completed(1, "/a"))
            .unwrap();
        plugin.task("flush").unwrap();
        plugin
            .hook(HookEvent::RequestCompleted, completed(2, "/b"))
            .unwrap();
        let reset = plugin.service(SERVICE, "reset", json!({})).unwrap();
        assert_eq!(reset, json!({"status": "success", "deleted": 2}));
        assert_eq!(count(&plugin), 0);
    }
}
