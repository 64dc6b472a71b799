//! `POST /v1/prechat/complete`: CAIC's transactional-dialog end-slot webhook.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::{
    checked_session_id, json_body, json_response, method_allowed, no_route, request_id, respond,
    route_owner, ApiError, BearerKey, Function, Response,
};
use crate::clock::Clock;
use crate::domain::IntakeAnswer;
use crate::flow::hand_over;
use crate::msc::MscMessages;
use crate::store::HandoverStore;

pub struct Deps {
    pub store: Arc<dyn HandoverStore>,
    pub msc: Arc<dyn MscMessages>,
    pub clock: Arc<dyn Clock>,
    pub webhook_key: BearerKey,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndSlotBody {
    session_id: String,
    #[serde(default, deserialize_with = "super::objects")]
    slots: Vec<Slot>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Slot {
    name: String,
    #[serde(default)]
    value: Value,
}

pub(crate) fn intake_from_slots(slots: Vec<Slot>) -> Result<Vec<IntakeAnswer>, ApiError> {
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

pub async fn handle(deps: &Deps, req: Request) -> Response {
    let span = tracing::info_span!("prechat_complete", request_id = %request_id(&req), session_id = tracing::field::Empty);
    respond(handle_inner(deps, req).instrument(span).await)
}

async fn handle_inner(deps: &Deps, req: Request) -> Result<Response, ApiError> {
    match route_owner(req.uri().path()) {
        Some((Function::PrechatComplete, _)) => {}
        _ => return Err(no_route(&req)),
    }
    method_allowed(&req, &[Method::POST])?;
    deps.webhook_key.authorize(&req)?;
    let body: EndSlotBody = json_body(&req)?;
    let session_id = checked_session_id(&body.session_id)?;
    tracing::Span::current().record("session_id", session_id.as_str());
    let intake = intake_from_slots(body.slots)?;
    // CAIC reads only `success`: every outcome of the flow, failures included, is a 200 with it, so the
    // dialog shows its error message and the user stays with the bot.
    let success = match hand_over(
        deps.store.as_ref(),
        deps.msc.as_ref(),
        deps.clock.as_ref(),
        &session_id,
        &intake,
    )
    .await
    {
        Ok(outcome) => {
            tracing::info!(outcome = ?outcome_name(&outcome), "prechat completion handled");
            outcome.handed_over()
        }
        Err(err) => {
            tracing::error!(error = %err, "prechat completion failed on the store");
            false
        }
    };
    Ok(json_response(StatusCode::OK, &json!({"success": success})))
}

pub(crate) fn outcome_name(outcome: &crate::flow::HandoverOutcome) -> &'static str {
    use crate::flow::HandoverOutcome::*;
    match outcome {
        HandedOver(_) => "handed_over",
        AlreadyHandedOver(_) => "already_handed_over",
        InProgress => "in_progress",
        NoIntake => "no_intake",
        Refused(_) => "msc_refused",
    }
}
