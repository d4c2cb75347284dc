//! # ccproxy-plugin-kit: building blocks for ccproxy plugins
//!
//! What more than one plugin needs, written once, on the public SDK
//! (`ccproxy-plugin-abi`) only, so a third-party plugin can use it exactly as
//! the bundled ones do. It is a plain library linked into each plugin that
//! uses it, never a plugin of its own.
//!
//! | module | what |
//! |---|---|
//! | [`accounts`] | several accounts of one provider: picked by priority or in turn, rested on 429/529 (for `Retry-After`) and 401/403, disabled after repeated refusals, shown masked in health |
//! | [`mapping`] | model mapping rules (`exact`, `prefix`, `suffix`, `regex`), first match wins, with the client's model written back as the alias |
//! | [`secret_file`] | a JSON credentials file written atomically with mode 0600 and read again whenever it changes on disk |
//! | [`single_flight`] | a token refreshed once for any number of concurrent callers, with a back-off after a failed refresh |
//! | [`oauth`] | an OAuth auth provider's service: arguments, dispatch, the token endpoint and its errors |
//! | [`mask`] | secrets that never print, and the masked form shown in a status |
//! | [`json`] | a request body as a JSON object, or an error saying what it is instead; its top level with values as the client's bytes, written back around changed keys |
//! | [`model_id`] | model ids without provider prefix and date suffix, and a table that finds a model by them |
//! | [`private_files`] | a folder under `$XDG_STATE_HOME/ccproxy` only this user can change, files opened 0600 without following symlinks, pruned oldest first |
//! | [`logs`] | stored request logs: the row of a finished request, the `/logs` filters with errors naming the parameter, the duration histogram (feature `logs`) |
//! | [`cli_detect`] | an installed CLI's version, its first request taken by a one-shot capture point, and what was learnt cached per version (feature `cli_detect`) |
//! | [`redact`] | secrets taken out of headers and JSON bodies before they are written down |
//!
//! `mapping` is behind the default feature `mapping` (it brings in `regex`);
//! a plugin without model rules turns default features off.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
#[cfg(feature = "cli_detect")]
pub mod cli_detect;
pub mod json;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(feature = "mapping")]
pub mod mapping;
pub mod mask;
pub mod model_id;
pub mod oauth;
pub mod private_files;
pub mod redact;
pub mod secret_file;
pub mod single_flight;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 before it, `u64::MAX` past the year
/// 584 million.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
