//! `POST /v1/presence` (CAIC's presence-check webhook) and `GET /v1/presence` (widgets).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::messages::non_blank;
use super::request::{object, Body};
use super::ApiError;
use crate::domain::{lenient_string, AgentStatus};
use crate::flow::{agent_status, presence_referrer};
use crate::msc::Presence;

pub struct PresenceDeps {
    pub presence: Arc<dyn Presence>,
    pub default_channel: String,
}

#[derive(Debug, Deserialize)]
struct WebhookBody {
    url: Option<String>,
    channel: Option<String>,
    #[serde(default, deserialize_with = "object")]
    data: Option<WebhookData>,
}

#[derive(Debug, Deserialize)]
struct WebhookData {
    context: Option<Value>,
}

/// For widgets: `?channel=&referrer=`.
pub async fn agent_status_query(
    State(deps): State<Arc<PresenceDeps>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Json<Value> {
    // An unreadable query names no channel or referrer: the defaults apply.
    let mut params = query.map(|Query(params)| params).unwrap_or_default();
    let channel =
        non_blank(params.remove("channel")).unwrap_or_else(|| deps.default_channel.clone());
    let referrer = non_blank(params.remove("referrer"));
    let status = agent_status(deps.presence.as_ref(), &channel, referrer.as_deref()).await;
    Json(json!({"agentStatus": status.as_str()}))
}

/// CAIC's presence-check webhook: the webstore comes as `data.context`.
pub async fn presence_webhook(
    State(deps): State<Arc<PresenceDeps>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body: WebhookBody = body.json()?;
    let webstore = body
        .data
        .and_then(|d| d.context)
        .as_ref()
        .and_then(lenient_string);
    let url = non_blank(body.url);
    let channel = non_blank(body.channel).unwrap_or_else(|| deps.default_channel.clone());
    let referrer = presence_referrer(webstore.as_deref(), url.as_deref());
    let available =
        agent_status(deps.presence.as_ref(), &channel, referrer).await == AgentStatus::Online;
    Ok(Json(json!({"agentAvailable": available})))
}
