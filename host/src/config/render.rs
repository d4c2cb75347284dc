//! Rendering the effective configuration as TOML with secrets masked (`ccproxy config show`).

use serde_json::{Map, Value};

use super::model::Config;
use super::plugin_section::looks_secret;
use super::secret::MASK;

/// The effective configuration as a TOML document, with secrets shown as `***`.
///
/// `security.auth_token` is masked by its type; plugin settings whose names look like
/// credentials (`*token*`, `*secret*`, `*password*`, `*_key`, …) are masked by name. Unset
/// options and null plugin values are left out, since TOML has no null. The output parses back
/// as a config file (with the masked values in place of the secrets).
pub fn render_effective(config: &Config) -> String {
    let mut shown = config.clone();
    for section in shown.plugins.values_mut() {
        mask_object(section);
    }
    let header = "# effective ccproxy configuration (defaults < file < environment < CLI flags)\n\
                  # secrets are shown as ***\n\n";
    match toml::to_string_pretty(&shown) {
        Ok(body) => format!("{header}{body}"),
        Err(error) => format!("{header}# the configuration cannot be shown as TOML: {error}\n"),
    }
}

fn mask_object(object: &mut Map<String, Value>) {
    object.retain(|_, value| !value.is_null());
    for (key, value) in object.iter_mut() {
        if looks_secret(key) && !value.is_object() {
            *value = Value::String(MASK.to_owned());
        } else {
            mask_value(value);
        }
    }
}

fn mask_value(value: &mut Value) {
    match value {
        Value::Object(object) => mask_object(object),
        Value::Array(items) => {
            items.retain(|item| !item.is_null());
            items.iter_mut().for_each(mask_value);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Secret;

    #[test]
    fn renders_parseable_toml_with_secrets_masked() {
        let mut config = Config::default();
        config.server.port = 9001;
        config.security.auth_token = Some(Secret::new("sk-top-secret"));
        config.enabled_plugins = Some(vec!["access_log".into()]);
        let Value::Object(section) = json!({
            "client_log_file": "/tmp/x.log",
            "api_key": "sk-plugin-secret",
            "nothing": null,
            "providers": [{"name": "a", "refresh_token": "rt-secret"}],
            "oauth": {"client_secret": "cs-secret", "scopes": ["a", "b"]},
        }) else {
            panic!("a JSON object literal is an object");
        };
        config.plugins.insert("access_log".into(), section);

        let rendered = render_effective(&config);
        for secret in [
            "sk-top-secret",
            "sk-plugin-secret",
            "rt-secret",
            "cs-secret",
        ] {
            assert!(!rendered.contains(secret), "{secret} leaked:\n{rendered}");
        }
        let parsed: Config = toml::from_str(&rendered).expect("the rendered config parses back");
        assert_eq!(parsed.server.port, 9001);
        assert_eq!(
            parsed.security.auth_token.as_ref().map(Secret::expose),
            Some(MASK)
        );
        assert_eq!(parsed.enabled_plugins, config.enabled_plugins);
        let section = &parsed.plugins["access_log"];
        assert_eq!(section["client_log_file"], json!("/tmp/x.log"));
        assert_eq!(section["oauth"]["scopes"], json!(["a", "b"]));
        assert!(!section.contains_key("nothing"));
    }

    #[test]
    fn defaults_render_every_section() {
        let rendered = render_effective(&Config::default());
        for table in [
            "[server]",
            "[logging]",
            "[http]",
            "[plugin_discovery]",
            "[hooks]",
        ] {
            assert!(rendered.contains(table), "{table} missing:\n{rendered}");
        }
        assert!(rendered.contains("port = 8000"), "{rendered}");
    }
}
