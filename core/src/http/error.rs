//! Every way a request can fail, each with one status, one code and one log line ([`log_refusals`]).

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::MAX_BODY_BYTES;
use crate::caic::CaicError;
use crate::domain::{InvalidIdempotencyKey, InvalidSessionId, QUEUE_LIMIT, QUEUE_LIMIT_BYTES};
use crate::flow::FlowError;
use crate::msc::MscError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer key")]
    Unauthorized,
    #[error("no route {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    InvalidBody(String),
    #[error(transparent)]
    InvalidSessionId(#[from] InvalidSessionId),
    #[error("a handover of this session is in progress; retry in a few seconds")]
    HandoverInProgress,
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] InvalidIdempotencyKey),
    #[error("the handover is being made and {QUEUE_LIMIT} messages (or {QUEUE_LIMIT_BYTES} bytes) already wait behind it; send again once it is done")]
    QueueFull,
    #[error("a request with this Idempotency-Key is being processed; retry in a few seconds")]
    RequestInProgress,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the session has no live intake to hand over")]
    NoIntake,
    #[error("the session is not handed over to an agent")]
    NotHandedOver,
    #[error("no such session (or it expired)")]
    NoSession,
    #[error("after must be a cursor: a whole number from an earlier response")]
    InvalidCursor,
    #[error("this conversation token names no conversation yet: send the first message, then connect with the token its reply carries")]
    NoConversationYet,
    #[error("this conversation token is for another conversation")]
    OtherConversation,
    #[error("conversation tokens are not configured (CONVERSATION_TOKEN_SECRET)")]
    TokensOff,
    #[error("this page's origin may not start conversations (ALLOWED_ORIGINS)")]
    OriginNotAllowed,
    #[error("the identity token is not valid: signed with IDENTITY_SECRET (set), unexpired, at most 24 hours ahead")]
    IdentityNotVerified,
    #[error("too many conversations started from this address; retry after {retry_after_secs} s")]
    TooManyConversations { retry_after_secs: i64 },
    #[error("too many messages in this conversation; retry after {retry_after_secs} s")]
    TooManyMessages { retry_after_secs: i64 },
    #[error("session store unavailable")]
    Store(#[source] StoreError),
    #[error("Conversational AI Cloud unavailable")]
    Caic(#[source] CaicError),
    #[error("Mobile Service Cloud did not accept the message")]
    Msc(#[source] MscError),
    #[error("the file store is unavailable")]
    Files(#[source] crate::files::FileError),
    #[error("{0}")]
    FileRefused(crate::domain::files::FileRefused),
    #[error("files go to a colleague only (the chatbot cannot read them): send it once a colleague has taken over the conversation")]
    FilesNeedAgent,
    #[error("no such upload in this conversation: never uploaded, its link expired before it was used, or sent already")]
    UploadNotFound,
    #[error("the message could not be held for the agent; send it again (with the same Idempotency-Key)")]
    Outbound(#[source] crate::outbound::OutboundError),
}

impl ApiError {
    /// The HTTP status and the stable code callers match on.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::NoRoute { .. } => (S::NOT_FOUND, "no_route"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooLarge => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::InvalidBody(_) => (S::BAD_REQUEST, "invalid_body"),
            ApiError::InvalidSessionId(_) => (S::BAD_REQUEST, "invalid_session_id"),
            ApiError::HandoverInProgress => (S::CONFLICT, "handover_in_progress"),
            ApiError::QueueFull => (S::TOO_MANY_REQUESTS, "handover_queue_full"),
            ApiError::InvalidIdempotencyKey(_) => (S::BAD_REQUEST, "invalid_idempotency_key"),
            ApiError::RequestInProgress => (S::CONFLICT, "request_in_progress"),
            ApiError::IdempotencyKeyReused => (S::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            ApiError::NoIntake => (S::NOT_FOUND, "no_intake"),
            ApiError::NotHandedOver => (S::CONFLICT, "not_handed_over"),
            ApiError::NoSession => (S::NOT_FOUND, "no_session"),
            ApiError::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor"),
            ApiError::OtherConversation => (S::FORBIDDEN, "other_conversation"),
            ApiError::NoConversationYet => (S::CONFLICT, "no_conversation_yet"),
            ApiError::TokensOff => (S::NOT_FOUND, "tokens_not_configured"),
            ApiError::OriginNotAllowed => (S::FORBIDDEN, "origin_not_allowed"),
            ApiError::IdentityNotVerified => (S::UNAUTHORIZED, "identity_not_verified"),
            ApiError::TooManyConversations { .. } => {
                (S::TOO_MANY_REQUESTS, "too_many_conversations")
            }
            ApiError::TooManyMessages { .. } => (S::TOO_MANY_REQUESTS, "too_many_messages"),
            ApiError::Store(_) => (S::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Caic(_) => (S::BAD_GATEWAY, "caic_unavailable"),
            ApiError::Msc(MscError::Busy { .. }) => (S::SERVICE_UNAVAILABLE, "msc_busy"),
            ApiError::Msc(_) => (S::BAD_GATEWAY, "msc_unavailable"),
            ApiError::Files(_) => (S::SERVICE_UNAVAILABLE, "files_unavailable"),
            ApiError::FileRefused(crate::domain::files::FileRefused::Off) => {
                (S::FORBIDDEN, "files_off")
            }
            ApiError::FileRefused(_) => (S::UNPROCESSABLE_ENTITY, "file_refused"),
            ApiError::FilesNeedAgent => (S::CONFLICT, "files_need_agent"),
            ApiError::UploadNotFound => (S::NOT_FOUND, "upload_not_found"),
            ApiError::Outbound(_) => (S::SERVICE_UNAVAILABLE, "outbound_unavailable"),
        }
    }
}

/// What a refusal leaves on its response for the layer that logs it ([`log_refusals`]): the conversion
/// itself has no effects. The cause is logged, never sent: it may name internals.
#[derive(Clone)]
struct Refusal {
    code: &'static str,
    message: String,
    cause: Option<String>,
}

/// One JSON body, with the refusal's log line and its count left on the response as data.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let busy_for = match &self {
            ApiError::Msc(MscError::Busy { retry_after }) => Some(*retry_after),
            ApiError::TooManyConversations { retry_after_secs }
            | ApiError::TooManyMessages { retry_after_secs } => {
                Some(u64::try_from(*retry_after_secs).unwrap_or(1).max(1))
            }
            _ => None,
        };
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(Refusal {
            code,
            message: self.to_string(),
            cause: std::error::Error::source(&self)
                .map(|source| crate::telemetry::ErrorChain(source).to_string()),
        });
        response
            .extensions_mut()
            .insert(crate::metrics::Counted::outcome(
                "RequestsRejected",
                "ErrorCode",
                code,
            ));
        if let Some(seconds) = busy_for {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if matches!(
            self,
            ApiError::HandoverInProgress | ApiError::RequestInProgress | ApiError::QueueFull
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// The one log line of every refusal, in the request's span: a warning for the caller's mistakes, an
/// error with its cause for the service's own failures.
pub async fn log_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(refusal) = response.extensions().get::<Refusal>() {
        let (code, status) = (refusal.code, response.status().as_u16());
        if response.status().is_server_error() {
            let cause = refusal.cause.as_deref();
            tracing::error!(code, status, cause, "{}", refusal.message);
        } else {
            tracing::warn!(code, status, "{}", refusal.message);
        }
    }
    response
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> Self {
        match err {
            FlowError::Store(e) => ApiError::Store(e),
            FlowError::Caic(e) => ApiError::Caic(e),
            FlowError::Msc(e) => ApiError::Msc(e),
            FlowError::QueueFull => ApiError::QueueFull,
            FlowError::FilesNeedAgent => ApiError::FilesNeedAgent,
            FlowError::FileRefused(refused) => ApiError::FileRefused(refused),
            FlowError::UploadNotFound => ApiError::UploadNotFound,
            FlowError::Files(e) => ApiError::Files(e),
            FlowError::Outbound(e) => ApiError::Outbound(e),
        }
    }
}
