//! Reading requests: the body (bounded), JSON that names what is wrong without echoing it, the
//! session id in a path, and the span every request's log lines carry.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use super::ApiError;
use crate::domain::SessionId;

/// The request body, at most [`super::MAX_BODY_BYTES`] (the limit is the router's `DefaultBodyLimit`).
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge)
            }
            Err(_) => Err(ApiError::InvalidBody(
                "request body could not be read".into(),
            )),
        }
    }
}

impl Body {
    /// A JSON object read as `T`; the error names the field that is wrong or missing.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.is_empty() {
            return Err(ApiError::InvalidBody(
                "request body is empty; JSON expected".into(),
            ));
        }
        let value: Value = serde_json::from_slice(&self.0)
            .map_err(|e| ApiError::InvalidBody(describe_json_error(&e)))?;
        if !value.is_object() {
            return Err(ApiError::InvalidBody(
                "invalid JSON body: expected a JSON object".into(),
            ));
        }
        serde_json::from_value(value).map_err(|e| ApiError::InvalidBody(describe_json_error(&e)))
    }

    /// Like [`Body::json`], but an empty body, or one of JSON's white space only (space, tab, CR, LF:
    /// not a form feed), is `T::default()`.
    pub fn optional_json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self
            .0
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Ok(T::default());
        }
        self.json()
    }
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

/// Like [`objects`], where null means none.
pub(crate) fn objects_or_null<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::{Error, IntoDeserializer};
    match <Value as serde::Deserialize>::deserialize(deserializer)? {
        Value::Null => Ok(Vec::new()),
        value => objects(value.into_deserializer()).map_err(D::Error::custom),
    }
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

/// The `{sessionId}` of a route's path, checked.
pub struct SessionIdParam(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Undecodable percent-escapes are as invalid as a bad character.
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| crate::domain::InvalidSessionId)?;
        Ok(SessionIdParam(SessionId::parse(&raw)?))
    }
}

/// The address of the connection's peer, left on the request by a server that knows it (the local
/// runner; in Lambda, API Gateway's request context says it instead).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub std::net::IpAddr);

/// Where a request came from, to bound what one address may do: API Gateway's `sourceIp` in Lambda,
/// the peer's address in the local runner. Requests that say neither share one quota.
pub struct SourceAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use lambda_http::request::RequestContext;
        let from_gateway = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
            _ => None,
        };
        let address = from_gateway.or_else(|| {
            parts
                .extensions
                .get::<PeerAddress>()
                .map(|peer| peer.0.to_string())
        });
        Ok(SourceAddress(address.unwrap_or_else(|| "unknown".into())))
    }
}

/// Runs each request in a span with its request id (Lambda's, else `x-request-id`, else a new one) and
/// room for the session id, so every log line of the request carries both.
pub async fn in_request_span(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        session_id = tracing::field::Empty
    );
    next.run(request).instrument(span).await
}

/// Names the session in the current request's span.
pub fn record_session(session_id: &SessionId) {
    tracing::Span::current().record("session_id", session_id.as_str());
    crate::metrics::session(session_id.as_str());
}

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// axum adds the `Allow` header RFC 9110 requires.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field_but_never_echo_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Fields {
            text: String,
            name: Option<u32>,
        }
        let describe =
            |raw: &str| describe_json_error(&serde_json::from_str::<Fields>(raw).unwrap_err());
        let wrong = describe(r#"{"text": "hi", "name": "Jane Doe"}"#);
        assert!(wrong.contains("expected u32"), "{wrong}");
        assert!(!wrong.contains("Jane"), "{wrong}");
        let missing = describe(r#"{"name": 1}"#);
        assert!(missing.contains("missing field `text`"), "{missing}");
        let broken = describe(r#"{"text": "secret-value"#);
        assert!(broken.contains("malformed JSON"), "{broken}");
        assert!(!broken.contains("secret-value"), "{broken}");
    }
}
