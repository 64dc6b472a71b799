//! The handover's two doors, `POST /v1/prechat/complete` (CAIC's end-slot webhook, prechat-complete)
//! and `POST /v1/sessions/{sessionId}/handover` (operators and retry tools), both running
//! `flow::hand_over`; and operator-handover's other routes: the operator view
//! (`GET /v1/sessions/{sessionId}`) and the release (`POST /v1/sessions/{sessionId}/release`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{objects, record_session, Body, SessionIdParam};
use super::ApiError;
use crate::channel::ChannelPush;
use crate::clock::rfc3339;
use crate::clock::Clock;
use crate::domain::{EndReason, IntakeAnswer, SessionId};
use crate::flow::agent::end_handover;
use crate::flow::{hand_over, HandoverOutcome};
use crate::msc::MscMessages;
use crate::store::SessionStore;

pub struct HandoverDeps {
    pub store: Arc<dyn SessionStore>,
    pub msc: Arc<dyn MscMessages>,
    /// Where what waited behind the handover is held for MSC.
    pub outbound: Arc<dyn crate::outbound::Outbound>,
    pub clock: Arc<dyn Clock>,
    /// Told when an operator releases a handover.
    pub channel: Arc<dyn ChannelPush>,
    /// The wait for an agent, started when the handover is made.
    pub waits: crate::waits::Waits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndSlotBody {
    session_id: String,
    #[serde(default, deserialize_with = "objects")]
    slots: Vec<Slot>,
}

#[derive(Debug, Default, Deserialize)]
struct OperatorBody {
    #[serde(default, deserialize_with = "objects")]
    slots: Vec<Slot>,
}

#[derive(Debug, Deserialize)]
struct Slot {
    name: String,
    #[serde(default)]
    value: Value,
}

fn intake_from_slots(slots: Vec<Slot>) -> Result<Vec<IntakeAnswer>, ApiError> {
    if slots.len() > 50 {
        return Err(ApiError::InvalidBody("at most 50 slots".into()));
    }
    slots
        .into_iter()
        .map(|slot| {
            let name = slot.name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 128 {
                return Err(ApiError::InvalidBody(
                    "every slot needs a name of 1-128 characters, not all blank".into(),
                ));
            }
            let value = match slot.value {
                Value::Null => String::new(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            Ok(IntakeAnswer { name, value })
        })
        .collect()
}

async fn run_handover(
    deps: &HandoverDeps,
    session_id: &SessionId,
    intake: &[IntakeAnswer],
) -> Result<HandoverOutcome, crate::store::StoreError> {
    let outcome = hand_over(
        deps.store.as_ref(),
        deps.msc.as_ref(),
        deps.outbound.as_ref(),
        deps.clock.as_ref(),
        &deps.waits,
        session_id,
        intake,
    )
    .await?;
    tracing::info!(outcome = outcome.name(), "handover handled");
    Ok(outcome)
}

pub async fn prechat_complete(
    State(deps): State<Arc<HandoverDeps>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body: EndSlotBody = body.json()?;
    let session_id = SessionId::parse(&body.session_id)?;
    record_session(&session_id);
    let intake = intake_from_slots(body.slots)?;
    // CAIC reads only `success`: every outcome of the flow, failures included, is a 200 with it, so the
    // dialog shows its error message and the user stays with the bot.
    let success = match run_handover(&deps, &session_id, &intake).await {
        Ok(outcome) => outcome.handed_over(),
        Err(err) => {
            tracing::error!(error = %err, "prechat completion failed on the store");
            false
        }
    };
    Ok(Json(json!({"success": success})))
}

/// `GET /v1/sessions/{sessionId}`: where a conversation stands and how it got there.
pub async fn session_view(
    State(deps): State<Arc<HandoverDeps>>,
    SessionIdParam(session_id): SessionIdParam,
) -> Result<Json<Value>, ApiError> {
    record_session(&session_id);
    let now = deps.clock.now();
    let Some(session) = deps.store.get(&session_id).await.map_err(ApiError::Store)? else {
        return Err(ApiError::NoSession);
    };
    let handled_by = crate::flow::agent::handled_by(Some(&session), now).as_str();
    let agent = &session.agent;
    let history: Vec<Value> = session
        .history
        .iter()
        .map(|event| {
            let mut shown = json!({"at": rfc3339(event.at), "event": event.event});
            if let Some(detail) = &event.detail {
                shown["detail"] = json!(detail);
            }
            shown
        })
        .collect();
    let mut view = json!({
        "sessionId": session_id.as_str(),
        "state": session.state.as_str(),
        "handledBy": handled_by,
        "expiresAt": rfc3339(session.expires_at),
        "agentStatus": session.agent_status.as_str(),
        "counts": {
            "agentReplies": agent.replies,
            "outbox": agent.outbox.len(),
            "queued": session.queued.len(),
            "noAgentQuestions": agent.wait_asks,
            "keptWaiting": agent.wait_kept,
        },
        "history": history,
    });
    let optional = [
        ("skill", session.skill.as_deref()),
        ("webstore", session.webstore.as_deref()),
        ("channel", session.channel.as_deref()),
        ("endReason", agent.end_reason.map(|r| r.as_str())),
        ("agentName", agent.agent_name.as_deref()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            view[name] = json!(value);
        }
    }
    if let Some(joined) = agent.agent_joined_at {
        view["agentJoinedAt"] = json!(rfc3339(joined));
    }
    Ok(Json(view))
}

pub async fn operator_handover(
    State(deps): State<Arc<HandoverDeps>>,
    SessionIdParam(session_id): SessionIdParam,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    record_session(&session_id);
    let body: OperatorBody = body.optional_json()?;
    let intake = intake_from_slots(body.slots)?;
    let outcome = run_handover(&deps, &session_id, &intake)
        .await
        .map_err(ApiError::Store)?;
    let status = outcome.name();
    match outcome {
        HandoverOutcome::HandedOver(s) | HandoverOutcome::AlreadyHandedOver(s) => Ok(Json(json!({
            "sessionId": s.session_id,
            "status": status,
            "lockedUntil": crate::clock::rfc3339(s.expires_at),
        }))),
        HandoverOutcome::InProgress => Err(ApiError::HandoverInProgress),
        HandoverOutcome::NoIntake => Err(ApiError::NoIntake),
        HandoverOutcome::Refused(refusal) => Err(ApiError::Msc(refusal)),
    }
}

pub async fn release(
    State(deps): State<Arc<HandoverDeps>>,
    SessionIdParam(session_id): SessionIdParam,
) -> Result<Json<Value>, ApiError> {
    record_session(&session_id);
    let ended = end_handover(
        deps.store.as_ref(),
        deps.channel.as_ref(),
        &session_id,
        EndReason::OperatorReleased,
    )
    .await
    .map_err(ApiError::Store)?;
    match ended {
        Some(_) => Ok(Json(
            json!({"sessionId": session_id.as_str(), "status": "released"}),
        )),
        None => Err(ApiError::NotHandedOver),
    }
}
