//! `ccproxy config init | show | validate | schema`: the configuration written,
//! shown with where each value came from, checked, and described as a JSON Schema.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{Exit, exit};
use crate::config::{self, Config, Loaded, PluginDoc, Sources};
use crate::plugins::registry;

/// What to do.
#[derive(Debug)]
pub(super) enum Action {
    /// `config init`.
    Init {
        /// `--output`; `-` is stdout.
        output: Option<PathBuf>,
        /// `--force`.
        force: bool,
    },
    /// `config show`.
    Show {
        /// `--json`.
        json: bool,
    },
    /// `config validate`.
    Validate,
    /// `config schema`.
    Schema,
}

/// Runs a `config` command; returns the exit code.
pub(super) fn run(sources: &Sources, action: Action) -> Result<u8, Exit> {
    let usage = |error: anyhow::Error| Exit {
        code: exit::USAGE,
        message: format!("{error:#}"),
    };
    let failure = |error: anyhow::Error| Exit {
        code: exit::FAILURE,
        message: format!("{error:#}"),
    };
    match action {
        Action::Validate => Ok(validate(sources)),
        Action::Show { json } => {
            let loaded = config::load(sources).map_err(|error| usage(error.into()))?;
            show(&loaded, json).map_err(failure)
        }
        Action::Init { output, force } => {
            // A broken config file must not stop anyone from writing a fresh one.
            let config = config::load(sources)
                .map(|loaded| loaded.config)
                .unwrap_or_default();
            let template = config::init_template(&plugin_docs(&config).0);
            init(sources, output.as_deref(), force, &template).map_err(usage)
        }
        Action::Schema => {
            let config = config::load(sources)
                .map(|loaded| loaded.config)
                .unwrap_or_default();
            let schema = config::json_schema(&plugin_docs(&config).0);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).map_err(|e| failure(e.into()))?
            );
            Ok(exit::OK)
        }
    }
}

/// What the plugins found under `config` declare about their sections, and
/// their effective sections (`(name, section)`, defaults merged).
fn plugin_docs(config: &Config) -> (Vec<PluginDoc>, Vec<(String, Value)>) {
    let prepared = registry::prepare(config, &registry::search_path(config));
    let mut docs: Vec<PluginDoc> = Vec::new();
    let mut effective = Vec::new();
    for entry in &prepared.entries {
        let Some(manifest) = &entry.manifest else {
            continue;
        };
        if docs.iter().any(|doc| doc.name == manifest.name) {
            continue;
        }
        docs.push(PluginDoc {
            name: manifest.name.clone(),
            defaults: manifest.config.defaults.clone(),
            descriptions: manifest.config.descriptions.clone(),
            schema: manifest.config.schema.clone(),
        });
        let section = entry.config.clone().or_else(|| {
            config::validate_plugin_section(
                &manifest.name,
                &manifest.config.defaults,
                config.plugins.get(&manifest.name),
            )
            .ok()
        });
        if let Some(section) = section {
            effective.push((manifest.name.clone(), section));
        }
    }
    (docs, effective)
}

/// `config validate`: every problem on its own line on stderr and exit 2, or
/// exit 0; warnings are printed either way.
fn validate(sources: &Sources) -> u8 {
    let (problems, warnings, file, n_plugins) = match config::load_checked(sources) {
        Err(problems) => {
            let mut lines = config::problem_lines(&problems);
            lines.extend(plugin_problems_as_written(sources));
            (lines, Vec::new(), None, 0)
        }
        Ok(loaded) => {
            let (docs, _) = plugin_docs(&loaded.config);
            let (problems, mut warnings) = config::plugin_problems(&loaded, &docs);
            warnings.splice(0..0, loaded.warnings.iter().cloned());
            (problems, warnings, loaded.file.clone(), docs.len())
        }
    };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        eprintln!(
            "ccproxy: {} problem{} in the configuration",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return exit::USAGE;
    }
    let read = match &file {
        Some(file) => format!("{} with the environment and flags", file.display()),
        None => "no config file; the environment and flags".to_owned(),
    };
    println!("ok: {read}; checked against {n_plugins} plugins found");
    exit::OK
}

/// The problems of the file's plugin sections when the rest of the
/// configuration does not load: each section is checked against its plugin,
/// found where the defaults and the `--plugin-dir` flags say.
fn plugin_problems_as_written(sources: &Sources) -> Vec<String> {
    let (Some(file), sections) = config::file_plugin_sections(sources) else {
        return Vec::new();
    };
    let config = Config {
        plugins: sections,
        plugin_discovery: config::PluginDiscoveryConfig {
            directories: sources
                .cli
                .plugin_dirs
                .iter()
                .map(|dir| sources.cwd.join(dir))
                .collect(),
            ..config::PluginDiscoveryConfig::default()
        },
        ..Config::default()
    };
    let (docs, _) = plugin_docs(&config);
    let docs: Vec<PluginDoc> = docs
        .into_iter()
        .filter(|doc| config.plugins.contains_key(&doc.name))
        .collect();
    let loaded = Loaded {
        config,
        origins: std::collections::BTreeMap::from([(
            "plugins".to_owned(),
            config::Origin::File(file.clone()),
        )]),
        file: Some(file),
        warnings: Vec::new(),
    };
    config::plugin_problems(&loaded, &docs).0
}

/// `config show`.
fn show(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let (_, effective) = plugin_docs(&loaded.config);
    let keys = config::effective_keys(loaded, &effective);
    if json {
        let keys: Vec<Value> = keys
            .iter()
            .map(|shown| {
                json!({
                    "key": shown.key,
                    "value": shown.value,
                    "origin": config::origin_json(&shown.origin),
                })
            })
            .collect();
        let file = loaded.file.as_ref().map(|file| file.display().to_string());
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"file": file, "keys": keys, "warnings": loaded.warnings})
            )?
        );
        return Ok(exit::OK);
    }
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# the effective configuration: defaults < file < environment < flags; secrets as ***"
    )?;
    match &loaded.file {
        Some(file) => writeln!(out, "# config file: {}", file.display())?,
        None => writeln!(out, "# no config file found")?,
    }
    out.write_all(config::render_shown(&keys).as_bytes())?;
    Ok(exit::OK)
}

/// `config init`: writes `template` to `output` (default: the user config
/// file), 0600, never through a symbolic link, and never over an existing file
/// without `--force`.
fn init(
    sources: &Sources,
    output: Option<&Path>,
    force: bool,
    template: &str,
) -> anyhow::Result<u8> {
    if output == Some(Path::new("-")) {
        print!("{template}");
        return Ok(exit::OK);
    }
    let path = match output {
        Some(path) => sources.cwd.join(path),
        None => sources
            .user_config_dir()
            .context("no config folder: set XDG_CONFIG_HOME or HOME, or pass --output FILE")?
            .join("config.toml"),
    };
    if !force && std::fs::symlink_metadata(&path).is_ok() {
        anyhow::bail!(
            "{} exists; pass --force to replace it, or --output FILE to write elsewhere",
            path.display()
        );
    }
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        create_private_dir(folder)?;
    }
    write_private(&path, template.as_bytes(), force)?;
    println!(
        "wrote {}; check it with `ccproxy config validate --config {}`",
        path.display(),
        path.display()
    );
    Ok(exit::OK)
}

fn create_private_dir(folder: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(folder)
        .with_context(|| format!("cannot create {}", folder.display()))
}

/// Writes `bytes` to `path` with mode 0600, refusing to follow a symbolic link
/// at `path`; `replace` allows an existing file to be overwritten.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.raw_os_error() == Some(libc::ELOOP) {
            anyhow::anyhow!(
                "{} is a symbolic link, which is not followed; remove it or pass --output FILE",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {error}", path.display())
        }
    })?;
    #[cfg(unix)]
    {
        // A replaced file keeps its mode otherwise.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
