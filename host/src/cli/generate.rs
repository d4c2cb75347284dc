//! `ccproxy completions SHELL` and `ccproxy man`: generated from the clap
//! definitions, so they cannot drift from the flags.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, exit};

/// Writes the completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "ccproxy", out);
    Ok(exit::OK)
}

/// Writes the man page `ccproxy(1)`, with a section per subcommand.
pub(super) fn man_page(out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    // Each subcommand's own flags, under its full name (`ccproxy config init`).
    for (path, subcommand) in leaves(&command, "ccproxy") {
        writeln!(page, ".SH \"{}\"", path.to_uppercase())?;
        let about = subcommand
            .get_long_about()
            .or(subcommand.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        writeln!(page, "{}", roff_escape(&about))?;
        // clap_mangen heads the options `.SH OPTIONS`; under the subcommand's
        // heading they are a subsection.
        let mut options = Vec::new();
        clap_mangen::Man::new(subcommand.clone()).render_options_section(&mut options)?;
        let options = String::from_utf8_lossy(&options).replace(".SH OPTIONS", ".SS Options");
        page.extend_from_slice(options.as_bytes());
    }
    man.render_extra_section(&mut page)?;
    man.render_version_section(&mut page)?;
    man.render_authors_section(&mut page)?;
    out.write_all(&page)?;
    Ok(exit::OK)
}

/// Every subcommand that takes no further subcommand, with its full name.
fn leaves(command: &clap::Command, prefix: &str) -> Vec<(String, clap::Command)> {
    let mut found = Vec::new();
    for subcommand in command.get_subcommands() {
        if subcommand.get_name() == "help" {
            continue;
        }
        let path = format!("{prefix} {}", subcommand.get_name());
        if subcommand.has_subcommands() {
            found.extend(leaves(subcommand, &path));
        } else {
            found.push((path, subcommand.clone()));
        }
    }
    found
}

fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\\\");
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definitions_are_consistent() {
        // clap's own checks: no clashing names, shorts or ids, valid defaults.
        Cli::command().debug_assert();
    }

    #[test]
    fn the_version_names_the_plugin_api_major_and_minor() {
        let version = Cli::command()
            .get_version()
            .map(ToString::to_string)
            .unwrap_or_default();
        let api: Vec<&str> = ccproxy_plugin_abi::API_VERSION.split('.').collect();
        assert_eq!(
            version,
            format!(
                "{} (plugin API {}.{})",
                env!("CARGO_PKG_VERSION"),
                api[0],
                api[1]
            )
        );
    }

    #[test]
    fn the_man_page_has_a_section_per_command() {
        let mut page = Vec::new();
        man_page(&mut page).expect("the man page renders");
        let page = String::from_utf8(page).expect("roff is text");
        for command in leaves(&Cli::command(), "ccproxy") {
            let heading = format!(".SH \"{}\"", command.0.to_uppercase());
            assert!(page.contains(&heading), "{heading} missing");
        }
        assert!(
            page.contains("SERVER__PORT"),
            "the env variables are listed"
        );
    }
}
