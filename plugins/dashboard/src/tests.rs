//! The plugin against the SDK's mock host: routes, files, headers, config
//! and health.

use ccproxy_plugin_abi::testing::{MockHost, TestPlugin, request};

use super::*;
use crate::files::{CACHE_CONTROL, CONTENT_SECURITY_POLICY};

fn start(config: Value) -> TestPlugin {
    MockHost::new()
        .config(config)
        .start::<Dashboard>()
        .expect("the dashboard starts")
}

fn get(plugin: &TestPlugin, path: &str) -> Response {
    plugin
        .route(request("GET", path))
        .expect("the route answers")
}

/// The answer to `GET path`, checked to be a 200 of `content_type` with
/// every security and cache header.
fn served(plugin: &TestPlugin, path: &str, content_type: &str) -> Response {
    let response = get(plugin, path);
    assert_eq!(response.status, 200, "{path}");
    assert_eq!(
        response.headers.get("content-type"),
        Some(content_type),
        "{path}"
    );
    assert_eq!(
        response.headers.get("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY),
        "{path}"
    );
    assert_eq!(
        response.headers.get("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(
        response.headers.get("cache-control"),
        Some(CACHE_CONTROL),
        "{path}"
    );
    let etag = response.headers.get("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
        "{etag}"
    );
    response
}

fn text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).expect("UTF-8")
}

/// The values of `attribute="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').expect("a closing quote")]
        })
        .collect()
}

#[test]
fn every_route_is_public_and_mounted_where_the_page_expects() {
    let manifest = Dashboard::manifest();
    let mut mounted: Vec<String> = manifest
        .routes
        .iter()
        .flat_map(|group| {
            group.routes.iter().map(move |route| {
                assert!(route.public, "{} must need no token", route.path);
                format!("{} {}", route.method, group.full_path(route))
            })
        })
        .collect();
    mounted.sort();
    assert_eq!(
        mounted,
        [
            "GET /dashboard",
            "GET /dashboard/",
            "GET /dashboard/assets/{*file}",
            "GET /dashboard/favicon.svg",
        ]
    );
}

#[test]
fn each_file_has_its_content_type_and_bytes() {
    let plugin = start(json!({}));
    let page = served(&plugin, "/dashboard", "text/html; charset=utf-8");
    assert!(text(&page).starts_with("<!doctype html>"));
    let with_slash = served(&plugin, "/dashboard/", "text/html; charset=utf-8");
    assert_eq!(with_slash.body, page.body);
    assert_eq!(with_slash.headers.get("etag"), page.headers.get("etag"));

    let icon = served(&plugin, "/dashboard/favicon.svg", "image/svg+xml");
    assert_eq!(icon.body, include_bytes!("../web/favicon.svg"));
    let css = served(
        &plugin,
        "/dashboard/assets/dashboard.css",
        "text/css; charset=utf-8",
    );
    assert_eq!(css.body, include_bytes!("../web/assets/dashboard.css"));
    for script in ["dashboard.js", "sse.js", "charts.js"] {
        let path = format!("/dashboard/assets/{script}");
        let response = served(&plugin, &path, "text/javascript; charset=utf-8");
        assert!(text(&response).contains("export") || text(&response).contains("import"));
    }
}

#[test]
fn everything_the_page_loads_is_served_here_and_nothing_comes_from_elsewhere() {
    let plugin = start(json!({}));
    let page = get(&plugin, "/dashboard");
    let html = text(&page);
    let mut urls: Vec<&str> = attribute_values(html, "src");
    urls.extend(attribute_values(html, "href"));
    assert!(urls.len() >= 4, "{urls:?}");
    for url in &urls {
        assert!(
            url.starts_with("/dashboard/"),
            "{url} is not one of the plugin's files"
        );
        assert_eq!(get(&plugin, url).status, 200, "{url}");
    }
    // The scripts' own imports resolve to files served here too.
    for script in ["dashboard.js", "sse.js", "charts.js"] {
        let response = get(&plugin, &format!("/dashboard/assets/{script}"));
        for (at, _) in text(&response).match_indices("from \"./") {
            let rest = &text(&response)[at + 8..];
            let name = &rest[..rest.find('"').unwrap()];
            assert_eq!(
                get(&plugin, &format!("/dashboard/assets/{name}")).status,
                200,
                "{script} imports {name}"
            );
        }
        assert!(!text(&response).contains("innerHTML"), "{script}");
    }
    // No inline script or style: the policy would block them.
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style=\""));
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn the_page_carries_its_settings_from_the_config() {
    let page = get(&start(json!({})), "/dashboard");
    assert!(text(&page).contains(
        r#"data-token-storage="session" data-hours="24" data-initial-rows="100" data-max-rows="500" data-refresh-seconds="30""#
    ));
    let page = get(
        &start(
            json!({"token_storage": "local", "hours": 6, "initial_rows": 20, "max_rows": 40, "refresh_seconds": 5}),
        ),
        "/dashboard",
    );
    assert!(text(&page).contains(
        r#"data-token-storage="local" data-hours="6" data-initial-rows="20" data-max-rows="40" data-refresh-seconds="5""#
    ));
}

#[test]
fn a_known_etag_gets_304_without_a_body() {
    let plugin = start(json!({}));
    for path in ["/dashboard", "/dashboard/assets/dashboard.js"] {
        let first = get(&plugin, path);
        let etag = first.headers.get("etag").unwrap().to_owned();
        let mut again = request("GET", path);
        again.headers.set("if-none-match", format!("W/{etag}"));
        let response = plugin.route(again).unwrap();
        assert_eq!(response.status, 304, "{path}");
        assert!(response.body.is_empty());
        assert_eq!(response.headers.get("etag"), Some(etag.as_str()));
        assert_eq!(response.headers.get("cache-control"), Some(CACHE_CONTROL));

        let mut stale = request("GET", path);
        stale.headers.set("if-none-match", "\"0000\"");
        assert_eq!(plugin.route(stale).unwrap().status, 200, "{path}");
    }
}

#[test]
fn an_unknown_file_is_404_naming_what_is_served() {
    let plugin = start(json!({}));
    for path in [
        "/dashboard/assets/nope.js",
        "/dashboard/assets/../lib.rs",
        "/dashboard/assets/",
    ] {
        let response = get(&plugin, path);
        assert_eq!(response.status, 404, "{path}");
        assert!(
            text(&response).contains("/dashboard/assets/"),
            "{}",
            text(&response)
        );
        assert_eq!(
            response.headers.get("content-security-policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
    }
}

#[test]
fn mount_static_off_answers_404() {
    let plugin = start(json!({"mount_static": false}));
    for path in [
        "/dashboard",
        "/dashboard/favicon.svg",
        "/dashboard/assets/dashboard.js",
    ] {
        let response = get(&plugin, path);
        assert_eq!(response.status, 404, "{path}");
        assert!(
            text(&response).contains("mount_static"),
            "{}",
            text(&response)
        );
    }
}

#[test]
fn bad_config_is_refused_saying_which_key() {
    for (config, key) in [
        (json!({"hours": 0}), "hours"),
        (json!({"hours": 169}), "hours"),
        (json!({"initial_rows": 0}), "initial_rows"),
        (json!({"initial_rows": 50, "max_rows": 10}), "max_rows"),
        (json!({"refresh_seconds": 0}), "refresh_seconds"),
        (json!({"token_storage": "cookie"}), "cookie"),
        (json!({"mount_statics": true}), "mount_statics"),
    ] {
        let error = MockHost::new()
            .config(config.clone())
            .start::<Dashboard>()
            .err()
            .unwrap_or_else(|| panic!("{config} was accepted"));
        assert!(error.to_string().contains(key), "{config}: {error}");
    }
}

fn status_with_analytics(status: Option<&str>) -> Value {
    let mut plugins = vec![json!({"name": "dashboard", "status": "active"})];
    if let Some(status) = status {
        plugins.push(json!({"name": "analytics", "status": status}));
    }
    json!({"plugins": plugins})
}

fn health(status: Value) -> (HealthStatus, Value) {
    let plugin = MockHost::new()
        .plugins_status(status)
        .start::<Dashboard>()
        .unwrap();
    let health = plugin.health().unwrap();
    (health.status, health.details)
}

#[test]
fn health_is_degraded_while_the_analytics_plugin_is_not_active() {
    let (status, details) = health(status_with_analytics(Some("active")));
    assert_eq!(status, HealthStatus::Healthy, "{details}");
    assert_eq!(details["analytics"], "active");
    assert_eq!(details["files"], 6);
    assert_eq!(details["mount_static"], true);

    for (analytics, said) in [(Some("disabled"), "disabled"), (None, "missing")] {
        let (status, details) = health(status_with_analytics(analytics));
        assert_eq!(status, HealthStatus::Degraded, "{details}");
        assert_eq!(details["analytics"], said);
        let reason = details["reason"].as_str().unwrap();
        assert!(
            reason.contains("enable the storage and analytics plugins"),
            "{reason}"
        );
    }
}

#[test]
fn it_is_opt_in() {
    // Opt-in, as `storage` and `analytics`, whose `/logs` it reads
    // (docs/PERFORMANCE.md, "Round 2 changes: the plugins").
    let plugin = start(json!({}));
    assert_eq!(plugin.manifest().config.defaults["enabled"], false);
}
