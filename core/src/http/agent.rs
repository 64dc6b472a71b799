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
use crate::flow::agent::{
    agent_reply, conversation_event, keep_agent_files, AgentDeps, AgentFile, EventOutcome,
    KeptFiles, RefusedFile,
};

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
    let attachments = attachments(message.attachments)?;
    let text = message.content.unwrap_or_default();
    if text.trim().is_empty() && attachments.is_empty() {
        tracing::info!("agent message without text or attachment; acknowledged, not delivered");
        return Ok(Json(json!({"status": "empty"})));
    }
    let (text, cut) = text::shortened(&text, AGENT_TEXT_LIMIT_CHARS, SHORTENED_MARKER);
    if cut {
        tracing::warn!(
            limit = AGENT_TEXT_LIMIT_CHARS,
            "agent reply longer than the limit; delivered shortened"
        );
    }
    let is_private = lenient_bool(&message.is_private);
    let kept = if is_private {
        // A private note is never shown to the end user: neither are its files.
        KeptFiles::default()
    } else {
        keep_agent_files(&deps, &session_id, &message_id, attachments)
            .await
            .map_err(ApiError::Files)?
    };
    let now = deps.clock.now();
    let reply = AgentReply {
        message_id,
        conversation_guid: conversation_id(message.conversation_guid.as_ref()),
        agent_name: None,
        text: with_refusals(text, &kept.refused),
        sent_at: epoch_secs(message.sent_date_time.as_deref(), now),
        files: kept.files,
    };
    let outcome = agent_reply(&deps, &session_id, reply, is_private)
        .await
        .map_err(ApiError::Store)?;
    tracing::info!(
        outcome = outcome.as_str(),
        files_refused = kept.refused.len(),
        "agent reply handled"
    );
    let mut body = json!({"status": outcome.as_str()});
    if !kept.refused.is_empty() {
        body["refusedFiles"] = json!(kept
            .refused
            .iter()
            .map(|r| json!({"name": r.name, "reason": r.reason.reason(), "message": r.reason.to_string()}))
            .collect::<Vec<_>>());
    }
    Ok(Json(body))
}

/// The most files one agent reply may carry (their bytes are bounded by the route's body limit).
const MAX_AGENT_FILES: usize = 5;

/// MSC's `Attachments`, decoded: each `{FileName, Base64Content}` as a name and its bytes (`Err` when
/// they are not Base64, refused with the rest).
fn attachments(raw: Option<Vec<Value>>) -> Result<Vec<AgentFile>, ApiError> {
    use base64::Engine;
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_AGENT_FILES {
        return Err(ApiError::InvalidBody(format!(
            "Attachments must hold at most {MAX_AGENT_FILES} files"
        )));
    }
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    raw.iter()
        .map(|attachment| {
            let Some(fields) = attachment.as_object() else {
                return Err(ApiError::InvalidBody(
                    "every attachment must be an object with FileName and Base64Content".into(),
                ));
            };
            // The schema allows a string or null; anything else is a body we do not understand.
            for field in ["FileName", "Base64Content"] {
                if !matches!(
                    fields.get(field),
                    None | Some(Value::Null | Value::String(_))
                ) {
                    return Err(ApiError::InvalidBody(format!(
                        "an attachment's {field} must be a string"
                    )));
                }
            }
            let name = fields
                .get("FileName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let content: String = fields
                .get("Base64Content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            Ok(AgentFile {
                name,
                bytes: lenient.decode(content).map_err(|_| ()),
            })
        })
        .collect()
}

/// What the end user reads of files that did not come through: the agent's text, then a line per
/// file naming it and why.
fn with_refusals(text: String, refused: &[RefusedFile]) -> String {
    let mut text = text;
    for file in refused {
        if !text.trim().is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!(
            "(Our colleague sent a file that cannot be shown here: \"{}\", {}.)",
            file.name, file.reason
        ));
    }
    text
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
