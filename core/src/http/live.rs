//! live-connection's one handler: API Gateway's WebSocket events, told apart by their route key.
//! `$connect` checks the page's token (in the query string: a browser cannot set headers on a
//! WebSocket) and writes nothing; `resume` and `$default` carry the page's frames. `ping` never
//! reaches a function (a mock integration in the template keeps the connection open for free), and
//! `$disconnect` is not routed: API Gateway delivers it on a best-effort basis, so the registry
//! cannot rely on it; a push that finds a connection gone (410) forgets it, and every entry expires.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

use super::ApiError;
use crate::domain::ConnectionId;
use crate::flow::live::{admitted, page_frame, LiveDeps, LiveError};

pub async fn websocket_event(State(deps): State<Arc<LiveDeps>>, request: Request) -> Response {
    let (route_key, connection) = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::WebSocket(context)) => (
            context.route_key.clone().unwrap_or_default(),
            context
                .connection_id
                .as_deref()
                .and_then(ConnectionId::parse),
        ),
        _ => return ApiError::InvalidBody("not a WebSocket event".into()).into_response(),
    };
    if route_key == "$connect" {
        let token = request
            .query_string_parameters_ref()
            .and_then(|query| query.first("token").map(str::to_owned));
        return connect(&deps, token.as_deref()).into_response();
    }
    let Some(connection) = connection else {
        return ApiError::InvalidBody("the event names no connection".into()).into_response();
    };
    let body = match axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => Bytes::new(),
    };
    page_frame(&deps, &connection, &body).await;
    axum::http::StatusCode::OK.into_response()
}

/// The handshake: a bound, unexpired token of this service, or the connection is refused (the page
/// sees the WebSocket fail to open and asks for a new token).
fn connect(deps: &LiveDeps, token: Option<&str>) -> Result<axum::http::StatusCode, ApiError> {
    match token.map(|token| admitted(&deps.tokens, token, deps.clock.now())) {
        Some(Ok(session_id)) => {
            super::request::record_session(&session_id);
            Ok(axum::http::StatusCode::OK)
        }
        Some(Err(LiveError::NoConversationYet)) => Err(ApiError::NoConversationYet),
        _ => Err(ApiError::Unauthorized),
    }
}
