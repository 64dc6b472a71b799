//! agent-events' routes: MSC's webhooks (`POST /v1/msc/messages`, `POST /v1/msc/events`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{object, record_session, Body};
use super::ApiError;
use crate::domain::{
    lenient_bool, lenient_string, text, AgentReply, SessionId, AGENT_NAME_LIMIT_CHARS,
    AGENT_TEXT_LIMIT_CHARS, SHORTENED_MARKER,
};
use crate::flow::agent::{agent_reply, conversation_event, AgentDeps, EventOutcome};

const MAX_MESSAGE_ID_CHARS: usize = 256;
/// MSC's GUIDs are 36 characters; anything much longer is not one (and could not be a DynamoDB key).
const MAX_CONVERSATION_ID_BYTES: usize = 128;

/// MSC's conversation id, if it looks like one.
fn conversation_id(value: Option<&Value>) -> Option<String> {
    let id = value.and_then(lenient_string)?;
    if id.len() > MAX_CONVERSATION_ID_BYTES {
        tracing::warn!("MSC sent a conversation id too long to be one; ignored");
        return None;
    }
    Some(id)
}

/// An agent's reply as MSC posts it: the Custom Channel API's shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MscMessage {
    conversation_external_identifier: String,
    message_external_identifier: String,
    conversation_guid: Option<Value>,
    content: Option<String>,
    #[serde(default)]
    is_private: Value,
    sent_date_time: Option<String>,
    #[serde(default)]
    attachments: Option<Vec<Value>>,
}

/// One of MSC's conversation events (its CDP webhook).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MscEvent {
    name: String,
    #[serde(default, deserialize_with = "object")]
    payload: Option<EventPayload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventPayload {
    conversation_id: Option<Value>,
    agent_name: Option<Value>,
    event_utc_date_time: Option<String>,
}

/// Epoch seconds of one of MSC's dates (RFC 3339). Its format is not documented beyond that, so a date
/// that cannot be read is the arrival time rather than a reason to refuse the message.
fn epoch_secs(value: Option<&str>, now: i64) -> i64 {
    let parsed = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::parse::<jiff::Timestamp>);
    match parsed {
        Some(Ok(time)) => time.as_second(),
        Some(Err(_)) => {
            tracing::warn!("MSC sent a date that is not RFC 3339; the arrival time is used");
            now
        }
        None => now,
    }
}

pub async fn msc_message(
    State(deps): State<Arc<AgentDeps>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let message: MscMessage = body.json()?;
    let session_id = SessionId::parse(&message.conversation_external_identifier)?;
    record_session(&session_id);
    let message_id = message.message_external_identifier.trim().to_owned();
    let too_long = message.message_external_identifier.chars().count() > MAX_MESSAGE_ID_CHARS;
    if message_id.is_empty() || too_long {
        return Err(ApiError::InvalidBody(format!(
            "MessageExternalIdentifier must be 1-{MAX_MESSAGE_ID_CHARS} characters"
        )));
    }
    let mut text = message.content.unwrap_or_default();
    if text.trim().is_empty() {
        if message.attachments.is_none_or(|a| a.is_empty()) {
            tracing::info!("agent message without text or attachment; acknowledged, not delivered");
            return Ok(Json(json!({"status": "empty"})));
        }
        // The attachment itself is MSC's to show; the channel learns that one was sent.
        text = "(The agent sent an attachment.)".to_owned();
    }
    let (text, cut) = text::shortened(&text, AGENT_TEXT_LIMIT_CHARS, SHORTENED_MARKER);
    if cut {
        tracing::warn!(
            limit = AGENT_TEXT_LIMIT_CHARS,
            "agent reply longer than the limit; delivered shortened"
        );
    }
    let now = deps.clock.now();
    let reply = AgentReply {
        message_id,
        conversation_guid: conversation_id(message.conversation_guid.as_ref()),
        agent_name: None,
        text,
        sent_at: epoch_secs(message.sent_date_time.as_deref(), now),
    };
    let outcome = agent_reply(&deps, &session_id, reply, lenient_bool(&message.is_private))
        .await
        .map_err(ApiError::Store)?;
    tracing::info!(outcome = outcome.as_str(), "agent reply handled");
    Ok(Json(json!({"status": outcome.as_str()})))
}

pub async fn msc_event(
    State(deps): State<Arc<AgentDeps>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let event: MscEvent = body.json()?;
    let payload = event.payload.unwrap_or_default();
    let now = deps.clock.now();
    let at = epoch_secs(payload.event_utc_date_time.as_deref(), now);
    let conversation = conversation_id(payload.conversation_id.as_ref());
    let agent_name = payload
        .agent_name
        .as_ref()
        .and_then(lenient_string)
        .and_then(|name| text::clean_name(&name, AGENT_NAME_LIMIT_CHARS));
    let name = event.name.trim();
    let outcome = conversation_event(&deps, name, conversation.as_deref(), agent_name, at)
        .await
        .map_err(ApiError::Store)?;
    let body = match outcome {
        EventOutcome::Ended => json!({"status": "ended"}),
        EventOutcome::AgentJoined => json!({"status": "agent_joined"}),
        EventOutcome::Ignored(reason) => json!({"status": "ignored", "reason": reason}),
    };
    // Only the names the service knows are logged: the name is MSC's text, and a line break in it
    // would forge a log line.
    let logged = match name {
        "ConversationArchived" | "ConversationStarted" => name,
        _ => "other",
    };
    tracing::info!(event = logged, status = %body["status"], "conversation event handled");
    Ok(Json(body))
}
