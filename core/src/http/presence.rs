//! `POST /v1/presence` (CAIC's presence-check webhook) and `GET /v1/presence` (widgets).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::messages::{non_blank, referrer};
use super::request::{object, Body};
use super::ApiError;
use crate::clock::rfc3339;
use crate::clock::Clock;
use crate::domain::lenient_string;
use crate::flow::{availability, presence_referrer, Availability};
use crate::hours::BusinessHours;
use crate::msc::Presence;

pub struct PresenceDeps {
    pub presence: Arc<dyn Presence>,
    pub hours: Arc<BusinessHours>,
    pub clock: Arc<dyn Clock>,
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
) -> Result<Json<Value>, ApiError> {
    // An unreadable query names no channel or referrer: the defaults apply.
    let mut params = query.map(|Query(params)| params).unwrap_or_default();
    let channel =
        non_blank(params.remove("channel")).unwrap_or_else(|| deps.default_channel.clone());
    let referrer = referrer("referrer", params.remove("referrer"))?;
    let skill = non_blank(params.remove("skill"));
    let now = deps.clock.now();
    let available = availability(
        deps.presence.as_ref(),
        &deps.hours,
        &channel,
        skill.as_deref(),
        referrer.as_deref(),
        now,
    )
    .await;
    let mut body = json!({"agentStatus": available.agent_status().as_str()});
    if let Availability::Closed { opens_at } = available {
        body["reason"] = json!("closed");
        if let Some(opens_at) = opens_at {
            body["opensAt"] = json!(rfc3339(opens_at));
        }
    }
    Ok(Json(body))
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
    let webstore = referrer("data.context", webstore)?;
    let url = referrer("url", body.url)?;
    let channel = non_blank(body.channel).unwrap_or_else(|| deps.default_channel.clone());
    let referrer = presence_referrer(webstore.as_deref(), url.as_deref());
    let available = availability(
        deps.presence.as_ref(),
        &deps.hours,
        &channel,
        None,
        referrer,
        deps.clock.now(),
    )
    .await;
    let available = matches!(available, Availability::Online { .. });
    Ok(Json(json!({"agentAvailable": available})))
}
