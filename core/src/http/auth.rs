//! Caller authentication: a bearer key per kind of caller, checked before any other work.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use super::ApiError;
use crate::clock::Clock;
use crate::config::Keys;
use crate::domain::SessionId;
use crate::token::{ConversationToken, TokenKeys};

/// One caller's key (the channel's, CAIC's webhooks', the operators', MSC's webhooks'): the current
/// value and, during a rotation, the next one.
#[derive(Clone)]
pub struct CallerKey(Keys);

impl From<&Keys> for CallerKey {
    fn from(keys: &Keys) -> Self {
        Self(keys.clone())
    }
}

impl CallerKey {
    /// Whether `Authorization: Bearer <key>` carries this key.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        self.is(bearer(headers).unwrap_or_default().as_bytes())
    }

    /// Compared in constant time, so the time taken says nothing about how much of a guess was right.
    fn is(&self, presented: &[u8]) -> bool {
        // Every value is compared, whichever matches, so the time taken says nothing either.
        self.0.all().fold(false, |matched, key| {
            matched | bool::from(presented.ct_eq(key.as_bytes()))
        })
    }

    /// Whether the query's `key` parameter carries this key.
    fn admits_query(&self, query: Option<&str>) -> bool {
        query.is_some_and(|query| {
            form_urlencoded::parse(query.as_bytes())
                .any(|(name, value)| name == "key" && self.is(value.as_bytes()))
        })
    }
}

/// What `Authorization: Bearer <value>` carries. The scheme is case-insensitive (RFC 7235), the value
/// is not.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, value)| value.trim())
}

/// Who called a route that the channel's backend and pages share.
#[derive(Clone)]
pub enum Caller {
    /// The channel key: every conversation.
    Channel,
    /// A conversation token: its own conversation only. The keys issue the token for the conversation
    /// its first message starts.
    Conversation {
        token: ConversationToken,
        keys: TokenKeys,
    },
}

impl Caller {
    /// Whether the caller may speak for `session` (`None`: a new conversation). The channel key may
    /// for any; a token only for its own, and before its first message only for a new one.
    pub fn may_use(&self, session: Option<&SessionId>) -> Result<(), ApiError> {
        match self {
            Caller::Conversation { token, .. } if token.session.as_ref() != session => {
                Err(ApiError::OtherConversation)
            }
            _ => Ok(()),
        }
    }
}

/// The channel key, and the keys of conversation tokens when they are on.
#[derive(Clone)]
pub struct ChannelOrToken {
    pub key: CallerKey,
    pub tokens: Option<TokenKeys>,
    pub clock: Arc<dyn Clock>,
}

/// The route layer for the routes pages may call: the channel key, or a valid conversation token; the
/// caller is left on the request for the handler to scope by. Anything else is a 401.
pub async fn require_channel_or_token(
    State(gate): State<ChannelOrToken>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = if gate.key.admits(request.headers()) {
        Some(Caller::Channel)
    } else {
        match (&gate.tokens, bearer(request.headers())) {
            (Some(keys), Some(presented)) => {
                keys.verify(presented, gate.clock.now())
                    .ok()
                    .map(|token| Caller::Conversation {
                        token,
                        keys: keys.clone(),
                    })
            }
            _ => None,
        }
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The route layer that lets only holders of the key through (`middleware::from_fn_with_state`).
pub async fn require_key(State(key): State<CallerKey>, request: Request, next: Next) -> Response {
    if key.admits(request.headers()) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Like [`require_key`], also taking the key as the query parameter `key`.
pub async fn require_key_or_query(
    State(key): State<CallerKey>,
    request: Request,
    next: Next,
) -> Response {
    if key.admits(request.headers()) || key.admits_query(request.uri().query()) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_key_is_admitted() {
        let keys = |current: &str, next: Option<&str>| {
            CallerKey::from(&Keys {
                current: current.into(),
                next: next.map(Into::into),
            })
        };
        let key = keys("secret-key", None);
        assert!(key.admits(&bearer("Bearer secret-key")));
        assert!(!key.admits(&bearer("Bearer secret-kez")));
        assert!(!key.admits(&bearer("Bearer secret-key-longer")));
        assert!(!key.admits(&bearer("Basic secret-key")));
        assert!(key.admits(&bearer("bearer secret-key")));
        assert!(key.admits(&bearer("BEARER  secret-key")));
        assert!(!key.admits(&bearer("Bearer SECRET-KEY")));
        assert!(!key.admits(&bearer("Bearersecret-key")));
        assert!(!key.admits(&HeaderMap::new()));
        assert!(key.admits_query(Some("a=1&key=secret-key")));
        assert!(!key.admits_query(Some("key=secret-kez")));
        assert!(!key.admits_query(None));
        let rotating = keys("secret-key", Some("secret-key-next"));
        assert!(rotating.admits(&bearer("Bearer secret-key")));
        assert!(rotating.admits(&bearer("Bearer secret-key-next")));
        assert!(!rotating.admits(&bearer("Bearer secret-key-nex")));
    }
}
