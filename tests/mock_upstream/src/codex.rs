//! The ChatGPT side of Codex: what the Codex backend
//! (`/backend-api/codex/responses`) refuses, and OpenAI's form-encoded OAuth
//! token endpoint (`/oauth/token`) with the JWT-shaped tokens it issues.
//!
//! The backend checks are the rules the real backend enforces (and that
//! ccproxy-api broke over time, #53 #59), plus one of this mock's own (tool
//! names must be declared tools: a duplicated name such as `shellshell` is
//! caught here rather than by a confused model):
//!
//! - headers: `authorization: Bearer …` (else 401), `chatgpt-account-id`,
//!   `openai-beta: responses=experimental`, `originator`, `session_id`;
//! - `stream: true` and `store: false`;
//! - none of `metadata`, `temperature`, `top_p`, `max_output_tokens`,
//!   `max_tokens`, `max_completion_tokens` ("Unsupported parameter: …");
//! - `instructions` are a Codex CLI prompt (they start with `You are a coding
//!   agent running in the Codex CLI` or `You are Codex`);
//! - `input` is a list of typed items, with no `system` message;
//! - every `function_call_output` answers an earlier `function_call` with its
//!   `call_id`, every `function_call` is answered, and names a declared tool.
//!
//! A refusal is a `{"detail": "mock upstream: codex backend: …"}` body, the
//! backend's own error shape.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::request::Parts;
use serde_json::{Map, Value, json};

/// The Codex backend's Responses endpoint (under `base_url =
/// http://MOCK/backend-api/codex`).
pub(crate) const BACKEND_PATH: &str = "/backend-api/codex/responses";

/// OpenAI's token endpoint (under `base_url = http://MOCK`).
pub(crate) const TOKEN_PATH: &str = "/oauth/token";

/// The ChatGPT account in the tokens the token endpoint issues.
pub const MOCK_ACCOUNT: &str = "acct_mock";

/// Parameters the backend answers "Unsupported parameter" to.
const UNSUPPORTED: [&str; 6] = [
    "metadata",
    "temperature",
    "top_p",
    "max_output_tokens",
    "max_tokens",
    "max_completion_tokens",
];

/// How the Codex CLI's prompts start (0.34's `prompt.md`, and the
/// `gpt-5-codex` prompt the recorded answers echo).
const CODEX_PROMPTS: [&str; 2] = [
    "You are a coding agent running in the Codex CLI",
    "You are Codex",
];

/// A refusal: status and message (without the `mock upstream:` prefix).
pub(crate) type Refusal = (u16, String);

/// Checks a request to [`BACKEND_PATH`] as the backend would.
pub(crate) fn check_backend(parts: &Parts, request: &Value) -> Result<(), Refusal> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let bearer = header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .filter(|token| !token.trim().is_empty());
    if bearer.is_none() {
        return Err((
            401,
            "authorization: Bearer <ChatGPT access token> is missing".to_owned(),
        ));
    }
    let bad = |message: String| Err((400, message));
    for name in ["chatgpt-account-id", "originator", "session_id"] {
        if header(name).is_none() {
            return bad(format!("header {name} is missing"));
        }
    }
    if header("openai-beta") != Some("responses=experimental") {
        return bad(format!(
            "header openai-beta is {:?}, expected \"responses=experimental\"",
            header("openai-beta")
        ));
    }
    let Some(body) = request.as_object() else {
        return bad("the request body is not a JSON object".to_owned());
    };
    if body.get("stream") != Some(&Value::Bool(true)) {
        return bad("Stream must be set to true".to_owned());
    }
    if body.get("store") != Some(&Value::Bool(false)) {
        return bad("Store must be set to false".to_owned());
    }
    if let Some(param) = UNSUPPORTED.iter().find(|param| body.contains_key(**param)) {
        return bad(format!("Unsupported parameter: {param}"));
    }
    match body.get("instructions").and_then(Value::as_str) {
        None => return bad("Instructions are required".to_owned()),
        Some(text) if !CODEX_PROMPTS.iter().any(|prompt| text.starts_with(prompt)) => {
            return bad("Instructions are not valid".to_owned());
        }
        Some(_) => {}
    }
    let Some(input) = body.get("input").and_then(Value::as_array) else {
        return bad("Input must be a list".to_owned());
    };
    check_input(input, body.get("tools"))
}

fn check_input(input: &[Value], tools: Option<&Value>) -> Result<(), Refusal> {
    let bad = |message: String| Err((400, message));
    let declared: Option<Vec<&str>> = tools.and_then(Value::as_array).map(|tools| {
        tools
            .iter()
            .filter_map(|tool| tool.get("name").and_then(Value::as_str))
            .collect()
    });
    let mut open_calls: Vec<&str> = Vec::new();
    let mut seen_calls: Vec<&str> = Vec::new();
    for (index, item) in input.iter().enumerate() {
        let Some(kind) = item.get("type").and_then(Value::as_str) else {
            return bad(format!("input[{index}] has no type"));
        };
        let call_id = item.get("call_id").and_then(Value::as_str);
        match kind {
            "message" if item.get("role").and_then(Value::as_str) == Some("system") => {
                return bad(format!(
                    "input[{index}]: System messages are not allowed in input; use instructions"
                ));
            }
            "function_call" => {
                let Some(call_id) = call_id.filter(|id| !id.is_empty()) else {
                    return bad(format!("input[{index}]: function_call without call_id"));
                };
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                if let Some(declared) = &declared
                    && !declared.contains(&name)
                {
                    return bad(format!(
                        "input[{index}]: function_call {call_id} calls {name:?}, which is not a declared tool ({declared:?})"
                    ));
                }
                if seen_calls.contains(&call_id) {
                    return bad(format!("input[{index}]: duplicate function_call {call_id}"));
                }
                seen_calls.push(call_id);
                open_calls.push(call_id);
            }
            "function_call_output" => {
                let call_id = call_id.unwrap_or_default();
                let Some(position) = open_calls.iter().position(|open| *open == call_id) else {
                    return bad(format!(
                        "No tool call found for function call output with call_id {call_id}."
                    ));
                };
                open_calls.remove(position);
            }
            _ => {}
        }
    }
    if let Some(call_id) = open_calls.first() {
        return bad(format!("No tool output found for function call {call_id}."));
    }
    Ok(())
}

/// The backend's error body.
pub(crate) fn error_body(message: &str) -> Value {
    json!({"detail": format!("mock upstream: codex backend: {message}")})
}

/// The pairs of an `application/x-www-form-urlencoded` body, decoded.
pub(crate) fn parse_form(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect()
}

/// Answers a form-encoded grant on [`TOKEN_PATH`]; `n` numbers the grants of
/// its kind. Returns the status, the body and the access token issued.
pub(crate) fn token_grant(
    content_type: Option<&str>,
    form: &Map<String, Value>,
    n: u64,
) -> (u16, Value, Option<String>) {
    let fail = |error: &str, description: String| {
        (
            400,
            json!({"error": error, "error_description": format!("mock upstream: {description}")}),
            None,
        )
    };
    if !content_type.is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded")) {
        return fail(
            "invalid_request",
            format!(
                "OpenAI's token endpoint takes an application/x-www-form-urlencoded body, not {content_type:?}"
            ),
        );
    }
    let field = |name: &str| {
        form.get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
    };
    let label = match field("grant_type").unwrap_or_default() {
        "authorization_code" => {
            for required in ["code", "code_verifier", "redirect_uri", "client_id"] {
                if field(required).is_none() {
                    return fail("invalid_request", format!("`{required}` is missing"));
                }
            }
            if field("code") != Some("good-code") {
                return fail(
                    "invalid_grant",
                    "unknown authorization code (only good-code is accepted)".to_owned(),
                );
            }
            format!("login-{n}")
        }
        "refresh_token" => {
            for required in ["refresh_token", "client_id"] {
                if field(required).is_none() {
                    return fail("invalid_request", format!("`{required}` is missing"));
                }
            }
            format!("refreshed-{n}")
        }
        other => {
            return fail(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not authorization_code or refresh_token"),
            );
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let auth = json!({"chatgpt_account_id": MOCK_ACCOUNT, "chatgpt_plan_type": "plus"});
    let access = jwt(
        &json!({
            "iss": "https://auth.openai.com", "aud": ["https://api.openai.com/v1"],
            "iat": now, "exp": now + 10 * 24 * 3600,
            "https://api.openai.com/auth": auth,
        }),
        &format!("mock-access-{label}"),
    );
    let id_token = jwt(
        &json!({
            "iss": "https://auth.openai.com", "aud": "app_mock", "iat": now, "exp": now + 3600,
            "email": "mock@example.invalid",
            "https://api.openai.com/auth": auth,
        }),
        &format!("mock-id-{label}"),
    );
    let body = json!({
        "access_token": access,
        "refresh_token": format!("rt_mock-{label}"),
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": 10 * 24 * 3600,
        "scope": "openid profile email offline_access",
    });
    (200, body, Some(access))
}

/// A JWT-shaped token: base64url header, `payload` and `signature` (not a
/// real signature; nobody verifies it).
pub fn jwt(payload: &Value, signature: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "mock"});
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(payload.to_string().as_bytes()),
        base64url(signature.as_bytes())
    )
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method("POST").uri(BACKEND_PATH);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn good_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("authorization", "Bearer tok"),
            ("chatgpt-account-id", "acct"),
            ("openai-beta", "responses=experimental"),
            ("originator", "codex_cli_rs"),
            ("session_id", "s-1"),
        ]
    }

    fn good_body() -> Value {
        json!({
            "model": "gpt-5.3-codex", "stream": true, "store": false,
            "instructions": "You are a coding agent running in the Codex CLI, a terminal-based coding assistant.",
            "tools": [{"type": "function", "name": "shell"}],
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]},
                {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "a"},
            ],
        })
    }

    fn refusal(headers: &[(&str, &str)], body: &Value) -> Option<Refusal> {
        check_backend(&parts(headers), body).err()
    }

    #[test]
    fn a_codex_cli_shaped_request_passes() {
        assert_eq!(refusal(&good_headers(), &good_body()), None);
    }

    #[test]
    fn what_the_backend_refuses_is_refused() {
        let headers = good_headers();
        let message = |headers: &[(&str, &str)], edit: &dyn Fn(&mut Value)| {
            let mut body = good_body();
            edit(&mut body);
            refusal(headers, &body).map(|(status, message)| format!("{status} {message}"))
        };
        let without = |name: &str| -> Vec<(&str, &str)> {
            headers
                .iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect()
        };
        assert_eq!(
            message(&without("authorization"), &|_| {}).unwrap(),
            "401 authorization: Bearer <ChatGPT access token> is missing"
        );
        assert!(
            message(&without("chatgpt-account-id"), &|_| {})
                .unwrap()
                .contains("chatgpt-account-id")
        );
        assert!(
            message(&without("session_id"), &|_| {})
                .unwrap()
                .contains("session_id")
        );
        assert!(
            message(&without("openai-beta"), &|_| {})
                .unwrap()
                .contains("openai-beta")
        );
        type Edit<'a> = &'a dyn Fn(&mut Value);
        let cases: [(Edit, &str); 10] = [
            (
                &|b| b["stream"] = json!(false),
                "Stream must be set to true",
            ),
            (
                &|b| {
                    b.as_object_mut().unwrap().remove("store");
                },
                "Store must be set to false",
            ),
            (
                &|b| b["metadata"] = json!({"user_id": "u"}),
                "Unsupported parameter: metadata",
            ),
            (
                &|b| b["max_output_tokens"] = json!(10),
                "Unsupported parameter: max_output_tokens",
            ),
            (
                &|b| b["instructions"] = json!("Be brief."),
                "Instructions are not valid",
            ),
            (
                &|b| b["input"][0]["role"] = json!("system"),
                "System messages are not allowed",
            ),
            (
                &|b| {
                    b["input"][0].as_object_mut().unwrap().remove("type");
                },
                "input[0] has no type",
            ),
            (
                &|b| b["input"][1]["name"] = json!("shellshell"),
                "\"shellshell\", which is not a declared tool",
            ),
            (
                &|b| b["input"][2]["call_id"] = json!("c2"),
                "No tool call found for function call output with call_id c2.",
            ),
            (
                &|b| {
                    b["input"].as_array_mut().unwrap().pop();
                },
                "No tool output found for function call c1.",
            ),
        ];
        for (edit, expected) in cases {
            let got = message(&headers, edit).unwrap_or_default();
            assert!(
                got.starts_with("400 ") && got.contains(expected),
                "{got} / {expected}"
            );
        }
        // An output before its call is an orphan too.
        let got = message(&headers, &|b| b["input"].as_array_mut().unwrap().swap(1, 2)).unwrap();
        assert!(got.contains("No tool call found"), "{got}");
    }

    #[test]
    fn forms_decode() {
        let form =
            parse_form(b"grant_type=refresh_token&scope=openid+profile%20email&x=a%2Bb&empty=");
        assert_eq!(
            Value::Object(form),
            json!({"grant_type": "refresh_token", "scope": "openid profile email", "x": "a+b", "empty": ""})
        );
    }

    #[test]
    fn grants_need_a_form_and_issue_jwts() {
        let form = parse_form(b"grant_type=refresh_token&refresh_token=rt&client_id=app");
        let (status, body, issued) = token_grant(Some("application/json"), &form, 1);
        assert_eq!(status, 400, "{body}");
        assert!(issued.is_none());
        let (status, body, issued) =
            token_grant(Some("application/x-www-form-urlencoded"), &form, 3);
        assert_eq!(status, 200, "{body}");
        let access = issued.unwrap();
        assert_eq!(body["access_token"], access.as_str());
        assert_eq!(body["refresh_token"], "rt_mock-refreshed-3");
        assert_eq!(access.split('.').count(), 3);
        assert!(access.ends_with(&base64url(b"mock-access-refreshed-3")));
        let code = parse_form(
            b"grant_type=authorization_code&code=bad&code_verifier=v&redirect_uri=r&client_id=c",
        );
        let (status, body, _) = token_grant(Some("application/x-www-form-urlencoded"), &code, 1);
        assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    }

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
