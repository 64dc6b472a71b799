//! `POST /v1/presence` (CAIC's presence-check webhook) and `GET /v1/presence` (widgets).

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::{
    json_body, json_response, method_allowed, no_route, query, request_id, respond, route_owner,
    ApiError, BearerKey, Function, Response,
};
use crate::flow::{agent_status, presence_referrer};
use crate::msc::Presence;

pub struct Deps {
    pub presence: Arc<dyn Presence>,
    pub default_channel: String,
    pub channel_key: BearerKey,
    pub webhook_key: BearerKey,
}

#[derive(Debug, Deserialize)]
struct WebhookBody {
    url: Option<String>,
    channel: Option<String>,
    #[serde(default, deserialize_with = "super::object")]
    data: Option<WebhookData>,
}

#[derive(Debug, Deserialize)]
struct WebhookData {
    context: Option<Value>,
}

pub async fn handle(deps: &Deps, req: Request) -> Response {
    let span = tracing::info_span!("presence_check", request_id = %request_id(&req));
    respond(handle_inner(deps, req).instrument(span).await)
}

async fn handle_inner(deps: &Deps, req: Request) -> Result<Response, ApiError> {
    match route_owner(req.uri().path()) {
        Some((Function::PresenceCheck, _)) => {}
        _ => return Err(no_route(&req)),
    }
    method_allowed(&req, &[Method::POST, Method::GET])?;
    if req.method() == Method::GET {
        deps.channel_key.authorize(&req)?;
        let params = query(&req);
        let channel = non_empty(params.get("channel").cloned())
            .unwrap_or_else(|| deps.default_channel.clone());
        let referrer = non_empty(params.get("referrer").cloned());
        let status = agent_status(deps.presence.as_ref(), &channel, referrer.as_deref()).await;
        return Ok(json_response(
            StatusCode::OK,
            &json!({"agentStatus": status.as_str()}),
        ));
    }
    deps.webhook_key.authorize(&req)?;
    let body: WebhookBody = json_body(&req)?;
    let webstore = body
        .data
        .and_then(|d| d.context)
        .as_ref()
        .and_then(crate::domain::lenient_string);
    let url = non_empty(body.url);
    let channel = non_empty(body.channel).unwrap_or_else(|| deps.default_channel.clone());
    let referrer = presence_referrer(webstore.as_deref(), url.as_deref());
    let available = agent_status(deps.presence.as_ref(), &channel, referrer).await
        == crate::domain::AgentStatus::Online;
    Ok(json_response(
        StatusCode::OK,
        &json!({"agentAvailable": available}),
    ))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
