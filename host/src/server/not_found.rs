//! The 404 for a path nothing serves, with a hint when the path is an API
//! path without its provider prefix (`POST /v1/messages` → served under
//! `/claude/v1/messages`): the most common mistake in a client's base URL.

use http::{Response, StatusCode};

use super::{
    App,
    response::{Body, error_response},
};

/// API paths clients append to a base URL themselves.
const API_PATHS: &[&str] = &[
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/models",
    "/messages",
    "/chat/completions",
    "/responses",
];

/// The 404 answer for `method path`.
pub(super) fn response(app: &App, method: &str, path: &str) -> Response<Body> {
    let served: Vec<(String, String)> = app
        .registry
        .active
        .iter()
        .flat_map(|plugin| {
            plugin
                .provider_endpoints()
                .map(|(_, endpoint)| (endpoint.path.clone(), plugin.manifest.name.clone()))
                .collect::<Vec<_>>()
        })
        .chain(
            app.routes
                .adapter_endpoints()
                .iter()
                .map(|endpoint| (endpoint.path.clone(), endpoint.plugin.clone())),
        )
        .collect();
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        &message(method, path, &served),
    )
}

/// The message: where `path` is served under a prefix, or that no provider
/// serving it is loaded, or where to find the routes.
fn message(method: &str, path: &str, served: &[(String, String)]) -> String {
    let under_prefix: Vec<(&str, &str)> = served
        .iter()
        .filter(|(full, _)| {
            path.len() > 1
                && full.len() > path.len()
                && full.ends_with(path)
                && !full[..full.len() - path.len()].ends_with('/')
        })
        .map(|(full, plugin)| (full.as_str(), plugin.as_str()))
        .collect();
    if let Some((first, _)) = under_prefix.first() {
        let prefix = &first[..first.len() - path.len()];
        // What the client's base URL should be, for the kind of client that
        // appends this path.
        let base_url = if let Some(rest) = path.strip_prefix("/v1/") {
            if rest.starts_with("messages") {
                format!("ANTHROPIC_BASE_URL=http://HOST:PORT{prefix}")
            } else {
                format!("OPENAI_BASE_URL=http://HOST:PORT{prefix}/v1")
            }
        } else {
            format!("a base URL of http://HOST:PORT{prefix}")
        };
        let served_at: Vec<String> = under_prefix
            .iter()
            .map(|(full, plugin)| format!("{full} (plugin {plugin})"))
            .collect();
        return format!(
            "no route for {method} {path}: API paths are served under a provider's prefix: {}; \
             give the client {base_url} (docs/CLIENTS.md)",
            served_at.join(", ")
        );
    }
    if API_PATHS.contains(&path) {
        return format!(
            "no route for {method} {path}: API paths are served under a provider's prefix \
             (/claude{path}, /codex{path}), and no loaded provider plugin serves this one; \
             `ccproxy plugins list` says which plugins are loaded and why the others are not"
        );
    }
    format!("no route for {method} {path}; GET /plugins/status lists every route")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Vec<(String, String)> {
        vec![
            ("/claude/v1/messages".to_owned(), "claude_api".to_owned()),
            ("/codex/v1/messages".to_owned(), "codex".to_owned()),
            ("/claude/v1/responses".to_owned(), "claude_api".to_owned()),
        ]
    }

    #[test]
    fn an_api_path_without_its_prefix_names_the_prefixes() {
        let text = message("POST", "/v1/messages", &served());
        assert!(
            text.contains(
                "/claude/v1/messages (plugin claude_api), /codex/v1/messages (plugin codex)"
            ),
            "{text}"
        );
        assert!(!text.contains("responses"), "{text}");
        assert!(
            text.ends_with(
                "give the client ANTHROPIC_BASE_URL=http://HOST:PORT/claude (docs/CLIENTS.md)"
            ),
            "{text}"
        );
        let text = message("POST", "/v1/responses", &served());
        assert!(
            text.contains("OPENAI_BASE_URL=http://HOST:PORT/claude/v1 "),
            "{text}"
        );
    }

    #[test]
    fn partial_segments_do_not_match() {
        let text = message(
            "POST",
            "/messages",
            &[("/claude/v1/xmessages".to_owned(), "a".to_owned())],
        );
        assert!(
            text.contains("and no loaded provider plugin serves this one"),
            "{text}"
        );
        let text = message("GET", "/nothing", &served());
        assert_eq!(
            text,
            "no route for GET /nothing; GET /plugins/status lists every route"
        );
    }
}
