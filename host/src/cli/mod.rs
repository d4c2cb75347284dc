//! The command line: clap definitions, then one module per command.
//!
//! Parsing only validates; each command builds its [`crate::config::Config`]
//! through the same precedence chain (defaults < TOML < env < flags).

mod auth;
mod plugins_cmd;
mod plugins_install;
mod scaffold;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
#[command(name = "ccproxy", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
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

/// Flags that shape the configuration, shared by `serve` and `plugins`.
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigArgs {
    /// Config file (TOML). Default: ./.ccproxy.toml, ./ccproxy.toml, then
    /// $XDG_CONFIG_HOME/ccproxy/config.toml.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Also load this plugin (adds to `enabled_plugins` when that list is set). Repeatable.
    #[arg(long = "enable-plugin", value_name = "NAME")]
    pub enable_plugin: Vec<String>,
    /// Do not load this plugin. Repeatable.
    #[arg(long = "disable-plugin", value_name = "NAME")]
    pub disable_plugin: Vec<String>,
    /// Also look for plugin libraries in DIR. Repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dir: Vec<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace, or `info,ccproxy=debug`).
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Flags of `serve`.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (default 8000; 0 picks a free port).
    #[arg(long, short = 'p')]
    pub port: Option<u16>,
    /// Require this token from clients (Bearer or x-api-key).
    #[arg(long = "auth-token", value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Answer with canned responses instead of calling upstreams.
    #[arg(long)]
    pub bypass: bool,
    /// Configuration flags.
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ServeArgs {
    fn overrides(&self) -> CliOverrides {
        let mut overrides = self.config.overrides();
        overrides.host = self.host.clone();
        overrides.port = self.port;
        overrides.auth_token = self.auth_token.clone().map(Secret::new);
        overrides.bypass = self.bypass;
        overrides
    }
}

impl ConfigArgs {
    fn overrides(&self) -> CliOverrides {
        CliOverrides {
            log_level: self.log_level.clone(),
            enable_plugins: self.enable_plugin.clone(),
            disable_plugins: self.disable_plugin.clone(),
            plugin_dirs: self.plugin_dir.clone(),
            ..CliOverrides::default()
        }
    }

    /// Loads the configuration with these flags on top.
    fn load(&self, overrides: CliOverrides) -> anyhow::Result<config::Loaded> {
        let sources = config::Sources::from_process(self.config.clone(), overrides)
            .map_err(|error| anyhow::anyhow!("cannot read the working directory: {error}"))?;
        Ok(config::load(&sources)?)
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
    match cli.command {
        None => {
            let loaded = cli
                .serve
                .config
                .load(cli.serve.overrides())
                .map_err(usage)?;
            serve::run(loaded).map_err(failure)
        }
        Some(Command::Serve(args)) => {
            let loaded = args.config.load(args.overrides()).map_err(usage)?;
            serve::run(loaded).map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::List { json, config })) => {
            let loaded = config.load(config.overrides()).map_err(usage)?;
            plugins_cmd::list(&loaded.config, json).map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Info { name, json, config })) => {
            let loaded = config.load(config.overrides()).map_err(usage)?;
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
            let loaded = config.load(config.overrides()).map_err(usage)?;
            plugins_install::install(&loaded.config, &config.plugin_dir, &file, reload)
                .map_err(failure)
        }
        Some(Command::Plugins(PluginsCommand::Remove {
            name,
            reload,
            config,
        })) => {
            let loaded = config.load(config.overrides()).map_err(usage)?;
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
            crate::telemetry::init_cli(config.log_level.as_deref().unwrap_or("warn"))
                .map_err(usage)?;
            let loaded = config.load(config.overrides()).map_err(usage)?;
            auth::run(loaded.config, action).map_err(failure)
        }
    }
}
