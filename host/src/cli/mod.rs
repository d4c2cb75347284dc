//! The command line: clap definitions, then one module per command.
//!
//! Parsing only validates; each command builds its [`crate::config::Config`]
//! through the same precedence chain (defaults < TOML < env < flags).

mod auth;
mod banner;
mod config_cmd;
mod generate;
mod plugins_cmd;
mod plugins_install;
mod scaffold;
mod serve;

use std::path::PathBuf;

use clap::{
    ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource,
};

use crate::config::{self, CliOverrides, Secret};

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A runtime failure (or a refused plugin for `plugins check`).
    pub const FAILURE: u8 = 1;
    /// A usage or configuration error.
    pub const USAGE: u8 = 2;
}

/// ccproxy: one local endpoint for Claude, Codex and API keys, speaking
/// Anthropic Messages, OpenAI Chat Completions and OpenAI Responses; every
/// capability is a plugin.
#[derive(Debug, Parser)]
#[command(name = "ccproxy", version = version(), about, long_about = None)]
pub struct Cli {
    /// Flags every command takes, before or after the subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `0.1.0 (plugin API 1.3)`: the binary's version and the plugin API it
/// speaks, major.minor, from the SDK crate it was built with.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let api: Vec<&str> = ccproxy_plugin_abi::API_VERSION.split('.').take(2).collect();
        format!(
            "{} (plugin API {})",
            env!("CARGO_PKG_VERSION"),
            api.join(".")
        )
    })
}

impl Cli {
    /// Parses the process's arguments (exits on `--help`, `--version` or a
    /// usage error, as clap does).
    ///
    /// Flags name their environment variable (`--port` shows
    /// `[env: SERVER__PORT]`), so clap reads those variables too; a value that
    /// came from the environment is dropped here, because the config loader
    /// reads the same variable itself and reports it as the environment, not
    /// as a flag (`ccproxy config show`).
    pub fn parse_args() -> Self {
        let matches = Self::command().get_matches();
        let mut cli = match Self::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(error) => error.exit(),
        };
        cli.drop_env_values(&matches);
        let serve_args = match &cli.command {
            Some(Command::Serve(args)) => args,
            _ => &cli.serve,
        };
        if serve_args.port.is_some_and(|port| port.0.is_err()) {
            Self::command()
                .error(
                    clap::error::ErrorKind::ValueValidation,
                    "invalid value for '--port <PORT>': expected an integer 0-65535",
                )
                .exit();
        }
        // `serve`'s flags are taken without the subcommand, but not before another
        // one (`ccproxy --port 9 plugins list` would ignore the port).
        if let Some((name, _)) = matches.subcommand()
            && name != "serve"
            && let Some(flag) = Self::command()
                .get_arguments()
                .filter(|arg| !arg.is_global_set())
                .find(|arg| {
                    matches.try_get_raw(arg.get_id().as_str()).is_ok()
                        && matches.value_source(arg.get_id().as_str())
                            == Some(ValueSource::CommandLine)
                })
                .and_then(|arg| arg.get_long().map(str::to_owned))
        {
            Self::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--{flag} is a flag of `ccproxy serve`; it has no effect on `ccproxy {name}`"),
                )
                .exit();
        }
        cli
    }

    fn drop_env_values(&mut self, matches: &ArgMatches) {
        let from_env = |matches: &ArgMatches, id: &str| {
            matches.try_get_raw(id).is_ok()
                && matches.value_source(id) == Some(ValueSource::EnvVariable)
        };
        if from_env(matches, "config") {
            self.global.config = None;
        }
        if from_env(matches, "log_level") {
            self.global.log_level = None;
        }
        self.serve.drop_env_values(matches, &from_env);
        if let (Some(Command::Serve(args)), Some(("serve", serve_matches))) =
            (&mut self.command, matches.subcommand())
        {
            args.drop_env_values(serve_matches, &from_env);
        }
    }
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// Config file (TOML). Default: ./.ccproxy.toml, ./ccproxy.toml, then
    /// $XDG_CONFIG_HOME/ccproxy/config.toml.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "CONFIG_FILE",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace, or
    /// `info,ccproxy=debug`); sets logging.level (also env CCPROXY_LOG_LEVEL).
    #[arg(
        long = "log-level",
        global = true,
        env = "LOGGING__LEVEL",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the proxy with every enabled plugin (the default command).
    Serve(ServeArgs),
    /// Inspect plugins without serving.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Log in to upstream providers (OAuth) through the auth-provider plugins.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Write, show, check and describe the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `ccproxy completions bash > /etc/bash_completion.d/ccproxy`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `ccproxy man > ccproxy.1`.
    Man,
    /// Ask the running server (found by its port) to reload its config and
    /// plugins, as SIGHUP does, and wait for the outcome: exit 0 when the new
    /// state serves, 1 when the reload failed and the old state keeps serving.
    Reload {
        /// The port of the server to reload (default: server.port of the config).
        #[arg(long)]
        port: Option<u16>,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `ccproxy config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented config file with every key, its default and its
    /// meaning, the sections of the plugins found included.
    Init {
        /// Where to write (default: $XDG_CONFIG_HOME/ccproxy/config.toml); `-` for stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show the effective value of every key and where it came from (default,
    /// file, env variable, flag); secrets masked.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check the configuration (file, environment, flags, plugin sections):
    /// exit 0, or 2 with one line per problem.
    Validate {
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the JSON Schema of the config file: core keys and the sections
    /// of the plugins found.
    Schema {
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `ccproxy auth …`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// List the OAuth providers the installed plugins offer.
    Providers {
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Log in: a browser flow with a local callback server, or `--manual` to
    /// paste the code on a machine without a browser.
    Login {
        /// Provider name, e.g. `claude-api` or `codex`.
        provider: String,
        /// Paste the code (`code#state`) instead of running a callback server.
        #[arg(long, short = 'm')]
        manual: bool,
        /// Print the URL without trying to open a browser.
        #[arg(long)]
        no_browser: bool,
        /// Seconds to wait for the browser callback.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show the stored credentials (tokens masked); exit 1 when not logged in.
    Status {
        /// Provider name.
        provider: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Refresh the access token now.
    Refresh {
        /// Provider name.
        provider: String,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete the stored credentials.
    Logout {
        /// Provider name.
        provider: String,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `ccproxy plugins …`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin file found: name, version, kind, status, file, reason.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show one plugin's manifest and its config with defaults.
    Info {
        /// The plugin's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Configuration flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Load and validate one library without serving; the exit code is the verdict
    /// (0 loadable, 1 refused).
    Check {
        /// The library file (.so, .dylib, .dll).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a new plugin crate that builds, tests and loads as it is.
    Scaffold {
        /// The plugin's name: lower-case letters, digits and underscores.
        name: String,
        /// The kind of plugin.
        #[arg(long = "type", value_enum, default_value = "system")]
        kind: scaffold::Kind,
        /// The folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK to depend on: the plugin-abi folder of a ccproxy checkout
        /// (default: the checkout this binary was built from, if present).
        #[arg(long = "sdk-path", value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
    /// Check a plugin library as `plugins check` does and copy it into the
    /// plugin folder (mode 0644), replacing an older version of the same plugin.
    Install {
        /// The library file (.so, .dylib, .dll).
        file: PathBuf,
        /// Then ask the running service to reload.
        #[arg(long)]
        reload: bool,
        /// Configuration flags (the first --plugin-dir is the folder installed into).
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Take an installed plugin out of the plugin folder.
    Remove {
        /// The plugin's name (or the file name of a library that no longer loads).
        name: String,
        /// Then ask the running service to reload.
        #[arg(long)]
        reload: bool,
        /// Configuration flags (the first --plugin-dir is the folder removed from).
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Flags that shape the configuration, shared by `serve`, `plugins`, `auth`
/// and `config` (with the global `--config` and `--log-level`).
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigArgs {
    /// Also load this plugin (adds to `enabled_plugins` when that list is set;
    /// see env ENABLED_PLUGINS). Repeatable.
    #[arg(long = "enable-plugin", value_name = "NAME")]
    pub enable_plugin: Vec<String>,
    /// Do not load this plugin (adds to `disabled_plugins`; see env
    /// DISABLED_PLUGINS). Repeatable.
    #[arg(long = "disable-plugin", value_name = "NAME")]
    pub disable_plugin: Vec<String>,
    /// Also look for plugin libraries in DIR (appends to
    /// plugin_discovery.directories; see env PLUGIN_DISCOVERY__DIRECTORIES). Repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dir: Vec<PathBuf>,
}

/// `--port`'s value as given: a port, or the text that is not one.
///
/// Internal: clap reads `SERVER__PORT` for `--port` whatever the command, so
/// a bad variable must not fail parsing with a message about a flag nobody
/// gave; the config loader reports it as the environment's. A bad value given
/// on the command line is refused by [`Cli::parse_args`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortArg(Result<u16, ()>);

fn lenient_port(raw: &str) -> Result<PortArg, std::convert::Infallible> {
    Ok(PortArg(raw.trim().parse::<u16>().map_err(|_| ())))
}

/// Flags of `serve`.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// Address to listen on (server.host, default 127.0.0.1).
    #[arg(long, env = "SERVER__HOST")]
    pub host: Option<String>,
    /// Port to listen on (server.port, default 8000; 0 picks a free port).
    #[arg(long, short = 'p', env = "SERVER__PORT", value_parser = lenient_port)]
    pub port: Option<PortArg>,
    /// Require this token from clients, as Bearer or x-api-key (security.auth_token).
    #[arg(
        long = "auth-token",
        value_name = "TOKEN",
        env = "SECURITY__AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// Answer with canned responses instead of calling upstreams (server.bypass_mode).
    #[arg(long, env = "SERVER__BYPASS_MODE", value_parser = clap::builder::FalseyValueParser::new())]
    pub bypass: bool,
    /// Also write the log to FILE instead of stderr (logging.file).
    #[arg(long = "log-file", value_name = "FILE", env = "LOGGING__FILE")]
    pub log_file: Option<PathBuf>,
    /// No line per request on the terminal (server.request_lines = false;
    /// env SERVER__REQUEST_LINES=false).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Configuration flags.
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ServeArgs {
    fn overrides(&self, global: &GlobalArgs) -> CliOverrides {
        let mut overrides = self.config.overrides(global);
        overrides.host = self.host.clone();
        overrides.port = self.port.and_then(|port| port.0.ok());
        overrides.auth_token = self.auth_token.clone().map(Secret::new);
        overrides.bypass = self.bypass;
        overrides.log_file = self.log_file.clone();
        overrides.quiet = self.quiet;
        overrides
    }

    fn drop_env_values(
        &mut self,
        matches: &ArgMatches,
        from_env: &dyn Fn(&ArgMatches, &str) -> bool,
    ) {
        if from_env(matches, "host") {
            self.host = None;
        }
        if from_env(matches, "port") {
            self.port = None;
        }
        if from_env(matches, "auth_token") {
            self.auth_token = None;
        }
        if from_env(matches, "bypass") {
            self.bypass = false;
        }
        if from_env(matches, "log_file") {
            self.log_file = None;
        }
    }
}

impl ConfigArgs {
    fn overrides(&self, global: &GlobalArgs) -> CliOverrides {
        CliOverrides {
            log_level: global.log_level.clone(),
            enable_plugins: self.enable_plugin.clone(),
            disable_plugins: self.disable_plugin.clone(),
            plugin_dirs: self.plugin_dir.clone(),
            ..CliOverrides::default()
        }
    }

    /// The configuration's sources: this process with these flags on top.
    fn sources(
        &self,
        global: &GlobalArgs,
        overrides: CliOverrides,
    ) -> anyhow::Result<config::Sources> {
        config::Sources::from_process(global.config.clone(), overrides)
            .map_err(|error| anyhow::anyhow!("cannot read the working directory: {error}"))
    }

    /// Loads the configuration with these flags on top; its warnings (a key of the original
    /// taken under its new name, a config file others can write) go to stderr, as `serve` logs
    /// them.
    fn load(&self, global: &GlobalArgs, overrides: CliOverrides) -> anyhow::Result<config::Loaded> {
        let loaded = config::load(&self.sources(global, overrides)?)?;
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        Ok(loaded)
    }

    /// [`ConfigArgs::load`], keeping the sources to read again on a reload.
    fn load_keeping_sources(
        &self,
        global: &GlobalArgs,
        overrides: CliOverrides,
    ) -> anyhow::Result<(config::Loaded, config::Sources)> {
        let sources = self.sources(global, overrides)?;
        Ok((config::load(&sources)?, sources))
    }
}

/// A failure with the exit code it should end the process with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// One line.
    pub message: String,
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8, Exit> {
    let usage = |error: anyhow::Error| Exit {
        code: exit::USAGE,
        message: format!("{error:#}"),
    };
    let failure = |error: anyhow::Error| Exit {
        code: exit::FAILURE,
        message: format!("{error:#}"),
    };
    let global = &cli.global;
    match cli.command {
        None => {
            let (loaded, sources) = cli
                .serve
                .config
                .load_keeping_sources(global, cli.serve.overrides(global))
                .map_err(usage)?;
            serve::run(loaded, sources).map_err(failure)
        }
        Some(Command::Serve(args)) => {
            let (loaded, sources) = args
                .config
                .load_keeping_sources(global, args.overrides(global))
                .map_err(usage)?;
            serve::run(loaded, sources).map_err(failure)
        }
        Some(Command::Reload { port, config }) => {
            // With --port, a config file broken on purpose or by accident
            // is the server's to report, not a reason to refuse asking.
            let port = match port {
                Some(port) => port,
                None => {
                    config
                        .load(global, config.overrides(global))
                        .map_err(|error| {
                            usage(error.context(
                                "cannot read the config to find the server's port; pass --port",
                            ))
                        })?
                        .config
                        .server
                        .port
                }
            };
            let message =
                crate::service::control::reload_running(port, std::time::Duration::from_secs(120))
                    .map_err(failure)?;
            println!("reloaded: {message}");
            Ok(exit::OK)
        }
        Some(Command::Plugins(PluginsCommand::List { json, config })) => {
            let loaded = config
                .load(global, config.overrides(global))
                .map_err(usage)?;
            plugins_cmd::list(&loaded.config, json).map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Info { name, json, config })) => {
            let loaded = config
                .load(global, config.overrides(global))
                .map_err(usage)?;
            plugins_cmd::info(&loaded.config, &name, json).map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Check { file, json })) => {
            plugins_cmd::check(&file, json).map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Install {
            file,
            reload,
            config,
        })) => {
            let loaded = config
                .load(global, config.overrides(global))
                .map_err(usage)?;
            plugins_install::install(&loaded.config, &config.plugin_dir, &file, reload)
                .map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Remove {
            name,
            reload,
            config,
        })) => {
            let loaded = config
                .load(global, config.overrides(global))
                .map_err(usage)?;
            plugins_install::remove(&loaded.config, &config.plugin_dir, &name, reload)
                .map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Scaffold {
            name,
            kind,
            dir,
            sdk_path,
        })) => scaffold::run(&scaffold::Request {
            name,
            kind,
            dir,
            sdk_path,
        })
        .map_err(usage),
        Some(Command::Auth(command)) => {
            let (config, action) = match command {
                AuthCommand::Providers { config } => (config, auth::Action::Providers),
                AuthCommand::Login {
                    provider,
                    manual,
                    no_browser,
                    timeout,
                    config,
                } => (
                    config,
                    auth::Action::Login {
                        provider,
                        manual,
                        no_browser,
                        timeout: std::time::Duration::from_secs(timeout),
                    },
                ),
                AuthCommand::Status {
                    provider,
                    json,
                    config,
                } => (config, auth::Action::Status { provider, json }),
                AuthCommand::Refresh { provider, config } => {
                    (config, auth::Action::Refresh { provider })
                }
                AuthCommand::Logout { provider, config } => {
                    (config, auth::Action::Logout { provider })
                }
            };
            crate::telemetry::init_cli(global.log_level.as_deref().unwrap_or("warn"))
                .map_err(usage)?;
            let loaded = config
                .load(global, config.overrides(global))
                .map_err(usage)?;
            auth::run(loaded.config, action).map_err(failure)
        }
        Some(Command::Config(command)) => {
            let (config, action) = match command {
                ConfigCommand::Init {
                    output,
                    force,
                    config,
                } => (config, config_cmd::Action::Init { output, force }),
                ConfigCommand::Show { json, config } => (config, config_cmd::Action::Show { json }),
                ConfigCommand::Validate { config } => (config, config_cmd::Action::Validate),
                ConfigCommand::Schema { config } => (config, config_cmd::Action::Schema),
            };
            let sources = config
                .sources(global, config.overrides(global))
                .map_err(usage)?;
            config_cmd::run(&sources, action)
        }
        Some(Command::Completions { shell }) => {
            generate::completions(shell, &mut std::io::stdout()).map_err(failure)
        }
        Some(Command::Man) => generate::man_page(&mut std::io::stdout()).map_err(failure),
    }
}
