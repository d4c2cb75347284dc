//! The credentials file: by default the Codex CLI's own `~/.codex/auth.json`,
//! read again whenever it changes on disk and written atomically with mode
//! 0600.
//!
//! The file is a JSON object; this plugin owns its `tokens` and
//! `last_refresh` keys (and sets `auth_mode` at a login, as `codex login`
//! does), and keeps every other key as it found it:
//!
//! ```json
//! {"OPENAI_API_KEY": null,
//!  "tokens": {"id_token": "eyJ…", "access_token": "eyJ…", "refresh_token": "rt_…",
//!             "account_id": "5f1c…"},
//!  "last_refresh": "2026-05-02T09:30:00.123456Z"}
//! ```
//!
//! When the access token expires and which ChatGPT account it is for are
//! read from its JWT claims (see `jwt.rs`), not stored.

use std::path::{Path, PathBuf};

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map},
};
pub(crate) use ccproxy_plugin_kit::mask::Secret;
use ccproxy_plugin_kit::secret_file::{Layout, SecretFile};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description};

use crate::jwt;

/// The key of the file holding the tokens.
pub(crate) const TOKENS_KEY: &str = "tokens";
/// When the tokens were last obtained (ISO 8601, UTC).
pub(crate) const LAST_REFRESH_KEY: &str = "last_refresh";
/// How the Codex CLI is logged in; `chatgpt` after an OAuth login.
pub(crate) const AUTH_MODE_KEY: &str = "auth_mode";
/// The Codex CLI's API-key slot, `null` after an OAuth login.
pub(crate) const API_KEY_KEY: &str = "OPENAI_API_KEY";

/// The `tokens` object, in the Codex CLI's spelling. Keys this plugin does
/// not know are kept across a refresh. Every field is written even when
/// empty: the Codex CLI refuses a `tokens` object that lacks one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tokens {
    #[serde(default)]
    pub(crate) id_token: Secret,
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) refresh_token: Secret,
    /// The ChatGPT account (workspace) id, as `codex login` stores it.
    #[serde(default)]
    pub(crate) account_id: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

impl Tokens {
    /// The ChatGPT account id sent as `chatgpt-account-id`: the access
    /// token's claim, else the id token's, else the stored `account_id`.
    pub(crate) fn chatgpt_account_id(&self) -> Option<String> {
        jwt::auth_claim(self.access_token.expose(), "chatgpt_account_id")
            .or_else(|| jwt::auth_claim(self.id_token.expose(), "chatgpt_account_id"))
            .or_else(|| self.account_id.clone().filter(|id| !id.is_empty()))
    }

    /// The ChatGPT plan (`plus`, `pro`, `team` …) from the token claims.
    pub(crate) fn plan_type(&self) -> Option<String> {
        jwt::auth_claim(self.access_token.expose(), "chatgpt_plan_type")
            .or_else(|| jwt::auth_claim(self.id_token.expose(), "chatgpt_plan_type"))
    }
}

/// The stored login.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Login {
    pub(crate) tokens: Tokens,
    /// As stored; `None` when missing.
    pub(crate) last_refresh: Option<String>,
    /// From the access token's `exp` claim; `None` when it has none (the
    /// token is then used until the upstream refuses it).
    pub(crate) expires_at_ms: Option<u64>,
}

impl Login {
    pub(crate) fn new(tokens: Tokens, last_refresh: Option<String>) -> Self {
        let expires_at_ms = jwt::expires_at_ms(tokens.access_token.expose());
        Self {
            tokens,
            last_refresh,
            expires_at_ms,
        }
    }

    /// Whether the access token expires within `grace_ms` of `now_ms`. A
    /// token without a known expiry never does.
    pub(crate) fn expires_within(&self, now_ms: u64, grace_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|expires_at| expires_at <= now_ms.saturating_add(grace_ms))
    }
}

/// The credentials file, through the kit's [`SecretFile`]; pretty, as the
/// Codex CLI writes it, so the file stays readable.
pub(crate) struct CredentialStore {
    file: SecretFile,
}

impl CredentialStore {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            file: SecretFile::new(path, Layout::Pretty),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// The stored login, or `None` when there is none (no file, no `tokens`
    /// key, or an empty access token: an API-key-only Codex login).
    pub(crate) fn load(&self) -> Result<Option<Login>, PluginError> {
        let document = self.file.document()?;
        let Some(value) = document.get(TOKENS_KEY).filter(|value| !value.is_null()) else {
            return Ok(None);
        };
        let tokens: Tokens = serde_json::from_value(value.clone()).map_err(|error| {
            PluginError::internal(format!(
                "{}: {TOKENS_KEY} is malformed ({error}); run `ccproxy auth login codex` or `codex login`",
                self.path().display()
            ))
        })?;
        if tokens.access_token.is_empty() {
            return Ok(None);
        }
        let last_refresh = document
            .get(LAST_REFRESH_KEY)
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Some(Login::new(tokens, last_refresh)))
    }

    /// Stores `tokens` and `last_refresh`, keeping the file's other keys. A
    /// fresh login also sets `auth_mode` to `chatgpt` and makes sure the
    /// API-key slot exists, as `codex login` leaves the file.
    pub(crate) fn save(
        &self,
        tokens: &Tokens,
        last_refresh: &str,
        fresh_login: bool,
    ) -> Result<(), PluginError> {
        let mut document = self.file.document()?;
        let value = serde_json::to_value(tokens).map_err(|error| {
            PluginError::internal(format!("credentials could not be serialised: {error}"))
        })?;
        if fresh_login {
            document
                .entry(API_KEY_KEY.to_owned())
                .or_insert(Value::Null);
            document.insert(AUTH_MODE_KEY.to_owned(), Value::from("chatgpt"));
        }
        document.insert(TOKENS_KEY.to_owned(), value);
        document.insert(LAST_REFRESH_KEY.to_owned(), Value::from(last_refresh));
        self.file.write(document)
    }

    /// Deletes the login (`tokens`, `last_refresh`, and an `auth_mode` of
    /// `chatgpt`); deletes the file when nothing but nulls is left in it,
    /// as `codex logout` does.
    pub(crate) fn remove(&self) -> Result<(), PluginError> {
        let mut document = self.file.document()?;
        let had_tokens = document.remove(TOKENS_KEY).is_some();
        let had_refresh = document.remove(LAST_REFRESH_KEY).is_some();
        let had_mode = document
            .get(AUTH_MODE_KEY)
            .is_some_and(|mode| mode == "chatgpt")
            && document.remove(AUTH_MODE_KEY).is_some();
        let had_login = had_tokens || had_refresh || had_mode;
        // Nothing of ours was there and other keys are: leave the file alone.
        if !(had_login || document.is_empty()) {
            return Ok(());
        }
        if document.values().any(|value| !value.is_null()) {
            return self.file.write(document);
        }
        self.file.delete()
    }
}

/// `ms` (since the Unix epoch) as ISO 8601 in UTC with microseconds, the
/// shape the Codex CLI writes `last_refresh` in: `2026-05-02T09:30:00.123000Z`.
pub(crate) fn iso8601_utc(ms: u64) -> String {
    const ISO8601_MICROS: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    // A time past the year 9999, which no clock gives, shows as the epoch.
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    time.format(ISO8601_MICROS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt};

    use ccproxy_plugin_abi::json;
    use ccproxy_plugin_kit::secret_file::write_atomically;

    use super::*;
    use crate::jwt::tests::jwt;

    fn tokens(access_token: &str) -> Tokens {
        Tokens {
            id_token: Secret::new("id-token"),
            access_token: Secret::new(access_token),
            refresh_token: Secret::new("refresh-1"),
            account_id: Some("acc-stored".to_owned()),
            other: Map::new(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn tokens_debug_hides_the_tokens() {
        let debug = format!("{:?}", tokens("eyJhbGciOiJSUzI1NiJ9.abcdefghijklmnopWXYZ"));
        assert!(!debug.contains("abcdefghijklmnop"), "{debug}");
        assert!(!debug.contains("refresh-1"), "{debug}");
        assert!(!debug.contains("id-token"), "{debug}");
    }

    #[test]
    fn load_is_none_without_file_tokens_or_access_token() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        let store = CredentialStore::new(path.clone());
        assert_eq!(store.load().unwrap(), None);
        // An API-key-only Codex login.
        fs::write(&path, r#"{"OPENAI_API_KEY": "sk-proj-x", "tokens": null}"#).unwrap();
        assert_eq!(store.load().unwrap(), None);
        fs::write(&path, r#"{"tokens": {"access_token": ""}}"#).unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn load_reads_the_codex_cli_shape_and_the_jwt_claims() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        let access = jwt(&json!({
            "exp": 1_767_225_600,
            "https://api.openai.com/auth": {"chatgpt_account_id": "acc-claim", "chatgpt_plan_type": "pro"},
        }));
        fs::write(
            &path,
            json!({
                "OPENAI_API_KEY": null,
                "tokens": {"id_token": "i", "access_token": access, "refresh_token": "r",
                           "account_id": "acc-stored", "future_field": 7},
                "last_refresh": "2025-09-15T14:28:00.644167Z",
            })
            .to_string(),
        )
        .unwrap();
        let login = CredentialStore::new(path).load().unwrap().unwrap();
        assert_eq!(login.expires_at_ms, Some(1_767_225_600_000));
        assert_eq!(
            login.tokens.chatgpt_account_id().as_deref(),
            Some("acc-claim")
        );
        assert_eq!(login.tokens.plan_type().as_deref(), Some("pro"));
        assert_eq!(login.tokens.other.get("future_field"), Some(&json!(7)));
        assert_eq!(
            login.last_refresh.as_deref(),
            Some("2025-09-15T14:28:00.644167Z")
        );
        assert!(login.expires_within(1_767_225_500_000, 120_000));
        assert!(!login.expires_within(1_767_225_000_000, 120_000));
    }

    #[test]
    fn account_id_falls_back_to_the_id_token_then_the_stored_one() {
        let mut stored = tokens("opaque-access-token");
        assert_eq!(stored.chatgpt_account_id().as_deref(), Some("acc-stored"));
        stored.id_token = Secret::new(jwt(
            &json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-id-token"}}),
        ));
        assert_eq!(stored.chatgpt_account_id().as_deref(), Some("acc-id-token"));
        stored.id_token = Secret::default();
        stored.account_id = None;
        assert_eq!(stored.chatgpt_account_id(), None);
        // No `exp`: never due for a refresh.
        let login = Login::new(stored, None);
        assert_eq!(login.expires_at_ms, None);
        assert!(!login.expires_within(u64::MAX - 1, 120_000));
    }

    #[test]
    fn load_reads_again_when_the_file_changes_behind_its_back() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        let store = CredentialStore::new(path.clone());
        store.save(&tokens("first"), "t1", true).unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().tokens.access_token.expose(),
            "first"
        );
        // The Codex CLI rewrites the file (same length, maybe same mtime):
        // the rename gives it a new inode.
        write_atomically(
            &path,
            &serde_json::to_vec(&json!({ TOKENS_KEY: tokens("other") })).unwrap(),
        )
        .unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().tokens.access_token.expose(),
            "other"
        );
        fs::remove_file(&path).unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn malformed_file_is_an_error_naming_it() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        fs::write(&path, "{not json").unwrap();
        let error = CredentialStore::new(path.clone()).load().unwrap_err();
        assert!(
            error.message().contains(&path.display().to_string()),
            "{error}"
        );
        fs::write(&path, "[]").unwrap();
        let error = CredentialStore::new(path.clone()).load().unwrap_err();
        assert!(error.message().contains("not a JSON object"), "{error}");
        fs::write(&path, r#"{"tokens": {"id_token": "x"}}"#).unwrap();
        let error = CredentialStore::new(path).load().unwrap_err();
        assert!(error.message().contains("tokens is malformed"), "{error}");
        assert!(error.message().contains("codex login"), "{error}");
    }

    #[test]
    fn save_writes_every_token_field_and_keeps_other_keys() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        fs::write(
            &path,
            r#"{"OPENAI_API_KEY": "sk-keep", "preferences": {"x": 1}}"#,
        )
        .unwrap();
        let store = CredentialStore::new(path.clone());
        let mut refreshed = tokens("a");
        refreshed.account_id = None;
        store
            .save(&refreshed, "2026-01-01T00:00:00.000000Z", false)
            .unwrap();
        assert_eq!(
            read(&path),
            json!({
                "OPENAI_API_KEY": "sk-keep",
                "preferences": {"x": 1},
                "tokens": {"id_token": "id-token", "access_token": "a",
                           "refresh_token": "refresh-1", "account_id": null},
                "last_refresh": "2026-01-01T00:00:00.000000Z",
            })
        );
        assert_eq!(mode(&path), 0o600);
        // A fresh login marks the Codex CLI as logged in with ChatGPT.
        store.save(&tokens("b"), "t", true).unwrap();
        let document = read(&path);
        assert_eq!(document["auth_mode"], "chatgpt");
        assert_eq!(document["OPENAI_API_KEY"], "sk-keep");
    }

    #[test]
    fn save_and_remove_follow_symlinks() {
        let scratch = tempfile::tempdir().unwrap();
        let real = scratch.path().join("real.json");
        let link = scratch.path().join("link.json");
        fs::write(&real, r#"{"keep": {"me": true}}"#).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let store = CredentialStore::new(link.clone());
        store.save(&tokens("a"), "t", true).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let document = read(&real);
        assert_eq!(document["keep"], json!({"me": true}));
        assert_eq!(document[TOKENS_KEY]["access_token"], json!("a"));
        store.remove().unwrap();
        assert_eq!(
            read(&real),
            json!({"keep": {"me": true}, "OPENAI_API_KEY": null})
        );
    }

    #[test]
    fn remove_deletes_a_file_left_with_nulls_only() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("auth.json");
        let store = CredentialStore::new(path.clone());
        store.save(&tokens("a"), "t", true).unwrap();
        store.remove().unwrap();
        assert!(!path.exists());
        // Nothing stored: still fine.
        store.remove().unwrap();
        // An API key stays, with its auth mode.
        fs::write(
            &path,
            r#"{"OPENAI_API_KEY": "sk-x", "auth_mode": "apikey", "tokens": null}"#,
        )
        .unwrap();
        store.remove().unwrap();
        assert_eq!(
            read(&path),
            json!({"OPENAI_API_KEY": "sk-x", "auth_mode": "apikey"})
        );
    }

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso8601_utc(1_757_946_480_644),
            "2025-09-15T14:28:00.644000Z"
        );
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            iso8601_utc(4_102_444_799_999),
            "2099-12-31T23:59:59.999000Z"
        );
    }
}
