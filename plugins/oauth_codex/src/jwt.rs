//! Reading the claims of OpenAI's tokens. The access and id tokens are JWTs
//! whose payload says when the token expires (`exp`) and, under the
//! `https://api.openai.com/auth` claim, which ChatGPT account and plan it is
//! for. The signature is not verified: the tokens come from the token
//! endpoint or the user's own file, and OpenAI checks them on every request;
//! here they only tell when to refresh and which account header to send.

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

/// Decodes base64url (RFC 4648 §5), with or without `=` padding.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        Some(u32::from(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        }))
    }
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut decoded = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (index, &byte) in chunk.iter().enumerate() {
            bits |= sextet(byte)? << (18 - 6 * index);
        }
        let bytes = bits.to_be_bytes();
        decoded.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(decoded)
}

#[cfg(test)]
pub(crate) mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    /// Encodes base64url without padding, as JWTs do.
    pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut encoded = String::new();
        for chunk in bytes.chunks(3) {
            let mut padded = [0u8; 3];
            padded[..chunk.len()].copy_from_slice(chunk);
            let bits = u32::from_be_bytes([0, padded[0], padded[1], padded[2]]);
            for index in 0..=chunk.len() {
                encoded.push(char::from(
                    ALPHABET[(bits >> (18 - 6 * index)) as usize & 63],
                ));
            }
        }
        encoded
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
