//! A page's live connection: the handshake's check, and the resume that sends what the page missed
//! and registers the connection for what comes next. Served by the live-connection function (API
//! Gateway's WebSocket API) and by the local runner's socket, the same way.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{ConnectionId, SessionId};
use crate::live::{error_frame, message_frame, resumed_frame, ConnectionPost, PostError};
use crate::store::{Registered, SessionStore, StoreError};
use crate::token::{TokenError, TokenKeys};

/// What a live connection needs.
#[derive(Clone)]
pub struct LiveDeps {
    pub store: Arc<dyn SessionStore>,
    pub post: Arc<dyn ConnectionPost>,
    pub tokens: TokenKeys,
    pub clock: Arc<dyn Clock>,
    /// Where the messages' files are: a catch-up carries links made for it.
    pub files: Arc<dyn crate::files::FileStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this conversation token names no conversation yet: send the first message, then connect with the token its reply carries")]
    NoConversationYet,
    #[error("messages kept arriving while the connection caught up; resume again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LiveError {
    /// The `code` of the error frame (and of the handshake's refusal).
    pub fn code(&self) -> &'static str {
        match self {
            LiveError::Token(TokenError::Expired) => "token_expired",
            LiveError::Token(TokenError::Invalid) => "unauthorized",
            LiveError::NoConversationYet => "no_conversation_yet",
            LiveError::Busy => "busy",
            LiveError::Store(_) => "store_unavailable",
        }
    }

    pub fn frame(&self) -> String {
        // The store's own words stay in the log.
        let message = match self {
            LiveError::Store(_) => "session store unavailable; resume again".to_owned(),
            other => other.to_string(),
        };
        error_frame(self.code(), &message)
    }
}

/// The conversation `token` admits a live connection to: checked at the handshake and again by the
/// resume (API Gateway hands the query string to `$connect` only).
pub fn admitted(tokens: &TokenKeys, token: &str, now: i64) -> Result<SessionId, LiveError> {
    tokens
        .verify(token, now)?
        .session
        .ok_or(LiveError::NoConversationYet)
}

/// How often a resume reads the outbox again because messages were announced while it caught up.
const RESUME_ATTEMPTS: usize = 4;

/// Sends `connection` the messages of `session_id` after `after`, in outbox order, then registers
/// it, so that every later message is pushed to it: each message exactly once on this connection.
/// The catch-up is posted before the registration, so no live push overtakes it; a registration
/// refused because a newer message was announced meanwhile reads and sends again from where it was.
/// Costs one read and one write unless messages arrive during it. `Ok` is the cursor the page is
/// caught up to; `Ok(None)` when the connection went away meanwhile (nothing registered).
pub async fn resume(
    deps: &LiveDeps,
    connection: &ConnectionId,
    session_id: &SessionId,
    after: u64,
) -> Result<Option<u64>, LiveError> {
    let mut sent_up_to = after;
    let mut announced = 0;
    for _ in 0..RESUME_ATTEMPTS {
        let session = deps.store.get(session_id).await?;
        let last = session.as_ref().map_or(0, |s| s.agent.last_cursor);
        for message in super::agent::messages_since(session.as_ref(), sent_up_to) {
            let files = crate::files::shown(deps.files.as_ref(), message).await;
            match deps
                .post
                .post(connection, &message_frame(session_id, message, &files))
                .await
            {
                Ok(()) => sent_up_to = sent_up_to.max(message.cursor),
                Err(PostError::Gone) => return Ok(None),
                Err(err) => {
                    tracing::warn!(error = %err, "catch-up not sent on a live connection");
                    return Ok(None);
                }
            }
        }
        // An announcement the outbox no longer shows is of a message this read would have found if
        // it existed (the read follows the announcement): nothing of it is missing.
        let seen = last.max(announced);
        match deps
            .store
            .register_connection(session_id, connection, seen)
            .await?
        {
            Registered::Registered { evicted } => {
                for old in &evicted {
                    tracing::info!("a conversation's oldest live connection let go");
                    deps.post.close(old).await;
                }
                let who = super::agent::handled_by(session.as_ref(), deps.clock.now());
                let caught_up = sent_up_to.max(seen);
                if deps
                    .post
                    .post(connection, &resumed_frame(caught_up, who.as_str()))
                    .await
                    .is_err()
                {
                    return Ok(None);
                }
                return Ok(Some(caught_up));
            }
            Registered::Behind { announced: newer } => announced = newer,
        }
    }
    Err(LiveError::Busy)
}

/// A frame the page sent: a resume is acted on, a ping needs nothing (it kept the connection open),
/// anything else is answered with an error frame.
pub async fn page_frame(deps: &LiveDeps, connection: &ConnectionId, body: &[u8]) {
    let answer = match crate::live::parse_page_frame(body) {
        Ok(crate::live::PageFrame::Ping) => return,
        Ok(crate::live::PageFrame::Resume { token, after }) => {
            let resumed = match admitted(&deps.tokens, &token, deps.clock.now()) {
                Ok(session_id) => {
                    tracing::Span::current().record("session_id", session_id.as_str());
                    crate::metrics::session(&session_id);
                    resume(deps, connection, &session_id, after).await
                }
                Err(err) => Err(err),
            };
            match resumed {
                Ok(Some(cursor)) => {
                    tracing::info!(cursor, "live connection resumed");
                    return;
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err, code = err.code(), "live connection not resumed");
                    err.frame()
                }
            }
        }
        Err(frame) => frame,
    };
    if let Err(err) = deps.post.post(connection, &answer).await {
        tracing::info!(error = %err, "error frame not sent on a live connection");
    }
}
