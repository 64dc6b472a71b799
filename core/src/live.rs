//! Live connections: the pages' WebSocket connections, and what reaches them. The outbox stays the
//! truth; a push is the fast path. Whatever stores a message in the outbox announces it
//! ([`crate::store::LiveStore::announce`]) and posts it to the connections the announcement names,
//! through the [`ConnectionPost`] port: deployed, API Gateway's management API
//! (`POST @connections/{id}`); locally, the runner's own sockets ([`InProcess`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use crate::channel::{Ahead, ChannelPush};
use crate::domain::{ConnectionId, OutboxMessage};
use crate::store::LiveStore;

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The connection is closed (API Gateway's 410): forget it.
    #[error("the live connection is gone")]
    Gone,
    #[error("the live connection could not be reached: {0}")]
    Failed(String),
}

/// Where frames for a page's live connection are posted.
#[async_trait]
pub trait ConnectionPost: Send + Sync {
    async fn post(&self, connection: &ConnectionId, frame: &str) -> Result<(), PostError>;

    /// Closes a connection the service lets go (a conversation past its limit of connections).
    async fn close(&self, connection: &ConnectionId);
}

/// The largest frame a page may send (a resume carries a token and a cursor): anything longer is
/// answered with an error and not parsed.
pub const MAX_PAGE_FRAME_BYTES: usize = 8 * 1024;

/// What a page sends on its connection, by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PageFrame {
    /// The first frame: the conversation (by its token, which the handshake checked too) and the
    /// cursor of the last message the page has.
    Resume {
        token: String,
        #[serde(default)]
        after: u64,
    },
    /// Keeps the connection from API Gateway's idle close (10 minutes).
    Ping,
}

/// A message of the outbox, as the outbox route shows it.
pub fn message_frame(
    session_id: &str,
    message: &OutboxMessage,
    files: &[crate::files::ShownFile],
) -> String {
    let mut shown = crate::channel::body(session_id, message, files);
    if let Some(fields) = shown.as_object_mut() {
        fields.remove("sessionId");
    }
    json!({"type": "message", "message": shown}).to_string()
}

/// The page is caught up to `cursor`; every later message is pushed as it is stored.
pub fn resumed_frame(cursor: u64, handled_by: &str) -> String {
    json!({"type": "resumed", "cursor": cursor, "handledBy": handled_by}).to_string()
}

/// A frame the service could not act on, with the same `{code, message}` as the HTTP routes' errors.
pub fn error_frame(code: &str, message: &str) -> String {
    json!({"type": "error", "error": {"code": code, "message": message}}).to_string()
}

/// Pushes each message it is given to the conversation's live connections: announced first (one
/// write), then posted to every connection at once; a connection that is gone is forgotten, one that
/// could not be reached is closed. Never fails the caller: a message that could not be pushed is in
/// the outbox for the page's next connection.
pub struct LivePush {
    pub store: Arc<dyn LiveStore>,
    pub post: Arc<dyn ConnectionPost>,
    /// Where a message's files are: each push carries links made for it.
    pub files: Arc<dyn crate::files::FileStore>,
}

impl LivePush {
    /// Posts `frame` to each of `connections` at once; forgets those that are gone, closes those that
    /// could not be reached.
    async fn post_all(&self, session_id: &str, connections: &[ConnectionId], frame: &str) {
        let posts = connections.iter().map(|connection| async {
            match self.post.post(connection, frame).await {
                Ok(()) => {}
                Err(PostError::Gone) => {
                    tracing::info!("live connection gone; forgotten");
                    if let Err(err) = self.store.remove_connection(session_id, connection).await {
                        tracing::warn!(error = %err, "could not forget a live connection that is gone");
                    }
                }
                // Closed, so that the page reconnects and resumes from its cursor rather than wait,
                // connected, for a message that will never come.
                Err(err) => {
                    tracing::warn!(error = %err, "message not pushed to a live connection; closing it");
                    crate::metrics::count("LivePushesFailed");
                    self.post.close(connection).await;
                }
            }
        });
        futures::future::join_all(posts).await;
    }
}

#[async_trait]
impl ChannelPush for LivePush {
    async fn push(&self, session_id: &str, message: &OutboxMessage) {
        self.push_ahead(session_id, message, Vec::new()).await;
    }

    async fn look_ahead(&self, session_id: &str) -> Ahead {
        self.store
            .connections(session_id)
            .await
            .unwrap_or_else(|err| {
                tracing::info!(error = %err, "live connections not looked up ahead; the announcement names them");
                Vec::new()
            })
    }

    /// The connections found ahead (registered before the message was stored, so their pages had not
    /// read it) are pushed to at once, beside the announcement; the announcement's answer adds those
    /// that registered in between without having read it. Each connection is posted to once.
    async fn push_ahead(&self, session_id: &str, message: &OutboxMessage, ahead: Ahead) {
        let files = crate::files::shown(self.files.as_ref(), message).await;
        let frame = message_frame(session_id, message, &files);
        let early: Vec<ConnectionId> = ahead
            .into_iter()
            .filter(|(_, seen)| *seen < message.cursor)
            .map(|(id, _)| id)
            .collect();
        let (announced, ()) = tokio::join!(
            self.store.announce(session_id, message.cursor),
            self.post_all(session_id, &early, &frame)
        );
        match announced {
            Ok(connections) => {
                let rest: Vec<ConnectionId> = connections
                    .into_iter()
                    .filter(|connection| !early.contains(connection))
                    .collect();
                self.post_all(session_id, &rest, &frame).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "message not announced to live connections; it stays in the outbox");
                crate::metrics::count("LivePushesFailed");
            }
        }
    }
}

/// Every push at once: the channel's webhook and the pages' live connections.
pub struct Pushes(pub Vec<Arc<dyn ChannelPush>>);

#[async_trait]
impl ChannelPush for Pushes {
    async fn push(&self, session_id: &str, message: &OutboxMessage) {
        futures::future::join_all(self.0.iter().map(|push| push.push(session_id, message))).await;
    }

    async fn look_ahead(&self, session_id: &str) -> Ahead {
        let found =
            futures::future::join_all(self.0.iter().map(|push| push.look_ahead(session_id)));
        found.await.into_iter().flatten().collect()
    }

    async fn push_ahead(&self, session_id: &str, message: &OutboxMessage, ahead: Ahead) {
        let pushes = self
            .0
            .iter()
            .map(|push| push.push_ahead(session_id, message, ahead.clone()));
        futures::future::join_all(pushes).await;
    }
}

/// The local runner's sockets, by connection: frames go to the socket's task through a channel.
#[derive(Default)]
pub struct InProcess {
    sockets: Mutex<HashMap<ConnectionId, tokio::sync::mpsc::Sender<String>>>,
}

/// Frames waiting for one local socket; a socket this far behind is treated as gone.
const LOCAL_FRAMES_WAITING: usize = 256;

impl InProcess {
    /// A new connection: its id, and the frames posted to it.
    pub fn open(&self) -> (ConnectionId, tokio::sync::mpsc::Receiver<String>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(LOCAL_FRAMES_WAITING);
        let id = uuid::Uuid::new_v4().simple().to_string();
        // A simple UUID is 32 hex digits: always an id.
        let id = ConnectionId::parse(&id).unwrap_or_else(|| unreachable!("hex is an id"));
        self.lock().insert(id.clone(), sender);
        (id, receiver)
    }

    /// The socket closed.
    pub fn closed(&self, connection: &ConnectionId) {
        self.lock().remove(connection);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, tokio::sync::mpsc::Sender<String>>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ConnectionPost for InProcess {
    async fn post(&self, connection: &ConnectionId, frame: &str) -> Result<(), PostError> {
        let Some(sender) = self.lock().get(connection).cloned() else {
            return Err(PostError::Gone);
        };
        sender
            .try_send(frame.to_owned())
            .map_err(|_| PostError::Gone)
    }

    async fn close(&self, connection: &ConnectionId) {
        self.closed(connection);
    }
}

/// API Gateway's management API of the WebSocket API's stage (`LIVE_CONNECTIONS_URL`).
pub struct ManagementApi {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApi {
    /// `endpoint`: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`; `http`: a client of
    /// its own (one host), so that its connection can be opened ahead at a cold start.
    pub fn new(sdk: &aws_config::SdkConfig, http: reqwest::Client, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .http_client(crate::aws_http::sdk_http_client(http))
            .endpoint_url(endpoint)
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl ConnectionPost for ManagementApi {
    async fn post(&self, connection: &ConnectionId, frame: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection.as_str())
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(frame))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Err(PostError::Gone),
                _ => Err(PostError::Failed(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(err).to_string(),
                )),
            },
        }
    }

    async fn close(&self, connection: &ConnectionId) {
        let result = self
            .client
            .delete_connection()
            .connection_id(connection.as_str())
            .send()
            .await;
        if let Err(err) = result {
            tracing::info!(
                error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(err),
                "could not close a live connection let go (it may be closed already)"
            );
        }
    }
}

/// The frame of a page's request the service answers, parsed; `Err` is the error frame to answer.
pub fn parse_page_frame(body: &[u8]) -> Result<PageFrame, String> {
    if body.len() > MAX_PAGE_FRAME_BYTES {
        return Err(error_frame(
            "frame_too_large",
            "a frame may be at most 8 KiB",
        ));
    }
    serde_json::from_slice::<PageFrame>(body).map_err(|_| {
        error_frame(
            "invalid_frame",
            "expected {\"type\": \"resume\", \"token\": ..., \"after\": <cursor>} or {\"type\": \"ping\"}",
        )
    })
}
