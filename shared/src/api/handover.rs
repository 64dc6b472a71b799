//! `POST /v1/sessions/{sessionId}/handover`: the idempotent handover, for operators and retries.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::prechat_complete::{intake_from_slots, outcome_name, Slot};
use super::{
    checked_session_id, json_response, method_allowed, no_route, optional_json_body, request_id,
    respond, route_owner, ApiError, BearerKey, Function, Response,
};
use crate::clock::Clock;
use crate::flow::{hand_over, HandoverOutcome};
use crate::msc::{MscError, MscMessages};
use crate::store::HandoverStore;

pub struct Deps {
    pub store: Arc<dyn HandoverStore>,
    pub msc: Arc<dyn MscMessages>,
    pub clock: Arc<dyn Clock>,
    pub operator_key: BearerKey,
}

#[derive(Debug, Default, Deserialize)]
struct HandoverBody {
    #[serde(default, deserialize_with = "super::objects")]
    slots: Vec<Slot>,
}

pub async fn handle(deps: &Deps, req: Request) -> Response {
    let span = tracing::info_span!("handover", request_id = %request_id(&req), session_id = tracing::field::Empty);
    respond(handle_inner(deps, req).instrument(span).await)
}

async fn handle_inner(deps: &Deps, req: Request) -> Result<Response, ApiError> {
    let session_param = match route_owner(req.uri().path()) {
        Some((Function::Handover, param)) => param.unwrap_or_default(),
        _ => return Err(no_route(&req)),
    };
    method_allowed(&req, &[Method::POST])?;
    deps.operator_key.authorize(&req)?;
    let session_id = checked_session_id(&session_param)?;
    tracing::Span::current().record("session_id", session_id.as_str());
    let body: HandoverBody = optional_json_body(&req)?;
    let intake = intake_from_slots(body.slots)?;
    let outcome = hand_over(
        deps.store.as_ref(),
        deps.msc.as_ref(),
        deps.clock.as_ref(),
        &session_id,
        &intake,
    )
    .await
    .map_err(ApiError::Store)?;
    let name = outcome_name(&outcome);
    tracing::info!(outcome = name, "handover handled");
    match outcome {
        HandoverOutcome::HandedOver(s) | HandoverOutcome::AlreadyHandedOver(s) => {
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "sessionId": s.session_id,
                    "status": name,
                    "lockedUntil": crate::msc::rfc3339(s.expires_at),
                }),
            ))
        }
        HandoverOutcome::InProgress => Err(ApiError::HandoverInProgress),
        HandoverOutcome::NoIntake => Err(ApiError::NoIntake),
        HandoverOutcome::Refused(reason) => Err(ApiError::Msc(MscError::Transport(reason))),
    }
}
