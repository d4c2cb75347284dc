//! What `serve` tells the person who started it: the base URLs to give each
//! client for the providers actually loaded, and a loud warning when the
//! proxy can be reached from other machines without a client token.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::Config;
use crate::plugins::registry::Registry;

/// The base URL variables for one provider plugin, from the endpoints it
/// serves: `ANTHROPIC_BASE_URL` where it serves Anthropic Messages at
/// `PREFIX/v1/messages` (Claude Code and the anthropic SDK append
/// `/v1/messages`), `OPENAI_BASE_URL` where it serves an OpenAI format at
/// `PREFIX/v1/…` (the OpenAI SDKs and the Codex CLI append the rest).
pub(crate) fn base_urls(
    origin: &str,
    endpoint_paths: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    let mut urls: Vec<(&'static str, String)> = Vec::new();
    for (format, path) in endpoint_paths {
        let found = match *format {
            "anthropic.messages" => path
                .strip_suffix("/v1/messages")
                .map(|prefix| ("ANTHROPIC_BASE_URL", format!("{origin}{prefix}"))),
            "openai.chat_completions" => path
                .strip_suffix("/chat/completions")
                .map(|base| ("OPENAI_BASE_URL", format!("{origin}{base}"))),
            "openai.responses" => path
                .strip_suffix("/responses")
                .map(|base| ("OPENAI_BASE_URL", format!("{origin}{base}"))),
            _ => None,
        };
        if let Some(found) = found
            && !urls.iter().any(|(variable, _)| *variable == found.0)
        {
            urls.push(found);
        }
    }
    // The same order for every provider: Anthropic clients first.
    urls.sort_by_key(|(variable, _)| *variable);
    urls
}

/// The address clients on this machine use: a wildcard bind is reached on loopback.
fn local_origin(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// Prints the start-up lines on stdout, and warns (log and stdout) when the
/// proxy listens beyond loopback without a client token.
pub(super) fn print(bound: SocketAddr, registry: &Registry, config: &Config) {
    let origin = local_origin(bound);
    let mut lines = vec![format!(
        "ccproxy {} serving on http://{bound}",
        super::version()
    )];
    let mut any_provider = false;
    for plugin in &registry.active {
        let endpoints: Vec<(&str, &str)> = plugin
            .provider_endpoints()
            .map(|(_, endpoint)| (endpoint.format.as_str(), endpoint.path.as_str()))
            .collect();
        for (variable, url) in base_urls(&origin, &endpoints) {
            any_provider = true;
            let clients = if variable == "ANTHROPIC_BASE_URL" {
                "Claude Code, anthropic SDKs"
            } else {
                "Codex CLI, OpenAI SDKs"
            };
            lines.push(format!(
                "  {:<12} {clients:<28} {variable}={url}",
                plugin.manifest.name
            ));
        }
    }
    if any_provider {
        lines.push(match &config.security.auth_token {
            Some(_) => "  set the clients' API key (ANTHROPIC_API_KEY, OPENAI_API_KEY) to the proxy's token (security.auth_token); docs/CLIENTS.md".to_owned(),
            None => "  the clients' API key variables may hold any value; docs/CLIENTS.md".to_owned(),
        });
    } else {
        lines.push("  no provider plugin is loaded: `ccproxy plugins list` says why".to_owned());
    }
    if !bound.ip().is_loopback() && config.security.auth_token.is_none() {
        let warning = format!(
            "listening on {bound}, which other machines can reach, without a client token: anyone who can connect uses your logins and API keys; set security.auth_token (--auth-token, SECURITY__AUTH_TOKEN) or bind 127.0.0.1"
        );
        tracing::warn!("{warning}");
        lines.push(format!("WARNING: {warning}"));
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_follow_the_endpoints() {
        let urls = base_urls(
            "http://127.0.0.1:8000",
            &[
                ("anthropic.messages", "/claude/v1/messages"),
                ("openai.chat_completions", "/claude/v1/chat/completions"),
                ("openai.responses", "/claude/v1/responses"),
            ],
        );
        assert_eq!(
            urls,
            vec![
                (
                    "ANTHROPIC_BASE_URL",
                    "http://127.0.0.1:8000/claude".to_owned()
                ),
                (
                    "OPENAI_BASE_URL",
                    "http://127.0.0.1:8000/claude/v1".to_owned()
                ),
            ]
        );
        assert!(base_urls("http://h", &[("anthropic.messages", "/messages")]).is_empty());
    }

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        assert_eq!(
            local_origin("0.0.0.0:8000".parse().expect("an address")),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            local_origin("[::]:9".parse().expect("an address")),
            "http://[::1]:9"
        );
    }
}
