//! Secrets that never print, and the masked form a status shows.
//!
//! [`Secret`] wraps a token: `Debug` prints `***`, so a credentials struct
//! holding one can be logged or put in an error without leaking it, and
//! [`Secret::expose`] is the one way out. [`mask`] keeps the first 6 and last
//! 4 characters of a long token, enough to tell two tokens apart.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// A token. `Debug` prints `***`, so a credentials struct can be logged or
/// put in an error without leaking it; [`Secret::expose`] is the one way out.
/// It serialises as the bare string, so it round-trips through a credentials
/// file or a token endpoint's answer.
#[derive(Clone, Default, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token itself: for the HTTP request or the answer that hands it
    /// out only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty or only whitespace.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The token [`mask`]ed.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Compared in constant time, as every comparison with a secret.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The first 6 and last 4 characters of `token` around `***`; just `***`
/// when the token is too short (under 20 characters) for that to hide most
/// of it.
pub fn mask(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() < 20 {
        return "***".to_owned();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)] // Read by `Debug` only.
    struct Credentials {
        access_token: Secret,
        refresh_token: Secret,
    }

    #[test]
    fn secrets_are_equal_only_as_whole_values() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("ab"));
        assert_ne!(Secret::new(""), Secret::new("a"));
    }

    #[test]
    fn secret_debug_and_mask_hide_the_token() {
        let secret = Secret::new("sk-ant-oat01-abcdefghijklmnopWXYZ");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.masked(), "sk-ant***WXYZ");
        assert_eq!(
            Secret::new("eyJhbGciOiJSUzI1NiJ9.abcdefghijklmnopWXYZ").masked(),
            "eyJhbG***WXYZ"
        );
        assert_eq!(Secret::new("short-token").masked(), "***");
        assert_eq!(Secret::new("").masked(), "***");
        let debug = format!(
            "{:?}",
            Credentials {
                access_token: secret,
                refresh_token: Secret::new("refresh-1"),
            }
        );
        assert!(!debug.contains("abcdefghijklmnop"), "{debug}");
        assert!(!debug.contains("refresh-1"), "{debug}");
    }

    #[test]
    fn mask_counts_characters_not_bytes() {
        // 20 characters, more bytes: masked, cut on character boundaries.
        assert_eq!(mask("ééééééxxxxxxxxxxäöüß"), "éééééé***äöüß");
        assert_eq!(mask("ééééééxxxxxxxxxäöüß"), "***");
    }

    #[test]
    fn secret_is_empty_ignores_whitespace_and_serialises_bare() {
        assert!(Secret::default().is_empty());
        assert!(Secret::new(" \n").is_empty());
        assert!(!Secret::new("x").is_empty());
        let secret: Secret = ccproxy_plugin_abi::serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(secret.expose(), "tok");
        assert_eq!(
            ccproxy_plugin_abi::serde_json::to_string(&secret).unwrap(),
            "\"tok\""
        );
    }
}
