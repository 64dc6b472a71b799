//! The local runner's live connections: `GET /v1/live?token=<token>` upgraded to a WebSocket on the
//! runner's one port, speaking what API Gateway's WebSocket API speaks deployed (the handshake's token
//! check, then the page's `resume` and `ping` frames), through the same code (`flow::live`), with the
//! runner's sockets as the connections' adapter ([`InProcess`]).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use handover_core::flow::live::{admitted, page_frame, LiveDeps, LiveError};
use handover_core::http::ApiError;
use handover_core::live::{InProcess, MAX_PAGE_FRAME_BYTES};

#[derive(Clone)]
pub struct LocalLive {
    pub deps: LiveDeps,
    pub sockets: Arc<InProcess>,
}

#[derive(serde::Deserialize)]
pub struct Handshake {
    token: Option<String>,
}

pub async fn upgrade(
    State(live): State<LocalLive>,
    Query(handshake): Query<Handshake>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let deps = &live.deps;
    let token = handshake.token.unwrap_or_default();
    match admitted(&deps.tokens, &token, deps.clock.now()) {
        Ok(_) => {}
        Err(LiveError::NoConversationYet) => return ApiError::NoConversationYet.into_response(),
        Err(_) => return ApiError::Unauthorized.into_response(),
    }
    upgrade
        .max_message_size(MAX_PAGE_FRAME_BYTES * 2)
        .on_upgrade(move |socket| serve(live, socket))
}

/// One socket: frames posted to its connection go out; the page's frames are handled as the
/// live-connection function handles them, each in its own task (as each is its own invocation
/// deployed), so the socket keeps sending while a resume catches up.
async fn serve(live: LocalLive, mut socket: WebSocket) {
    let (connection, mut posted) = live.sockets.open();
    loop {
        tokio::select! {
            frame = posted.recv() => match frame {
                Some(frame) => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                // Let go by the service (a conversation past its limit of connections).
                None => break,
            },
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    spawn_frame(&live, &connection, text.as_bytes().to_vec());
                }
                Some(Ok(Message::Binary(bytes))) => spawn_frame(&live, &connection, bytes.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
        }
    }
    live.sockets.closed(&connection);
}

fn spawn_frame(live: &LocalLive, connection: &handover_core::domain::ConnectionId, body: Vec<u8>) {
    let deps = live.deps.clone();
    let connection = connection.clone();
    tokio::spawn(async move { page_frame(&deps, &connection, &body).await });
}
