//! Reading the claims of OpenAI's tokens. The access and id tokens are JWTs
//! whose payload says when the token expires (`exp`) and, under the
//! `https://api.openai.com/auth` claim, which ChatGPT account and plan it is
//! for. The signature is not verified: the tokens come from the token
//! endpoint or the user's own file, and OpenAI checks them on every request;
//! here they only tell when to refresh and which account header to send.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ccproxy_plugin_abi::{Value, serde_json};

/// The claim OpenAI puts ChatGPT account details under.
pub(crate) const AUTH_CLAIM: &str = "https://api.openai.com/auth";

/// The payload of `token` as JSON, or `None` when it is not a JWT.
pub(crate) fn payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64url_decode(payload)?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// When `token` expires, in milliseconds since the Unix epoch (its `exp`
/// claim, in seconds); `None` for a token that is not a JWT or has no `exp`.
pub(crate) fn expires_at_ms(token: &str) -> Option<u64> {
    let exp = payload(token)?.get("exp")?.clone();
    let seconds = exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(|seconds| seconds as u64)
    })?;
    Some(seconds.saturating_mul(1000))
}

/// A string field of the `https://api.openai.com/auth` claim of `token`
/// (`chatgpt_account_id`, `chatgpt_plan_type` …).
pub(crate) fn auth_claim(token: &str, field: &str) -> Option<String> {
    payload(token)?
        .get(AUTH_CLAIM)?
        .get(field)?
        .as_str()
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// Decodes base64url (RFC 4648 §5), with or without `=` padding; the standard
/// alphabet (`+/`) is accepted too, and unused trailing bits are ignored.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    URL_SAFE
        .decode(text)
        .or_else(|_| STANDARD.decode(text))
        .ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    /// Encodes base64url without padding, as JWTs do.
    pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A JWT with `payload` and a dummy signature.
    pub(crate) fn jwt(payload: &Value) -> String {
        signed_jwt(payload, "c2lnbmF0dXJlLW5vdC1jaGVja2Vk")
    }

    /// A JWT with `payload` and `signature` (base64url text, not checked),
    /// which tests look for to catch a leaked token.
    pub(crate) fn signed_jwt(payload: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            base64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            base64url_encode(payload.to_string().as_bytes())
        )
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for text in ["", "a", "ab", "abc", "abcd", "{\"exp\":1}", "é~?>"] {
            let encoded = base64url_encode(text.as_bytes());
            assert!(!encoded.contains('='), "{encoded}");
            assert_eq!(base64url_decode(&encoded).unwrap(), text.as_bytes());
        }
        // Padded and standard-alphabet input is accepted too.
        assert_eq!(base64url_decode("YWI=").unwrap(), b"ab");
        assert_eq!(
            base64url_decode("-_-_").unwrap(),
            base64url_decode("+/+/").unwrap()
        );
        assert_eq!(base64url_decode("a"), None);
        assert_eq!(base64url_decode("ab!c"), None);
    }

    #[test]
    fn claims_of_an_openai_access_token() {
        let token = jwt(&json!({
            "exp": 1_767_225_600,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": "acc-123",
                "chatgpt_plan_type": "plus",
                "chatgpt_user_id": "user-9",
            },
        }));
        assert_eq!(expires_at_ms(&token), Some(1_767_225_600_000));
        assert_eq!(
            auth_claim(&token, "chatgpt_account_id").as_deref(),
            Some("acc-123")
        );
        assert_eq!(
            auth_claim(&token, "chatgpt_plan_type").as_deref(),
            Some("plus")
        );
        assert_eq!(auth_claim(&token, "missing"), None);
    }

    #[test]
    fn not_a_jwt_has_no_claims() {
        for token in [
            "",
            "opaque-token",
            "a.b",
            "a.b.c.d",
            "e30.%%%.x",
            "e30.WzFd.x",
        ] {
            assert_eq!(payload(token), None, "{token}");
            assert_eq!(expires_at_ms(token), None, "{token}");
        }
        let no_exp = jwt(&json!({"sub": "x"}));
        assert_eq!(expires_at_ms(&no_exp), None);
        let float_exp = jwt(&json!({"exp": 1.5e9}));
        assert_eq!(expires_at_ms(&float_exp), Some(1_500_000_000_000));
    }
}
