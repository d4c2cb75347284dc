//! The end-to-end tests: the real `ccproxy` binary with real plugin libraries,
//! one module per feature, in one test binary so the suite links once
//! (`cargo test -p ccproxy-e2e --test e2e MODULE::`).

mod access_log;
mod accounts;
mod analytics;
mod browsers;
mod claude_sdk;
mod cli;
mod codex;
mod command_replay;
mod compat;
mod config;
mod configured_endpoints;
mod copilot;
mod dashboard;
mod examples;
mod format_adapters;
mod hooks;
mod host_services;
mod install;
mod max_tokens;
mod metrics;
mod oauth;
mod panics;
mod plugins_install;
mod plugins_load;
mod pricing;
mod providers;
mod real_clients;
mod regression;
mod request_tracer;
mod scaffold;
mod server;
mod service;
mod storage;
mod streams;
mod stuck_plugins;
mod upstream_proxy;
mod upstream_tls;
