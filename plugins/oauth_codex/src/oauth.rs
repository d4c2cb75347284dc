//! OpenAI's OAuth endpoints: the authorize URL and the token endpoint (code
//! exchange and refresh, both form-encoded). Every request goes through the
//! host's HTTP client (`Context::http`).

use std::time::Duration;

use ccproxy_plugin_abi::Context;
use ccproxy_plugin_kit::oauth::{
    self, Grant, TokenAnswer, TokenBody, TokenEndpoint, TokenError, form_encode, url_with_query,
};
use serde::Deserialize;

use crate::{
    Config, PROVIDER,
    store::{Secret, Tokens},
};

/// The authorize URL for one login attempt, with the parameters the Codex
/// CLI sends, in its order: the two Codex flags make the consent page the
/// one `codex login` shows and put the ChatGPT workspaces in the id token.
pub(crate) fn authorize_url(
    config: &Config,
    state: &str,
    code_challenge: &str,
    redirect_uri: &str,
) -> String {
    let scope = config.scopes.join(" ");
    let parameters = [
        ("response_type", "code"),
        ("client_id", config.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
        ("originator", "codex_cli_rs"),
    ];
    url_with_query(&config.authorize_url(), &parameters)
}

/// The form body of the authorization-code grant.
pub(crate) fn exchange_form(
    config: &Config,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> String {
    form_encode(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", &config.client_id),
        ("code_verifier", code_verifier),
    ])
}

/// The form body of the refresh grant, with the scopes, as the original sends it.
pub(crate) fn refresh_form(config: &Config, refresh_token: &Secret) -> String {
    form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", &config.client_id),
        ("scope", &config.scopes.join(" ")),
    ])
}

/// The token endpoint's answer (both grants).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenGrant {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
    #[serde(default)]
    pub(crate) id_token: Option<Secret>,
}

impl TokenAnswer for TokenGrant {
    fn has_access_token(&self) -> bool {
        !self.access_token.is_empty()
    }
}

impl TokenGrant {
    /// The tokens a fresh login stores.
    pub(crate) fn into_login(self) -> Tokens {
        let mut tokens = Tokens {
            id_token: self.id_token.unwrap_or_default(),
            access_token: self.access_token,
            refresh_token: self.refresh_token.unwrap_or_default(),
            account_id: None,
            other: Default::default(),
        };
        tokens.account_id = tokens.chatgpt_account_id();
        tokens
    }

    /// `current` after a refresh: the new access token; the refresh and id
    /// tokens when the endpoint sent new ones (OpenAI rotates the refresh
    /// token: the old one is spent); the account id from the new claims,
    /// else the old one; everything else kept.
    pub(crate) fn into_refreshed(self, current: &Tokens) -> Tokens {
        let mut tokens = Tokens {
            id_token: self
                .id_token
                .filter(|token| !token.is_empty())
                .unwrap_or_else(|| current.id_token.clone()),
            access_token: self.access_token,
            refresh_token: self
                .refresh_token
                .filter(|token| !token.is_empty())
                .unwrap_or_else(|| current.refresh_token.clone()),
            account_id: None,
            other: current.other.clone(),
        };
        tokens.account_id = tokens
            .chatgpt_account_id()
            .or_else(|| current.account_id.clone());
        tokens
    }
}

/// Where an error body's reason is: OAuth's `error_description`, OpenAI's
/// `error.message`, `error` as a string, a `message` or `detail`.
const MESSAGE_FIELDS: &[&str] = &[
    "/error_description",
    "/error/message",
    "/error",
    "/message",
    "/detail",
];

/// POSTs the form `body` to the token endpoint, reported as the host's
/// `oauth.*` hook events.
pub(crate) async fn request_token(
    ctx: &Context,
    config: &Config,
    grant: Grant,
    body: String,
) -> Result<TokenGrant, TokenError> {
    let endpoint = TokenEndpoint {
        provider: PROVIDER,
        url: config.token_url(),
        timeout: Duration::from_secs(config.request_timeout_seconds),
        message_fields: MESSAGE_FIELDS,
    };
    oauth::request_token(ctx, &endpoint, grant, TokenBody::Form(body)).await
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;
    use crate::jwt::tests::jwt;

    #[test]
    fn authorize_url_appends_to_an_existing_query() {
        let config = Config {
            authorize_url: "https://login.test/authorize?tenant=x".to_owned(),
            ..Config::default()
        };
        let url = authorize_url(&config, "s", "c", "r");
        assert!(
            url.starts_with("https://login.test/authorize?tenant=x&response_type=code&"),
            "{url}"
        );
    }

    #[test]
    fn forms_are_url_encoded() {
        let config = Config::default();
        assert_eq!(
            exchange_form(
                &config,
                "c/1+2",
                "http://localhost:1455/auth/callback",
                "v~"
            ),
            "grant_type=authorization_code&code=c%2F1%2B2&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&client_id=app_EMoamEEZ73f0CkXaXp7hrann&code_verifier=v~"
        );
        assert_eq!(
            refresh_form(&config, &Secret::new("rt_a=b")),
            "grant_type=refresh_token&refresh_token=rt_a%3Db&client_id=app_EMoamEEZ73f0CkXaXp7hrann&scope=openid%20profile%20email%20offline_access"
        );
    }

    #[test]
    fn a_login_takes_the_account_from_the_id_token() {
        let grant = TokenGrant {
            access_token: Secret::new("opaque"),
            refresh_token: Some(Secret::new("rt")),
            id_token: Some(Secret::new(jwt(
                &json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-1"}}),
            ))),
        };
        let tokens = grant.into_login();
        assert_eq!(tokens.account_id.as_deref(), Some("acc-1"));
        assert_eq!(tokens.refresh_token.expose(), "rt");
        let bare = TokenGrant {
            access_token: Secret::new("opaque"),
            refresh_token: None,
            id_token: None,
        }
        .into_login();
        assert_eq!(bare.account_id, None);
        assert!(bare.id_token.is_empty() && bare.refresh_token.is_empty());
    }

    #[test]
    fn refreshed_tokens_keep_what_the_endpoint_did_not_send() {
        let mut current = Tokens {
            id_token: Secret::new("id-old"),
            access_token: Secret::new("old"),
            refresh_token: Secret::new("refresh-old"),
            account_id: Some("acc-old".to_owned()),
            other: Default::default(),
        };
        current.other.insert("future".to_owned(), json!(1));
        let refreshed = TokenGrant {
            access_token: Secret::new("new"),
            refresh_token: None,
            id_token: Some(Secret::new("")),
        }
        .into_refreshed(&current);
        assert_eq!(refreshed.access_token.expose(), "new");
        assert_eq!(refreshed.refresh_token.expose(), "refresh-old");
        assert_eq!(refreshed.id_token.expose(), "id-old");
        assert_eq!(refreshed.account_id.as_deref(), Some("acc-old"));
        assert_eq!(refreshed.other["future"], json!(1));

        let access =
            jwt(&json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-new"}}));
        let rotated = TokenGrant {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new("refresh-new")),
            id_token: None,
        }
        .into_refreshed(&current);
        assert_eq!(rotated.refresh_token.expose(), "refresh-new");
        assert_eq!(rotated.account_id.as_deref(), Some("acc-new"));
    }
}
