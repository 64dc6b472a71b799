//! `POST /v1/messages`: one end-user turn.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::{
    checked_session_id, json_body, json_response, method_allowed, no_route, request_id, respond,
    route_owner, ApiError, BearerKey, Function, Response,
};
use crate::flow::{ingest, IncomingMessage, IngestDeps};
use crate::store::IdempotencyBegin;

const MAX_TEXT_CHARS: usize = 4_096;

pub struct Deps {
    pub flow: IngestDeps,
    pub channel_key: BearerKey,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageBody {
    session_id: Option<String>,
    text: String,
    culture: Option<String>,
    end_user_url: Option<String>,
    #[serde(default, deserialize_with = "super::object")]
    end_user: Option<EndUser>,
}

#[derive(Debug, Deserialize)]
struct EndUser {
    name: Option<String>,
    // Accepted for the channel's convenience; not stored and not sent anywhere.
    #[allow(dead_code)]
    email: Option<String>,
}

pub async fn handle(deps: &Deps, req: Request) -> Response {
    let span = tracing::info_span!("answer_ingest", request_id = %request_id(&req), session_id = tracing::field::Empty);
    respond(handle_inner(deps, req).instrument(span).await)
}

async fn handle_inner(deps: &Deps, req: Request) -> Result<Response, ApiError> {
    match route_owner(req.uri().path()) {
        Some((Function::AnswerIngest, _)) => {}
        _ => return Err(no_route(&req)),
    }
    method_allowed(&req, &[Method::POST])?;
    deps.channel_key.authorize(&req)?;
    let idempotency_key = idempotency_key(&req)?;
    let body: MessageBody = json_body(&req)?;
    let mut message = validate(body)?;
    if let Some(id) = &message.session_id {
        tracing::Span::current().record("session_id", id.as_str());
    }
    let Some(key) = idempotency_key else {
        return process(deps, message)
            .await
            .map(|reply| json_response(StatusCode::OK, &reply));
    };
    let fingerprint = fingerprint(super::body_bytes(&req)?);
    match deps.flow.store.begin_request(&key, &fingerprint).await {
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
            let stored = serde_json::from_str(&reply).unwrap_or_default();
            let mut response = json_response(StatusCode::OK, &stored);
            response.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
        // Same choice as at the session gate (rule 7): without the store the message is still answered
        // rather than dropped; a retry during the outage may then be processed twice.
        Err(err) => {
            tracing::error!(error = %err, "idempotency key unreadable; processing without it");
            return process(deps, message)
                .await
                .map(|reply| json_response(StatusCode::OK, &reply));
        }
    }
    message.idempotency_key = Some(key.clone());
    match process(deps, message).await {
        Ok(reply) => {
            if let Err(err) = deps
                .flow
                .store
                .finish_request(&key, &reply.to_string())
                .await
            {
                tracing::warn!(error = %err, "could not store the reply for replay");
            }
            Ok(json_response(StatusCode::OK, &reply))
        }
        Err(err) => {
            // Free the key: the channel's retry must run again, not replay a failure.
            if let Err(release) = deps.flow.store.abandon_request(&key).await {
                tracing::warn!(error = %release, "could not free the idempotency key");
            }
            Err(err)
        }
    }
}

async fn process(deps: &Deps, message: IncomingMessage) -> Result<serde_json::Value, ApiError> {
    let new_conversation = message.session_id.is_none();
    let reply = ingest(&deps.flow, message).await?;
    if new_conversation {
        tracing::Span::current().record("session_id", reply.session_id.as_str());
    }
    tracing::info!(
        handled_by = reply.handled_by.as_str(),
        answers = reply.answers.len(),
        "message handled"
    );
    Ok(json!({
        "sessionId": reply.session_id,
        "handledBy": reply.handled_by.as_str(),
        "answers": reply.answers,
    }))
}

fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey)?
        .trim();
    let well_formed = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if well_formed {
        Ok(Some(key.to_owned()))
    } else {
        Err(ApiError::InvalidIdempotencyKey)
    }
}

/// FNV-1a: stable across processes and versions (unlike std's hasher), enough to tell a retry from
/// another request that reuses the key.
fn fingerprint(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn validate(body: MessageBody) -> Result<IncomingMessage, ApiError> {
    let session_id = body
        .session_id
        .as_deref()
        .map(checked_session_id)
        .transpose()?;
    let text = body.text.trim();
    if text.is_empty() {
        return Err(ApiError::InvalidBody("text must not be empty".into()));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::InvalidBody(format!(
            "text must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let culture = body
        .culture
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
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
    let end_user_url = body
        .end_user_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    if let Some(url) = &end_user_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2_048 {
            return Err(ApiError::InvalidBody(
                "endUserUrl must be an http(s) URL of at most 2048 characters".into(),
            ));
        }
    }
    Ok(IncomingMessage {
        session_id,
        text: text.to_owned(),
        culture,
        end_user_url,
        end_user_name: body
            .end_user
            .and_then(|u| u.name)
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        idempotency_key: None,
    })
}

impl Deps {
    pub fn new(flow: IngestDeps, channel_key: BearerKey) -> Arc<Self> {
        Arc::new(Self { flow, channel_key })
    }
}
