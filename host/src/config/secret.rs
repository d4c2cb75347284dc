//! `Secret`: a string that never shows up in logs, `Debug` output or rendered config.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The text every masked secret is printed as.
pub(crate) const MASK: &str = "***";

/// A secret string (bearer token, API key).
///
/// `Debug`, `Display` and `Serialize` all print `***`, so a secret cannot leak through
/// `tracing` fields, `{:?}` of a config, or a rendered config file. Read the real value with
/// [`Secret::expose`], and compare a client's credential with [`Secret::matches`], which takes
/// the same time whatever the input.
///
/// Because `Serialize` masks, serialising a [`Config`](super::Config) and reading it back does
/// not round-trip the secret: code that writes a token to a file must write `expose()` itself.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value. Call this only where the secret is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares `candidate` with the secret in time that depends on neither the secret nor
    /// where they differ, so a client cannot learn the token byte by byte from response
    /// timings. The SHA-256 digests are compared (in constant time), since they have one
    /// length whatever the inputs: the secret's length does not show either.
    pub fn matches(&self, candidate: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(candidate.as_bytes());
        expected.as_slice().ct_eq(given.as_slice()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(MASK)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Whether a setting's value looks like a credential whatever its key is called: a known key
/// or token prefix (`sk-`, `sk-ant-`, `eyJ` for a JWT, `ghp_`, `xoxb-`, `AKIA`, `AIza`, `hf_`),
/// a `Bearer`/`Basic` credential, or a long run of mixed-case letters and digits without the
/// `/`, `:` or spaces of a path, URL or sentence. Model names (`claude-sonnet-4-20250514`) and
/// ids in lower case are not masked.
pub(crate) fn looks_like_secret_value(value: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "sk-",
        "sk_",
        "rk-",
        "pk-",
        "eyJ",
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "AKIA",
        "AIza",
        "hf_",
        "Bearer ",
        "bearer ",
        "Basic ",
        "basic ",
    ];
    let value = value.trim();
    if value.len() >= 12 && PREFIXES.iter().any(|prefix| value.starts_with(prefix)) {
        return true;
    }
    let token_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '~'));
    let mixed = value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_lowercase())
        && value.chars().any(|c| c.is_ascii_digit());
    value.len() >= 24 && token_chars && mixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_values() {
        for secret in [
            "sk-ant-api03-abcdefghijklmnop",
            "sk-proj-abc123def456",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
            "Bearer abcdefghijkl",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RF",
        ] {
            assert!(looks_like_secret_value(secret), "{secret}");
        }
        for plain in [
            "claude-sonnet-4-20250514",
            "https://api.anthropic.com/v1",
            "/home/ada/.config/ccproxy/token.json",
            "5f1c0a2e-7b3d-4c8a-9e21-0c1d2e3f4a5b",
            "gpt-5.3-codex",
            "info,ccproxy=debug",
            "sk-",
        ] {
            assert!(!looks_like_secret_value(plain), "{plain}");
        }
    }

    #[test]
    fn debug_display_and_serialize_mask_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"***\"")
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn matches_compares_whole_values() {
        let secret = Secret::new("abc");
        assert!(secret.matches("abc"));
        assert!(!secret.matches("abd"));
        assert!(!secret.matches("ab"));
        assert!(!secret.matches("abcd"));
        assert!(!secret.matches(""));
        assert!(Secret::new("").matches(""));
    }

    #[test]
    fn deserializes_from_a_plain_string() {
        let secret: Secret = serde_json::from_str("\"tok\"").expect("a JSON string is a secret");
        assert_eq!(secret.expose(), "tok");
    }
}
