//! # hello_system: a system plugin using every kind of contribution
//!
//! Shows, in one small plugin: a route group (`/hello`), a hook on an observed
//! event (`request.completed`), a service other plugins call (`greeting`), a
//! scheduled task (`hello_tick`) and a typed config with defaults. Start here;
//! `provider_shaped` builds on it.
//!
//! Build and install:
//!
//! ```text
//! cargo build -p example-hello-system
//! cp target/debug/libexample_hello_system.so ~/.config/ccproxy/plugins/
//! ```
//!
//! Configure (optional), in `~/.config/ccproxy/config.toml`:
//!
//! ```toml
//! [plugins.hello_system]
//! greeting = "Howdy"
//! ```
//!
//! Try it:
//!
//! ```text
//! curl 'http://127.0.0.1:8000/hello/greet?name=Ada'
//! {"message":"Hello, Ada!"}
//! ```
//!
//! and expect this line in the proxy's log once the request is answered:
//!
//! ```text
//! INFO plugin: hello_system saw request 9a8f1b3a008442898811dc10d661c65b -> 200 plugin="hello_system"
//! ```
//!
//! `GET /hello/stats` shows the counters.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use ccproxy_plugin_abi::{Value, prelude::*};
use serde::{Deserialize, Serialize};

/// `[plugins.hello_system]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The word before the name.
    greeting: String,
    /// Seconds between `hello_tick` runs.
    tick_seconds: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            greeting: "Hello".to_owned(),
            tick_seconds: 1.0,
        }
    }
}

/// The plugin: its config and three counters.
struct HelloSystem {
    config: Config,
    requests_seen: AtomicU64,
    task_runs: AtomicU64,
    service_calls: AtomicU64,
}

impl HelloSystem {
    fn message(&self, name: &str) -> Value {
        json!({ "message": format!("{}, {name}!", self.config.greeting) })
    }

    fn stats(&self) -> Value {
        json!({
            "requests_seen": self.requests_seen.load(Ordering::Relaxed),
            "task_runs": self.task_runs.load(Ordering::Relaxed),
            "service_calls": self.service_calls.load(Ordering::Relaxed),
        })
    }
}

impl Plugin for HelloSystem {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("hello_system", env!("CARGO_PKG_VERSION"))
            .description("Greets over HTTP and as a service; counts requests, ticks and calls")
            .route("/hello", [Route::get("/greet"), Route::get("/stats")])
            .hook("hello_hook", ["request.completed"], 700)
            .provides("greeting")
            // The host reads the interval from `[plugins.hello_system] tick_seconds`.
            .task_from_config(
                "hello_tick",
                "tick_seconds",
                Config::default().tick_seconds,
                false,
            )
            .config_key("greeting", "the word before the name (default \"Hello\")")
            .config_key(
                "tick_seconds",
                "seconds between hello_tick runs (default 1.0)",
            )
    }

    async fn init(_ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !config.tick_seconds.is_finite() || config.tick_seconds <= 0.0 {
            return Err(PluginError::invalid(
                "tick_seconds must be a positive number of seconds",
            ));
        }
        info!("hello_system ready, greeting {:?}", config.greeting);
        Ok(Self {
            config,
            requests_seen: AtomicU64::new(0),
            task_runs: AtomicU64::new(0),
            service_calls: AtomicU64::new(0),
        })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        match req.route.as_str() {
            "/hello/greet" => {
                let name = query_param(&req.query, "name").unwrap_or_else(|| "world".to_owned());
                Ok(Response::json(200, &self.message(&name)))
            }
            "/hello/stats" => Ok(Response::json(200, &self.stats())),
            other => Err(PluginError::not_found(format!("no handler for {other}"))),
        }
    }

    async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
        self.requests_seen.fetch_add(1, Ordering::Relaxed);
        let request_id = hook.request_id.as_deref().unwrap_or("-");
        let status = hook
            .data
            .get("status_code")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        info!("hello_system saw request {request_id} -> {status}");
        Ok(HookOutcome::Continue)
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        let runs = self.task_runs.fetch_add(1, Ordering::Relaxed) + 1;
        debug!("{task} run {runs}");
        Ok(())
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        #[derive(Deserialize)]
        struct GreetArgs {
            name: String,
        }
        match call.method.as_str() {
            "greet" => {
                let args: GreetArgs = call.args_as()?;
                self.service_calls.fetch_add(1, Ordering::Relaxed);
                Ok(self.message(&args.name))
            }
            other => Err(PluginError::not_found(format!(
                "service greeting has no method {other}"
            ))),
        }
    }

    async fn on_health(&self) -> Health {
        Health::with(HealthStatus::Healthy, self.stats())
    }
}

export_plugin!(HelloSystem);

/// The first value of `key` in a query string, decoded as a form (`%XX` and
/// `+`; malformed escapes stay as written).
fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{Level, MockHost, request};

    use super::*;

    fn body(response: &Response) -> Value {
        ccproxy_plugin_abi::serde_json::from_slice(&response.body).expect("the plugin answers JSON")
    }

    #[test]
    fn greets_by_name_with_the_default_greeting() {
        let plugin = MockHost::new().start::<HelloSystem>().unwrap();
        let response = plugin
            .route(request("GET", "/hello/greet?name=Ada"))
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(body(&response), json!({"message": "Hello, Ada!"}));
    }

    #[test]
    fn greets_the_world_with_a_configured_greeting() {
        let host = MockHost::new().config(json!({"greeting": "Howdy"}));
        let plugin = host.start::<HelloSystem>().unwrap();
        let response = plugin.route(request("GET", "/hello/greet")).unwrap();
        assert_eq!(body(&response), json!({"message": "Howdy, world!"}));
    }

    #[test]
    fn decodes_the_name() {
        let plugin = MockHost::new().start::<HelloSystem>().unwrap();
        let response = plugin
            .route(request("GET", "/hello/greet?x=1&name=J%C3%BCrgen+K"))
            .unwrap();
        assert_eq!(body(&response), json!({"message": "Hello, Jürgen K!"}));
    }

    #[test]
    fn hook_counts_and_logs_requests() {
        let host = MockHost::new();
        let plugin = host.start::<HelloSystem>().unwrap();
        let data =
            json!({"request_id": "req-1", "status_code": 201, "method": "GET", "path": "/x"});
        plugin.hook(HookEvent::RequestCompleted, data).unwrap();
        assert!(host.logs().contains(&(
            Level::Info,
            "hello_system saw request req-1 -> 201".to_owned()
        )));
        let stats = body(&plugin.route(request("GET", "/hello/stats")).unwrap());
        assert_eq!(stats["requests_seen"], 1);
    }

    #[test]
    fn service_greets_and_counts() {
        let plugin = MockHost::new().start::<HelloSystem>().unwrap();
        let answer = plugin
            .service("greeting", "greet", json!({"name": "Bo"}))
            .unwrap();
        assert_eq!(answer, json!({"message": "Hello, Bo!"}));
        let error = plugin.service("greeting", "greet", json!({})).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        let error = plugin
            .service("greeting", "shout", json!({"name": "Bo"}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        let stats = body(&plugin.route(request("GET", "/hello/stats")).unwrap());
        assert_eq!(stats["service_calls"], 1);
    }

    #[test]
    fn task_counts_runs_at_debug() {
        let host = MockHost::new();
        let plugin = host.start::<HelloSystem>().unwrap();
        plugin.task("hello_tick").unwrap();
        plugin.task("hello_tick").unwrap();
        assert!(
            host.logs()
                .contains(&(Level::Debug, "hello_tick run 2".to_owned()))
        );
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.details["task_runs"], 2);
    }

    #[test]
    fn manifest_declares_everything() {
        let plugin = MockHost::new().start::<HelloSystem>().unwrap();
        let manifest = plugin.manifest();
        assert_eq!(manifest.name, "hello_system");
        assert_eq!(manifest.kind, PluginKind::System);
        assert_eq!(manifest.provides, ["greeting"]);
        assert_eq!(manifest.hooks[0].priority, 700);
        assert_eq!(manifest.tasks[0].interval_seconds, 1.0);
        assert_eq!(
            manifest.config.defaults,
            json!({"greeting": "Hello", "tick_seconds": 1.0})
        );
    }

    #[test]
    fn bad_config_is_refused() {
        let unknown = MockHost::new().config(json!({"greetings": "Hi"}));
        assert_eq!(
            unknown.start::<HelloSystem>().unwrap_err().kind(),
            ErrorKind::Invalid
        );
        let negative = MockHost::new().config(json!({"tick_seconds": -1.0}));
        assert_eq!(
            negative.start::<HelloSystem>().unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn the_tick_interval_comes_from_the_config() {
        let plugin = MockHost::new().start::<HelloSystem>().unwrap();
        let task = &plugin.manifest().tasks[0];
        assert_eq!(task.interval_key.as_deref(), Some("tick_seconds"));
        assert_eq!(task.interval_seconds, 1.0);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("a=1&name=x", "name").as_deref(), Some("x"));
        assert_eq!(query_param("name", "name").as_deref(), Some(""));
        assert_eq!(query_param("", "name"), None);
        assert_eq!(query_param("q=100%", "q").as_deref(), Some("100%"));
        assert_eq!(query_param("q=%zz%41+b", "q").as_deref(), Some("%zzA b"));
    }
}
