//! The HTTP edge shared by the four functions: routing, caller authentication, body limits, JSON
//! errors. Each function module holds its handler; `functions/*` only build the deps and serve.

pub mod answer_ingest;
pub mod handover;
pub mod prechat_complete;
pub mod presence_check;

use std::collections::HashMap;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::caic::CaicError;
use crate::config::{ConfigError, Env};
use crate::flow::FlowError;
use crate::msc::MscError;
use crate::store::StoreError;

pub type Response = http::Response<Body>;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Which function serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    AnswerIngest,
    PresenceCheck,
    PrechatComplete,
    Handover,
}

impl Function {
    /// The Lambda binary (and `functions/` package) that serves it.
    pub const fn binary(self) -> &'static str {
        match self {
            Function::AnswerIngest => "answer-ingest",
            Function::PresenceCheck => "presence-check",
            Function::PrechatComplete => "prechat-complete",
            Function::Handover => "handover",
        }
    }
}

/// Every route of the service, as the template and the OpenAPI document name them.
pub const ROUTES: &[(&str, &str, Function)] = &[
    ("POST", "/v1/messages", Function::AnswerIngest),
    ("POST", "/v1/presence", Function::PresenceCheck),
    ("GET", "/v1/presence", Function::PresenceCheck),
    ("POST", "/v1/prechat/complete", Function::PrechatComplete),
    (
        "POST",
        "/v1/sessions/{sessionId}/handover",
        Function::Handover,
    ),
];

/// The function that owns `path` (any method), with the `{sessionId}` it carries.
pub fn route_owner(path: &str) -> Option<(Function, Option<String>)> {
    ROUTES.iter().find_map(|(_, template, function)| {
        match_template(template, path).map(|param| (*function, param))
    })
}

fn match_template(template: &str, path: &str) -> Option<Option<String>> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut param = None;
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(param),
            (Some(w), Some(g)) if w.starts_with('{') => param = Some(g.to_owned()),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer key")]
    Unauthorized,
    #[error("no route {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        /// For the `Allow` header RFC 9110 requires on a 405.
        allow: String,
    },
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    InvalidBody(String),
    #[error("session id must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")]
    InvalidSessionId,
    #[error("a handover of this session is in progress; retry in a few seconds")]
    HandoverInProgress,
    #[error("Idempotency-Key must be 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.' or ':'")]
    InvalidIdempotencyKey,
    #[error("a request with this Idempotency-Key is being processed; retry in a few seconds")]
    RequestInProgress,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the session has no live intake to hand over")]
    NoIntake,
    #[error("session store unavailable")]
    Store(#[source] StoreError),
    #[error("Conversational AI Cloud unavailable")]
    Caic(#[source] CaicError),
    #[error("Mobile Service Cloud did not accept the message")]
    Msc(#[source] MscError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidBody(_)
            | ApiError::InvalidSessionId
            | ApiError::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::HandoverInProgress | ApiError::RequestInProgress => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NoIntake => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Caic(_) | ApiError::Msc(_) => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NoRoute { .. } => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TooLarge => "body_too_large",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidSessionId => "invalid_session_id",
            ApiError::HandoverInProgress => "handover_in_progress",
            ApiError::InvalidIdempotencyKey => "invalid_idempotency_key",
            ApiError::RequestInProgress => "request_in_progress",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::NoIntake => "no_intake",
            ApiError::Store(_) => "store_unavailable",
            ApiError::Caic(_) => "caic_unavailable",
            ApiError::Msc(_) => "msc_unavailable",
        }
    }

    /// One log line, one JSON body. The cause is logged, never sent: it may name internals.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let cause = std::error::Error::source(&self).map(ToString::to_string);
        if status.is_server_error() {
            tracing::error!(
                code = self.code(),
                status = status.as_u16(),
                cause,
                "{self}"
            );
        } else {
            tracing::warn!(code = self.code(), status = status.as_u16(), "{self}");
        }
        let mut response = json_response(
            status,
            &json!({"error": {"code": self.code(), "message": self.to_string()}}),
        );
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(value) = http::HeaderValue::from_str(allow) {
                response.headers_mut().insert(http::header::ALLOW, value);
            }
        }
        if matches!(
            self,
            ApiError::HandoverInProgress | ApiError::RequestInProgress
        ) {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> Self {
        match err {
            FlowError::Store(e) => ApiError::Store(e),
            FlowError::Caic(e) => ApiError::Caic(e),
            FlowError::Msc(e) => ApiError::Msc(e),
            FlowError::HandoverInProgress => ApiError::HandoverInProgress,
        }
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = http::Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A caller key, compared in constant time.
#[derive(Clone)]
pub struct BearerKey(String);

impl BearerKey {
    pub fn from_env(env: &Env, name: &'static str) -> Result<Self, ConfigError> {
        let key = env.required(name)?;
        if key.len() < 16 {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be at least 16 characters".into(),
            });
        }
        Ok(Self(key.to_owned()))
    }

    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    pub fn authorize(&self, req: &Request) -> Result<(), ApiError> {
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if constant_time_eq(presented.as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Time depends on the expected key's length only, never on where the first difference is.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(0);
        diff |= usize::from(p ^ e);
    }
    diff == 0
}

/// Checks the method among the ones the route allows.
pub fn method_allowed(req: &Request, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(req.method()) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            allow: allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

pub fn no_route(req: &Request) -> ApiError {
    ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
    }
}

pub(crate) fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    Ok(bytes)
}

/// A JSON body of type `T`; serde's message names the field that is wrong or missing.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.is_empty() {
        return Err(ApiError::InvalidBody(
            "request body is empty; JSON expected".into(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidBody(describe_json_error(&e)))?;
    if !value.is_object() {
        return Err(ApiError::InvalidBody(
            "invalid JSON body: expected a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::InvalidBody(describe_json_error(&e)))
}

/// serde reads a struct from a JSON array as readily as from an object (`[null, null]` is a valid
/// `EndUser`); request bodies say "object", so nested structs go through this.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error;
    match <Value as serde::Deserialize>::deserialize(deserializer)? {
        Value::Null => Ok(None),
        value @ Value::Object(_) => serde_json::from_value(value)
            .map(Some)
            .map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected a JSON object")),
    }
}

/// Like [`object`], for a list of objects.
pub(crate) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error;
    let Value::Array(items) = <Value as serde::Deserialize>::deserialize(deserializer)? else {
        return Err(D::Error::custom("expected a list of JSON objects"));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(_) => serde_json::from_value(item).map_err(D::Error::custom),
            _ => Err(D::Error::custom("expected a list of JSON objects")),
        })
        .collect()
}

/// serde's messages quote the offending value (`invalid type: string "Jane Doe", expected ...`); error
/// bodies and log lines must not carry what the caller sent, which may be personal data or a secret.
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Io | Category::Syntax | Category::Eof => format!(
            "invalid JSON body: malformed JSON at line {} column {}",
            err.line(),
            err.column()
        ),
        Category::Data => {
            let message = err.to_string();
            match (message.find("invalid "), message.find(", expected")) {
                (Some(start), Some(end)) if start < end => {
                    format!("invalid JSON body: wrong type or value{}", &message[end..])
                }
                _ => format!("invalid JSON body: {message}"),
            }
        }
    }
}

/// Like [`json_body`], but an empty body is `T::default()`.
pub fn optional_json_body<T: DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    if body_bytes(req)?.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json_body(req)
}

/// Query parameters from the URI (API Gateway v2 keeps the raw query string there).
pub fn query(req: &Request) -> HashMap<String, String> {
    let mut params: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    for (name, value) in req.query_string_parameters().iter() {
        params
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    params
}

pub fn valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn checked_session_id(id: &str) -> Result<String, ApiError> {
    if valid_session_id(id) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::InvalidSessionId)
    }
}

/// The request id of the invocation, for log lines.
pub fn request_id(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|ctx| ctx.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            req.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Turns a handler's result into the response, logging errors once.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_to_their_functions() {
        assert_eq!(
            route_owner("/v1/messages"),
            Some((Function::AnswerIngest, None))
        );
        assert_eq!(
            route_owner("/v1/sessions/abc-1/handover"),
            Some((Function::Handover, Some("abc-1".into())))
        );
        assert_eq!(
            route_owner("/v1/sessions//handover").map(|r| r.1),
            Some(Some(String::new()))
        );
        assert_eq!(route_owner("/v1/unknown"), None);
        assert_eq!(route_owner("/v1/sessions/a/b/handover"), None);
    }

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-kez", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key-longer", b"secret-key"));
        assert!(!constant_time_eq(b"", b"secret-key"));
    }

    #[test]
    fn json_errors_name_the_field_but_never_echo_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            text: String,
            name: Option<u32>,
        }
        let describe =
            |raw: &str| describe_json_error(&serde_json::from_str::<Body>(raw).unwrap_err());
        let wrong = describe(r#"{"text": "hi", "name": "Jane Doe"}"#);
        assert!(wrong.contains("expected u32"), "{wrong}");
        assert!(!wrong.contains("Jane"), "{wrong}");
        let missing = describe(r#"{"name": 1}"#);
        assert!(missing.contains("missing field `text`"), "{missing}");
        let broken = describe(r#"{"text": "secret-value"#);
        assert!(broken.contains("malformed JSON"), "{broken}");
        assert!(!broken.contains("secret-value"), "{broken}");
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(valid_session_id("3f9c2a1e-5d2b_AZ09"));
        assert!(!valid_session_id(""));
        assert!(!valid_session_id(&"a".repeat(129)));
        assert!(!valid_session_id("a b"));
        assert!(!valid_session_id("ä"));
    }
}
