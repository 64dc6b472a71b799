//! answer-ingest's routes: `POST /v1/messages` (one end-user turn), the channel's outbox
//! (`GET /v1/sessions/{sessionId}/messages`), and `POST /v1/conversations` (a page's token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Caller, CallerKey};
use super::request::{
    object, objects_or_null, record_session, Body, SessionIdParam, SourceAddress,
};
use super::ApiError;
use crate::channel;
#[cfg(doc)]
use crate::domain::files::FILE_NAME_LIMIT_CHARS;
use crate::domain::files::{declared_name, name_for_type};
use crate::domain::{IdempotencyKey, SessionId, Speaker, Turn, VerifiedIdentity, WaitChoice};
use crate::flow::agent::{handled_by, messages_since};
use crate::flow::{ingest, IncomingMessage, IngestDeps, Routed};
use crate::store::{IdempotencyBegin, Quota, QuotaStore};
use crate::token::{IdentityError, PageTokens};

const MAX_TEXT_CHARS: usize = 4_096;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageBody {
    session_id: Option<String>,
    text: String,
    culture: Option<String>,
    end_user_url: Option<String>,
    #[serde(default, deserialize_with = "object")]
    #[allow(dead_code)]
    end_user: Option<EndUser>,
    #[serde(default, deserialize_with = "objects_or_null")]
    history: Vec<HistoryTurn>,
    /// At most one file for the agent, by the id `POST /v1/uploads` gave it.
    #[serde(default, deserialize_with = "objects_or_null")]
    attachments: Vec<AttachmentBody>,
    /// The end user's answer to "no colleague has taken your conversation yet" (`no_agent_yet`).
    choice: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AttachmentBody {
    upload_id: String,
}

/// Accepted (and checked) for the channel's convenience; neither stored nor sent: the agent's inbox
/// names the end user after the intake's name answer, so that one person has one name.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct EndUser {
    name: Option<String>,
    email: Option<String>,
}

/// One earlier turn the channel shows the end user.
#[derive(Debug, Deserialize)]
struct HistoryTurn {
    from: String,
    text: String,
}

/// The most turns a message may carry, and the longest text of one.
const MAX_HISTORY_TURNS: usize = 50;
const MAX_HISTORY_TEXT_CHARS: usize = 2_000;

/// answer-ingest's state: the flow's dependencies, conversation tokens when they are on, and who may
/// ask for one (the channel's backend by its key, a page by its origin).
pub struct IngestState {
    pub deps: IngestDeps,
    pub tokens: Option<PageTokens>,
    pub channel_key: CallerKey,
    pub allowed_origins: Vec<String>,
}

/// `POST /v1/conversations`: a token for a page's new conversation, bound to it by the reply to its
/// first message. Asked for by the channel's backend (its key) or by a page itself: a page holds no
/// secret, so it must come from one of `ALLOWED_ORIGINS`, and one address may mint only so many a
/// minute (an `Origin` header is easily forged outside a browser; the address quota is what bounds a
/// script).
pub async fn new_conversation(
    State(state): State<Arc<IngestState>>,
    SourceAddress(address): SourceAddress,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pages = state.tokens.as_ref().ok_or(ApiError::TokensOff)?;
    let from_backend = state.channel_key.admits(&headers);
    if !from_backend && headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::Unauthorized);
    }
    // Who asks is decided before what is asked: a caller that is neither the backend nor an allowed
    // page gets 401 or 403, whatever its body says.
    if !from_backend {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        if !state
            .allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
        {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    let asked: NewConversationBody = body.optional_json()?;
    let now = state.deps.clock.now();
    let identity = vouched_for(asked, from_backend, pages, now)?;
    if !from_backend {
        // Counted once the request is known to be good: bad input changes nothing.
        let key = format!("mint#{}", address_bucket(&address));
        within_quota(
            &*state.deps.store,
            &key,
            pages.mints_per_minute,
            |retry_after_secs| ApiError::TooManyConversations { retry_after_secs },
        )
        .await?;
    }
    issued(
        pages.keys.issue(identity.as_ref(), now),
        &state.deps.files.rules,
    )
}

/// Who the site vouches for: a backend's plain identity (it holds the key), or the identity a site
/// signed for its page; a page's unsigned identity is refused.
fn vouched_for(
    asked: NewConversationBody,
    from_backend: bool,
    pages: &PageTokens,
    now: i64,
) -> Result<Option<VerifiedIdentity>, ApiError> {
    match (asked.identity, asked.identity_token) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::InvalidBody(
            "send identity or identityToken, not both".into(),
        )),
        (Some(_), None) if !from_backend => Err(ApiError::InvalidBody(
            "a page's identity must be signed by the site's backend: send identityToken".into(),
        )),
        (Some(identity), None) => VerifiedIdentity::parse(
            &identity.external_id,
            identity.name.as_deref(),
            identity.email.as_deref(),
        )
        .map(Some)
        .map_err(|field| ApiError::InvalidBody(field.into())),
        (None, Some(signed)) => {
            let keys = pages
                .identities
                .as_ref()
                .ok_or(ApiError::IdentityNotVerified)?;
            keys.verify(&signed, now)
                .map(Some)
                .map_err(|err| match err {
                    IdentityError::Field(field) => ApiError::InvalidBody(field.into()),
                    IdentityError::Invalid => ApiError::IdentityNotVerified,
                })
        }
    }
}

/// A newly issued token as the routes that issue one answer it, with what files the conversation
/// may carry (`null`: none), so a page shows an attach button only where it works.
fn issued(
    signed: Result<(String, i64), crate::token::TokenError>,
    files: &crate::domain::files::FileRules,
) -> Result<Response, ApiError> {
    let (token, expires_at) = signed.map_err(|_| ApiError::TokensOff)?;
    let files = files
        .enabled()
        .then(|| json!({"types": files.types, "maxBytes": files.max_bytes}));
    let body = json!({
        "token": token,
        "expiresAt": crate::clock::rfc3339(expires_at),
        "files": files,
    });
    Ok((axum::http::StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewConversationBody {
    /// The logged-in customer, from the channel's backend (trusted: it holds the key).
    #[serde(default, deserialize_with = "object")]
    identity: Option<IdentityBody>,
    /// The customer as the site's backend signed it for its page (`IDENTITY_SECRET`).
    identity_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdentityBody {
    external_id: String,
    name: Option<String>,
    email: Option<String>,
}

/// `POST /v1/conversations/refresh`: a token's holder gets a new one for the same conversation (and
/// identity) before it expires; counted with the conversation's messages.
pub async fn refresh_conversation(
    State(state): State<Arc<IngestState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    // The channel key is no conversation token: nothing to refresh.
    let Caller::Conversation { token, keys } = caller else {
        return Err(ApiError::Unauthorized);
    };
    if let Some(session) = &token.session {
        record_session(session);
    }
    within_conversation_quota(&state, &token).await?;
    issued(
        keys.follow(&token, token.session.as_ref(), state.deps.clock.now()),
        &state.deps.files.rules,
    )
}

/// The address a mint quota counts: an IPv6 address by its /64, which one subscriber holds whole.
fn address_bucket(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        _ => address.to_owned(),
    }
}

/// One use of a page's quota; past it, the refusal `spent` builds. A store that cannot count lets the
/// use through, logged: our outage must not silence a page (the session gate chooses the same, rule 7).
async fn within_quota<S: QuotaStore + ?Sized>(
    store: &S,
    key: &str,
    limit: u32,
    spent: impl FnOnce(i64) -> ApiError,
) -> Result<(), ApiError> {
    match store.take_quota(key, limit, 60).await {
        Ok(Quota::Within) => Ok(()),
        Ok(Quota::Spent { retry_after_secs }) => Err(spent(retry_after_secs)),
        Err(err) => {
            tracing::warn!(error = %err, "quota could not be counted; let through");
            Ok(())
        }
    }
}

/// A token's holder may send only so many messages (and refreshes) a minute, counted per
/// conversation, or per token before its first message binds it.
async fn within_conversation_quota(
    state: &IngestState,
    token: &crate::token::ConversationToken,
) -> Result<(), ApiError> {
    let pages = state.tokens.as_ref().ok_or(ApiError::TokensOff)?;
    let key = match &token.session {
        Some(session) => format!("turns#s#{}", session.as_str()),
        None => format!("turns#t#{}", token.id),
    };
    within_quota(
        &*state.deps.store,
        &key,
        pages.messages_per_minute,
        |retry_after_secs| ApiError::TooManyMessages { retry_after_secs },
    )
    .await
}

pub async fn send_message(
    State(state): State<Arc<IngestState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let deps = &state.deps;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|value| IdempotencyKey::parse(value.to_str().unwrap_or_default()))
        .transpose()?;
    let mut message = validate(body.json()?)?;
    if let Some(id) = &message.session_id {
        record_session(id);
    }
    caller.may_use(message.session_id.as_ref())?;
    if let Caller::Conversation { token, .. } = &caller {
        within_conversation_quota(&state, token).await?;
        message.verified = token.identity.clone();
    }
    let Some(key) = idempotency_key else {
        return Ok(Json(process(deps, &caller, message).await?).into_response());
    };
    let fingerprint = fingerprint(&body.0);
    let scoped = match &caller {
        // Two pages' first messages must never share a key: each token has its own scope.
        Caller::Conversation { token, .. } if message.session_id.is_none() => {
            key.scoped_by(&token.id)
        }
        _ => key.scoped(message.session_id.as_ref()),
    };
    match deps.store.begin_request(&scoped, &fingerprint).await {
        Ok(IdempotencyBegin::Fresh) => {}
        Ok(IdempotencyBegin::InProgress) => return Err(ApiError::RequestInProgress),
        Ok(IdempotencyBegin::Replay {
            fingerprint: seen,
            reply,
        }) => {
            if seen != fingerprint {
                return Err(ApiError::IdempotencyKeyReused);
            }
            tracing::info!("idempotent replay");
            let stored: Value = serde_json::from_str(&reply).unwrap_or_default();
            let mut response = Json(stored).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        // Same choice as at the session gate (rule 7): without the store the message is still answered
        // rather than dropped; a retry during the outage may then be processed twice.
        Err(err) => {
            tracing::error!(error = %err, "idempotency key unreadable; processing without it");
            return Ok(Json(process(deps, &caller, message).await?).into_response());
        }
    }
    message.idempotency_key = Some(key.clone());
    match process(deps, &caller, message).await {
        Ok(reply) => {
            if let Err(err) = deps.store.finish_request(&scoped, &reply.to_string()).await {
                tracing::warn!(error = %err, "could not store the reply for replay");
            }
            Ok(Json(reply).into_response())
        }
        Err(err) => {
            // Free the key: the channel's retry must run again, not replay a failure.
            if let Err(release) = deps.store.abandon_request(&scoped).await {
                tracing::warn!(error = %release, "could not free the idempotency key");
            }
            Err(err)
        }
    }
}

async fn process(
    deps: &IngestDeps,
    caller: &Caller,
    message: IncomingMessage,
) -> Result<Value, ApiError> {
    if let (Some(choice), Some(session_id)) = (message.choice, &message.session_id) {
        // The answer to a question of the service's: neither the bot nor the agent reads it.
        let chosen = crate::flow::waiting::choose(deps, session_id, choice)
            .await
            .map_err(ApiError::Store)?;
        tracing::info!(choice = chosen.outcome.as_str(), "choice handled");
        return Ok(json!({
            "sessionId": session_id.as_str(),
            "handledBy": chosen.routed.handled_by().as_str(),
            "answers": [],
            "outputs": [],
            "choice": chosen.outcome.as_str(),
        }));
    }
    let new_conversation = message.session_id.is_none();
    let reply = ingest(deps, message).await?;
    if new_conversation {
        record_session(&reply.session_id);
    }
    let handled_by = reply.routed.handled_by().as_str();
    tracing::info!(handled_by, answers = reply.answers.len(), "message handled");
    let mut shown = json!({
        "sessionId": reply.session_id.as_str(),
        "handledBy": handled_by,
        // The texts alone, as before; `outputs` adds each answer's options and links.
        "answers": reply
            .answers
            .iter()
            .map(|answer| &answer.text)
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>(),
        "outputs": reply.answers,
    });
    if reply.routed == Routed::Queued {
        shown["queued"] = json!(true);
    }
    if let Some(message_id) = &reply.held {
        // On its way to the agent: the outbox says `delivered` (or `not_delivered`) with this id.
        shown["delivery"] = json!("on_its_way");
        shown["messageId"] = json!(message_id);
    }
    // The page's token follows its conversation: bound by the first message, and moved along when
    // CAIC started a new session (an expired one is replaced without notice).
    if let Caller::Conversation { token, keys } = caller {
        if token.session.as_ref() != Some(&reply.session_id) {
            let (token, expires_at) = keys
                .follow(token, Some(&reply.session_id), deps.clock.now())
                .map_err(|_| ApiError::TokensOff)?;
            shown["token"] = json!(token);
            shown["tokenExpiresAt"] = json!(crate::clock::rfc3339(expires_at));
        }
    }
    Ok(shown)
}

/// What tells a retry from another request that reuses the key: the body's SHA-256 (stable across
/// processes and versions, unlike std's hasher).
fn fingerprint(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

fn validate(body: MessageBody) -> Result<IncomingMessage, ApiError> {
    let session_id = body
        .session_id
        .as_deref()
        .map(SessionId::parse)
        .transpose()?;
    let upload = match body.attachments.as_slice() {
        [] => None,
        [one] => Some(parse_upload_id(&one.upload_id)?),
        _ => {
            return Err(ApiError::InvalidBody(
                "attachments may hold one file per message".into(),
            ))
        }
    };
    let text = body.text.trim();
    if text.is_empty() && upload.is_none() {
        return Err(ApiError::InvalidBody("text must not be empty".into()));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::InvalidBody(format!(
            "text must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let culture = non_blank(body.culture);
    if let Some(culture) = &culture {
        let well_formed = culture.len() <= 16
            && culture
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ApiError::InvalidBody(
                "culture must be a language tag such as en or nl-NL".into(),
            ));
        }
    }
    let end_user_url = non_blank(body.end_user_url)
        .map(|raw| page_url("endUserUrl", &raw))
        .transpose()?;
    let choice = match body.choice.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<WaitChoice>().map_err(|_| {
            ApiError::InvalidBody("choice must be keep_waiting or back_to_bot".into())
        })?),
    };
    if choice.is_some() && (session_id.is_none() || upload.is_some()) {
        return Err(ApiError::InvalidBody(
            "a choice answers a conversation's question: it needs sessionId, and carries no file"
                .into(),
        ));
    }
    Ok(IncomingMessage {
        session_id,
        text: text.to_owned(),
        culture,
        end_user_url,
        history: history(body.history)?,
        idempotency_key: None,
        verified: None,
        upload,
        choice,
    })
}

fn history(turns: Vec<HistoryTurn>) -> Result<Vec<Turn>, ApiError> {
    if turns.len() > MAX_HISTORY_TURNS {
        return Err(ApiError::InvalidBody(format!(
            "history must hold at most {MAX_HISTORY_TURNS} turns"
        )));
    }
    turns
        .into_iter()
        .map(|turn| {
            let from = turn.from.parse::<Speaker>().map_err(|_| {
                ApiError::InvalidBody("every history turn's from must be user or bot".into())
            })?;
            let text = turn.text.trim();
            if text.is_empty() || turn.text.chars().count() > MAX_HISTORY_TEXT_CHARS {
                return Err(ApiError::InvalidBody(format!(
                    "every history turn's text must be 1-{MAX_HISTORY_TEXT_CHARS} characters, not all blank"
                )));
            }
            Ok(Turn {
                from,
                text: text.to_owned(),
            })
        })
        .collect()
}

/// The longest page URL or referrer accepted: MSC routes on it, and it travels with every message.
pub(crate) const MAX_URL_BYTES: usize = 2_048;

/// An end user's page: an absolute http(s) URL with a host name, parsed (so no line break or control
/// character can ride along into the handover message or MSC's `Referrer`), in its serialised form.
/// Printable ASCII only, as a browser's `location.href` always is.
pub(crate) fn page_url(field: &str, raw: &str) -> Result<String, ApiError> {
    let refused = || {
        ApiError::InvalidBody(format!(
            "{field} must be an absolute http(s) URL with a host name and no user name, at most \
             {MAX_URL_BYTES} bytes of printable ASCII (no spaces)"
        ))
    };
    let printable = raw.bytes().all(|b| b.is_ascii_graphic());
    let http = raw.starts_with("http://") || raw.starts_with("https://");
    if raw.len() > MAX_URL_BYTES || !printable || !http {
        return Err(refused());
    }
    let url = url::Url::parse(raw).map_err(|_| refused())?;
    let named_host = url.domain().is_some_and(|host| {
        host.rsplit('.')
            .find(|label| !label.is_empty())
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()))
    });
    if !named_host || !url.username().is_empty() || url.password().is_some() {
        return Err(refused());
    }
    Ok(url.into())
}

/// A referrer for presence (a webstore name or a page URL): bounded, one line. Longer or with control
/// characters is refused rather than cut: MSC routes on the whole value.
pub(crate) fn referrer(field: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    // Checked before trimming: NEL (U+0085) is both a control character and white space.
    let control = raw
        .as_deref()
        .is_some_and(|v| v.chars().any(char::is_control));
    let Some(value) = non_blank(raw) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_URL_BYTES || control {
        return Err(ApiError::InvalidBody(format!(
            "{field} must be at most {MAX_URL_BYTES} characters, without control characters"
        )));
    }
    Ok(Some(value))
}

/// A trimmed value, or none when it is blank.
pub(crate) fn non_blank(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub async fn session_messages(
    State(state): State<Arc<IngestState>>,
    Extension(caller): Extension<Caller>,
    SessionIdParam(session_id): SessionIdParam,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let deps = &state.deps;
    record_session(&session_id);
    caller.may_use(Some(&session_id))?;
    let after = match query.ok().and_then(|Query(mut q)| q.remove("after")) {
        None => 0,
        Some(after) => cursor(&after)?,
    };
    let session = deps.store.get(&session_id).await.map_err(ApiError::Store)?;
    let listed = messages_since(session.as_ref(), after);
    let files = listed
        .iter()
        .map(|message| crate::files::shown(deps.files.store.as_ref(), message));
    let files = futures::future::join_all(files).await;
    let messages: Vec<Value> = listed
        .into_iter()
        .zip(files)
        .map(|(message, files)| {
            let mut shown = channel::body(&session_id, message, &files);
            if let Some(fields) = shown.as_object_mut() {
                fields.remove("sessionId");
            }
            shown
        })
        .collect();
    let who = handled_by(session.as_ref(), deps.clock.now());
    Ok(Json(
        json!({"messages": messages, "handledBy": who.as_str()}),
    ))
}

/// A whole number; one beyond every cursor there can be simply lists nothing.
fn cursor(after: &str) -> Result<u64, ApiError> {
    let digits = after.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidCursor);
    }
    Ok(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// `POST /v1/uploads`: a presigned `PUT` for one file for the agent, its type and size fixed. Only in
/// a conversation an agent has: the bot cannot read files, and the end user is told so before a
/// byte is sent.
pub async fn new_upload(
    State(state): State<Arc<IngestState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let deps = &state.deps;
    let asked: UploadBody = body.json()?;
    let session_id = SessionId::parse(&asked.session_id)?;
    record_session(&session_id);
    caller.may_use(Some(&session_id))?;
    let rules = &deps.files.rules;
    let content_type = asked.content_type.trim();
    rules
        .admits_declared(content_type, asked.size)
        .map_err(ApiError::FileRefused)?;
    let name = declared_name(&asked.name)
        .and_then(|name| name_for_type(&name, content_type))
        .map_err(ApiError::FileRefused)?;
    if let Caller::Conversation { token, .. } = &caller {
        within_conversation_quota(&state, token).await?;
    }
    let session = deps.store.get(&session_id).await.map_err(ApiError::Store)?;
    if handled_by(session.as_ref(), deps.clock.now()) != crate::flow::HandledBy::Agent {
        return Err(ApiError::FilesNeedAgent);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let link = deps
        .files
        .store
        .upload_url(
            &crate::files::upload_key(&session_id, &id),
            content_type,
            asked.size,
            crate::files::UPLOAD_LINK_TTL,
        )
        .await
        .map_err(ApiError::Files)?;
    let ttl = i64::try_from(crate::files::UPLOAD_LINK_TTL.as_secs()).unwrap_or(0);
    let headers: serde_json::Map<String, Value> = link
        .headers
        .into_iter()
        // The browser sets the length itself (and may not set it by hand); the URL signs it.
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let body = json!({
        "uploadId": upload_id(&id, &name),
        "url": link.url,
        "method": "PUT",
        "headers": headers,
        "expiresAt": crate::clock::rfc3339(deps.clock.now().saturating_add(ttl)),
    });
    Ok((axum::http::StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UploadBody {
    session_id: String,
    name: String,
    #[serde(rename = "type")]
    content_type: String,
    #[serde(deserialize_with = "whole_number")]
    size: u64,
}

/// JSON has one number type: `387785.0` is the integer the schema asks for, and a client that
/// writes it so (a float-only runtime) is not wrong. A fraction or a negative is.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("size {number} is not a whole number")))
}

/// An upload's id as the page sends it back with its message: the upload's own id and the name it
/// declared (which a message cannot change: a name goes through the upload's checks once).
fn upload_id(id: &str, name: &str) -> String {
    use base64::Engine;
    let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes());
    format!("{id}.{name}")
}

/// The longest name part of an upload id: a name of
/// [`crate::domain::files::FILE_NAME_LIMIT_CHARS`] characters of up to 4
/// bytes each is 534 characters of Base64 (the OpenAPI document's pattern says 540).
const MAX_UPLOAD_NAME_CHARS: usize = 540;

fn parse_upload_id(raw: &str) -> Result<crate::flow::Upload, ApiError> {
    use base64::Engine;
    let refused = || {
        ApiError::InvalidBody("attachments[0].uploadId is not an id from POST /v1/uploads".into())
    };
    let (id, name) = raw.split_once('.').ok_or_else(refused)?;
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if id.len() != 32
        || !hex(id)
        || name.is_empty()
        || name.len() > MAX_UPLOAD_NAME_CHARS
        || !base64url(name)
    {
        return Err(refused());
    }
    // Shaped like an id but not one the service issued: there is no such upload.
    let name = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(name)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|name| declared_name(&name).ok())
        .ok_or(ApiError::UploadNotFound)?;
    Ok(crate::flow::Upload {
        id: id.to_owned(),
        name,
    })
}
