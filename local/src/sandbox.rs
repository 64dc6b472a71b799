//! A development sandbox standing in for CAIC and MSC when no account is configured, mounted under
//! `/sandbox/`. The service's real HTTP clients talk to it exactly as they would to CM.com; only the
//! peers are fake.
//!
//! - `GET /sandbox/caic/ask`: a scripted bot. "help" asks whether to talk to a colleague with the dialog
//!   options *Yes* (sends "I want an agent") and *No*. "agent" or "human" gets a `livechat` answer with skill
//!   `support`; during the intake it asks for a name, then an e-mail address, then calls the end-slot
//!   webhook (`POST /v1/prechat/complete`) as CAIC would and answers with the dialog's ok or error text.
//! - `GET /sandbox/caic/event/prechat`: starts that intake.
//! - `GET /sandbox/msc/presence/api/v1`: `Online` (or `Offline` with `SANDBOX_AGENTS=offline`).
//! - `POST /sandbox/msc/api/messages`: accepts Custom Channel messages (201); `GET` lists them.
//!   The end user's files are kept aside: the listing names each (`FileName`, `Size`, `Url`) and
//!   `GET /sandbox/msc/files/{n}` downloads it.
//! - `POST /sandbox/msc/agent/reply` (`{"sessionId", "text", "files"?: [{"name", "base64"}]}`): an
//!   agent answers, and MSC posts the reply (its files as `Attachments`) to our agent-reply webhook
//!   (`POST /v1/msc/messages`), then, the first time, tells our events webhook that the agent took
//!   the conversation (`ConversationStarted`).
//! - `POST /sandbox/msc/agent/archive` (`{"sessionId"}`): the agent closes the conversation, and MSC
//!   posts `ConversationArchived` to our events webhook (`POST /v1/msc/events`).
//!
//! For load and chaos runs: `SANDBOX_MSC_FAILURE_PERCENT` makes that share of handover posts fail
//! with 500, and `SANDBOX_DUPLICATE_WEBHOOKS=true` delivers each end-slot webhook 1 to 3 times at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::join_all;
use handover_core::config::Env;
use serde_json::{json, Value};

pub const SANDBOX_KEY: &str = "sandbox";

/// Points every CAIC and MSC variable at the sandbox on this server.
pub fn configure(env: &mut Env, addr: SocketAddr) {
    let base = format!("http://{addr}/sandbox");
    env.set_default("CAIC_BASE_URL", format!("{base}/caic"));
    env.set_default("CAIC_CUSTOMER_KEY", SANDBOX_KEY);
    env.set_default("CAIC_PROJECT_KEY", SANDBOX_KEY);
    env.set_default("CAIC_API_KEY", SANDBOX_KEY);
    env.set_default("MSC_PRESENCE_URL", format!("{base}/msc/presence"));
    env.set_default("MSC_PRESENCE_API_KEY", SANDBOX_KEY);
    env.set_default("MSC_API_URL", format!("{base}/msc/api"));
    env.set_default("MSC_API_KEY", SANDBOX_KEY);
    env.set_default("MSC_API_SECRET", SANDBOX_KEY);
    env.set_default("MSC_CHANNEL_ACCOUNT", "sandbox-channel");
}

/// The sandbox's routes, to be nested under `/sandbox`.
pub fn routes(env: &Env, addr: SocketAddr, http: reqwest::Client) -> Router {
    Router::new()
        .route("/caic/ask", get(ask))
        .route("/caic/event/prechat", get(prechat_event))
        .route("/msc/presence/api/v1", get(presence))
        .route("/msc/api/messages", get(received).post(accept_message))
        .route("/msc/files/{n}", get(file))
        .route("/msc/agent/reply", post(agent_reply))
        .route("/msc/agent/archive", post(agent_archive))
        .route("/settings", get(settings).post(change_settings))
        // Files travel in Base64 both ways, as with MSC: the sandbox takes what MSC's webhook takes.
        .layer(axum::extract::DefaultBodyLimit::max(
            handover_core::http::MSC_MESSAGE_BODY_BYTES,
        ))
        .with_state(Arc::new(Sandbox::new(env, addr, http)))
}

#[derive(Debug, Clone)]
enum Intake {
    AskedName,
    AskedEmail { name: String },
}

struct Sandbox {
    service_url: String,
    webhook_url: String,
    webhook_secret: String,
    msc_webhook_secret: String,
    /// Session → the ConversationGuid MSC made for it.
    conversations: Mutex<HashMap<String, String>>,
    // Switched at run time from the playground (`POST /sandbox/settings`).
    agents_online: AtomicBool,
    msc_failure_percent: AtomicU8,
    caic_failing: AtomicBool,
    duplicate_webhooks: bool,
    http: reqwest::Client,
    intakes: Mutex<HashMap<String, Intake>>,
    received: Mutex<Vec<Value>>,
    /// The end users' files MSC received, by their place in this list.
    files: Mutex<Vec<Vec<u8>>>,
}

type Params = Query<HashMap<String, String>>;

impl Sandbox {
    fn new(env: &Env, addr: SocketAddr, http: reqwest::Client) -> Self {
        Self {
            service_url: format!("http://{addr}"),
            webhook_url: format!("http://{addr}/v1/prechat/complete"),
            webhook_secret: env.string_or("CAIC_WEBHOOK_SECRET", crate::LOCAL_WEBHOOK_SECRET),
            msc_webhook_secret: env
                .string_or("MSC_WEBHOOK_SECRET", crate::LOCAL_MSC_WEBHOOK_SECRET),
            conversations: Mutex::new(HashMap::new()),
            agents_online: AtomicBool::new(env.string_or("SANDBOX_AGENTS", "online") != "offline"),
            caic_failing: AtomicBool::new(false),
            msc_failure_percent: AtomicU8::new(
                env.optional("SANDBOX_MSC_FAILURE_PERCENT")
                    .and_then(|p| p.parse::<u8>().ok())
                    .unwrap_or(0)
                    .min(100),
            ),
            duplicate_webhooks: env.string_or("SANDBOX_DUPLICATE_WEBHOOKS", "false") == "true",
            http,
            intakes: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
        }
    }

    fn intakes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Intake>> {
        self.intakes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn received(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What CAIC does when the intake dialog's last slot is filled.
    async fn call_end_slot_webhook(&self, session: &str, slots: Value) -> bool {
        let body = json!({"culture": "en", "sessionId": session, "session": {}, "name": "intake",
                          "okMessage": "Thank you!", "errorMessage": "Sorry.", "slots": slots});
        let deliveries = if self.duplicate_webhooks {
            1 + usize::from(random_byte() % 3)
        } else {
            1
        };
        // Every delivery runs to its end, as CAIC's would; CAIC shows the ok message when any says
        // success.
        join_all((0..deliveries).map(|_| self.deliver_end_slot(&body)))
            .await
            .into_iter()
            .any(|success| success)
    }

    async fn deliver_end_slot(&self, body: &Value) -> bool {
        let reply = self
            .http
            .post(&self.webhook_url)
            .bearer_auth(&self.webhook_secret)
            .json(body)
            .send()
            .await;
        match reply {
            Ok(response) => response
                .json::<Value>()
                .await
                .map(|v| v["success"] == true)
                .unwrap_or(false),
            Err(err) => {
                tracing::warn!(error = %err.without_url(), "sandbox could not call the end-slot webhook");
                false
            }
        }
    }
}

/// What the playground can switch: agents online, MSC refusing handovers, CAIC down.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    agents_online: Option<bool>,
    msc_failing: Option<bool>,
    caic_failing: Option<bool>,
}

async fn settings(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({
        "agentsOnline": sandbox.agents_online.load(Ordering::Relaxed),
        "mscFailing": sandbox.msc_failure_percent.load(Ordering::Relaxed) == 100,
        "caicFailing": sandbox.caic_failing.load(Ordering::Relaxed),
    }))
}

async fn change_settings(
    State(sandbox): State<Arc<Sandbox>>,
    Json(change): Json<Settings>,
) -> Json<Value> {
    if let Some(online) = change.agents_online {
        sandbox.agents_online.store(online, Ordering::Relaxed);
    }
    if let Some(failing) = change.msc_failing {
        let percent = if failing { 100 } else { 0 };
        sandbox
            .msc_failure_percent
            .store(percent, Ordering::Relaxed);
    }
    if let Some(failing) = change.caic_failing {
        sandbox.caic_failing.store(failing, Ordering::Relaxed);
    }
    settings(State(sandbox)).await
}

fn caic_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "the sandbox CAIC is switched off"})),
    )
        .into_response()
}

async fn ask(State(sandbox): State<Arc<Sandbox>>, Query(query): Params) -> Response {
    if sandbox.caic_failing.load(Ordering::Relaxed) {
        return caic_down();
    }
    let session = query
        .get("session")
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let text = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .unwrap_or_default();
    let step = sandbox.intakes().get(&session).cloned();
    let (answer, additions) = match step {
        Some(Intake::AskedName) => {
            sandbox
                .intakes()
                .insert(session.clone(), Intake::AskedEmail { name: text });
            ("Thanks. And your e-mail address?".to_owned(), json!({}))
        }
        Some(Intake::AskedEmail { name }) => {
            sandbox.intakes().remove(&session);
            let slots = json!([{"name": "name", "value": name}, {"name": "email", "value": text}]);
            let handed_over = sandbox.call_end_slot_webhook(&session, slots).await;
            let answer = if handed_over {
                "Thank you! A colleague will take over this chat."
            } else {
                "Sorry, we could not reach a colleague. You can keep chatting with me."
            };
            (answer.to_owned(), json!({}))
        }
        None => {
            let lower = text.to_lowercase();
            if lower == "help" {
                // A dialog with options, as CAIC's dialogs continue: picking one sends its value.
                let options = json!([{"label": "Yes", "value": "I want an agent"},
                                     {"label": "No", "value": "No, thanks"}]);
                let asked = "Would you like to talk to a colleague?";
                return caic_reply_with_options(&session, asked, json!({}), options)
                    .into_response();
            }
            if lower.contains("agent") || lower.contains("human") {
                (
                    "Let me connect you to a colleague.".to_owned(),
                    json!({"livechat": "true", "skill": "support"}),
                )
            } else {
                (
                    format!("You said \"{text}\". Say \"agent\" to talk to a person."),
                    json!({}),
                )
            }
        }
    };
    caic_reply(&session, &answer, additions).into_response()
}

async fn prechat_event(State(sandbox): State<Arc<Sandbox>>, Query(query): Params) -> Response {
    if sandbox.caic_failing.load(Ordering::Relaxed) {
        return caic_down();
    }
    let Some(session) = query.get("session").cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "invalid_request", "message": "session is required"}})),
        )
            .into_response();
    };
    let online = query.get("agentStatus").map(String::as_str) == Some("online");
    sandbox.intakes().insert(session.clone(), Intake::AskedName);
    let answer = if online {
        "A colleague is available. What is your name?"
    } else {
        "Our colleagues are offline right now, but leave your details. What is your name?"
    };
    caic_reply(&session, answer, json!({})).into_response()
}

async fn presence(State(sandbox): State<Arc<Sandbox>>) -> &'static str {
    if sandbox.agents_online.load(Ordering::Relaxed) {
        "Online"
    } else {
        "Offline"
    }
}

async fn received(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    let received = sandbox.received().clone();
    Json(json!({ "messages": received }))
}

async fn accept_message(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "basic auth required"})),
        )
            .into_response();
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(message)
            if message["Subject"].is_string()
                && u32::from(random_byte()) * 100
                    < u32::from(sandbox.msc_failure_percent.load(Ordering::Relaxed)) * 256 =>
        {
            tracing::info!("sandbox MSC injected a failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "injected"})),
            )
                .into_response()
        }
        Ok(mut message) => {
            sandbox.set_files_aside(&mut message);
            let mut received = sandbox.received();
            // A repeat of a MessageExternalIdentifier is accepted and dropped, as MSC is asked to.
            let repeat = received
                .iter()
                .any(|m| m["MessageExternalIdentifier"] == message["MessageExternalIdentifier"]);
            if !repeat {
                // The sandbox's own field: when it arrived, so the playground shows MSC's pace.
                message["ReceivedAt"] = json!(jiff::Timestamp::now().to_string());
                tracing::info!(
                    conversation = %message["ConversationExternalIdentifier"],
                    "sandbox MSC accepted a message"
                );
                received.push(message);
            }
            (StatusCode::CREATED, Json(json!({"accepted": true}))).into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": err.to_string()})),
        )
            .into_response(),
    }
}

/// One of the end users' files, as the agent downloads it from MSC.
async fn file(
    State(sandbox): State<Arc<Sandbox>>,
    axum::extract::Path(n): axum::extract::Path<usize>,
) -> Response {
    let files = sandbox.files.lock().unwrap_or_else(|p| p.into_inner());
    match files.get(n) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Sandbox {
    /// Keeps a message's Base64 files aside, so the inbox lists them without their bytes.
    fn set_files_aside(&self, message: &mut Value) {
        use base64::Engine;
        let Some(attachments) = message.get_mut("Attachments").and_then(Value::as_array_mut) else {
            return;
        };
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        for attachment in attachments.iter_mut() {
            let bytes = attachment["Base64Content"]
                .as_str()
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .unwrap_or_default();
            *attachment = json!({"FileName": attachment["FileName"], "Size": bytes.len(),
                                 "Url": format!("/sandbox/msc/files/{}", files.len())});
            files.push(bytes);
        }
    }

    /// Posts to one of our MSC webhooks as MSC would; what it answered.
    async fn call_webhook(&self, path: &str, body: Value) -> Response {
        let reply = self
            .http
            .post(format!("{}{path}", self.service_url))
            .bearer_auth(&self.msc_webhook_secret)
            .json(&body)
            .send()
            .await;
        match reply {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let answer = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, Json(answer)).into_response()
            }
            Err(err) => (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": err.without_url().to_string()})),
            )
                .into_response(),
        }
    }

    /// The ConversationGuid of a session, made on first use; and whether it was new.
    fn conversation(&self, session: &str) -> (String, bool) {
        let mut conversations = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
        match conversations.get(session) {
            Some(guid) => (guid.clone(), false),
            None => {
                let guid = uuid::Uuid::new_v4().to_string();
                conversations.insert(session.to_owned(), guid.clone());
                (guid, true)
            }
        }
    }
}

/// `{"sessionId", "text"}` from the playground or a curl.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentAction {
    session_id: String,
    #[serde(default)]
    text: String,
    /// The agent's files: `{"name", "base64"}`.
    #[serde(default)]
    files: Vec<AgentFile>,
}

#[derive(serde::Deserialize)]
struct AgentFile {
    name: String,
    base64: String,
}

async fn agent_reply(
    State(sandbox): State<Arc<Sandbox>>,
    Json(action): Json<AgentAction>,
) -> Response {
    let (guid, first) = sandbox.conversation(&action.session_id);
    let now = now_rfc3339();
    let reply = sandbox
        .call_webhook(
            "/v1/msc/messages",
            json!({"ChannelAccountExternalIdentifier": "sandbox-channel", "ConversationGuid": guid,
                   "ConversationExternalIdentifier": action.session_id,
                   "MessageExternalIdentifier": uuid::Uuid::new_v4().to_string(),
                   "RelationName": "Website visitor", "Content": action.text, "IsPrivate": false,
                   "SentDateTime": now,
                   "Attachments": action.files.iter().map(|f| json!({"FileName": f.name, "Base64Content": f.base64})).collect::<Vec<_>>()}),
        )
        .await;
    if first {
        let started = json!({"Name": "ConversationStarted",
                             "Payload": {"ConversationId": guid, "AgentName": "Sam (sandbox agent)",
                                         "EventUtcDateTime": now}});
        sandbox.call_webhook("/v1/msc/events", started).await;
    }
    reply
}

async fn agent_archive(
    State(sandbox): State<Arc<Sandbox>>,
    Json(action): Json<AgentAction>,
) -> Response {
    let (guid, _) = sandbox.conversation(&action.session_id);
    let archived = json!({"Name": "ConversationArchived",
                          "Payload": {"ConversationId": guid, "AgentName": "Sam (sandbox agent)",
                                      "EventUtcDateTime": now_rfc3339()}});
    sandbox.call_webhook("/v1/msc/events", archived).await
}

/// Now as RFC 3339, as MSC writes its dates.
fn now_rfc3339() -> String {
    use handover_core::Clock;
    handover_core::clock::rfc3339(handover_core::SystemClock.now())
}

fn caic_reply(session: &str, answer: &str, additions: Value) -> Json<Value> {
    caic_reply_with_options(session, answer, additions, json!([]))
}

fn caic_reply_with_options(
    session: &str,
    answer: &str,
    additions: Value,
    options: Value,
) -> Json<Value> {
    Json(
        json!({"data": {"answer": answer, "type": "answer", "dialogOptions": options, "links": [],
                        "outputAdditions": additions},
               "metadata": {"culture": "en", "interactionId": uuid::Uuid::new_v4().to_string(),
                            "sessionId": session}}),
    )
}

fn random_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}
