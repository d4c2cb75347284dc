//! Configuration: the typed [`Config`], where it comes from, and per-plugin sections.
//!
//! [`load`] layers the sources key by key: built-in defaults < TOML file < environment <
//! CLI flags. A TOML table (or env var) sets only the keys it names; everything else keeps the
//! value from the layer below.
//!
//! - **File**: `--config PATH`, else `CONFIG_FILE`, else the first of `./.ccproxy.toml`,
//!   `./ccproxy.toml`, `$XDG_CONFIG_HOME/ccproxy/config.toml`. A file named explicitly that does
//!   not exist is an error. (The original also searched the git root; this one does not.)
//! - **Environment**: `SECTION__FIELD` (`SERVER__PORT=9000`), `PLUGINS__NAME__FIELD[__SUB…]`,
//!   `ENABLE_PLUGINS`, `ENABLED_PLUGINS` / `DISABLED_PLUGINS` (comma-separated),
//!   `CCPROXY_LOG_LEVEL`, `PLUGINS_DISABLE_LOCAL_DISCOVERY`. Names are case-insensitive; empty
//!   values count as unset; variables of other prefixes are ignored.
//! - **CLI**: [`CliOverrides`]; `--enable-plugin` adds to the allow list rather than replacing
//!   it as the original did.
//!
//! Unlike the original, unknown keys are errors that name every unknown key, where it was set
//! and what the table accepts; keys of the original that mean something here
//! (`server.log_level`, `cors.origins`) are taken with a warning naming the new key.
//! [`init_template`], [`effective_keys`], [`plugin_problems`] and [`json_schema`] describe the
//! configuration for the `ccproxy config` commands. Plugin sections are kept raw in [`Config::plugins`] and checked
//! against each plugin's declared defaults by [`validate_plugin_section`] when it loads;
//! [`plugin_allowed`] is the enabled/disabled filter. Secrets live in [`Secret`], which never
//! prints its value; [`render_effective`] shows the effective config with secrets masked.
//!
//! **Invariant:** loading is a pure function of [`Sources`]; only [`Sources::from_process`]
//! reads the process environment.

mod describe;
mod env;
mod error;
mod model;
mod plugin_section;
mod render;
mod schema;
mod secret;
mod sources;

#[cfg(test)]
mod precedence_tests;
#[cfg(test)]
mod test_support;

pub use describe::{
    PluginDoc, ShownKey, effective_keys, init_template, json_schema, masked, origin_json,
    origin_label, plugin_problems, problem_lines, render_shown,
};
pub use error::{ConfigError, Origin, UnknownKey};
pub use model::{
    Config, HooksConfig, HttpConfig, LogFormat, LoggingConfig, PluginDiscoveryConfig,
    PluginSection, RoutingConfig, SecurityConfig, ServerConfig,
};
pub use plugin_section::{
    PluginConfigError, UnknownPluginKey, plugin_allowed, unknown_plugin_names,
    validate_plugin_section,
};
pub use render::render_effective;
pub use secret::Secret;
pub use sources::{
    CliOverrides, Loaded, Sources, file_plugin_sections, load, load_checked, user_config_dir,
};
