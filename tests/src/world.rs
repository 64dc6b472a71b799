//! A whole deployment in one process: the five functions' routers built from environment variables
//! exactly as the Lambda mains build them, stub CAIC and MSC servers (wiremock), a store on moto, and a
//! manual clock. Requests are API Gateway v2 events from a fixture, turned into requests by lambda_http
//! as in Lambda, and sent through each function's router.

use std::sync::Arc;

use axum::body::Bytes;
use axum::Router;
use handover_core::config::{
    AgentEventsConfig, AgentWaitConfig, AgentWaitSettings, AnswerIngestConfig, Env, HandoverConfig,
    LiveConnectionConfig, PresenceCheckConfig,
};
use handover_core::{clients, http as routes, startup, Clock, ManualClock, SessionStore};
use http::StatusCode;
use serde_json::{json, Value};
use tower::ServiceExt;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request as Received, ResponseTemplate};

use crate::Harness;

pub const CHANNEL_KEY: &str = "channel-key-0123456789";
pub const WEBHOOK_KEY: &str = "webhook-secret-0123456789";
pub const OPERATOR_KEY: &str = "operator-key-0123456789";
pub const CAIC_API_KEY: &str = "caic-api-key-secret";
pub const PRESENCE_API_KEY: &str = "presence-api-key";
pub const MSC_KEY: &str = "msc-key";
pub const MSC_SECRET: &str = "msc-secret";
pub const MSC_WEBHOOK_KEY: &str = "msc-webhook-secret-0123456789";
pub const CHANNEL_WEBHOOK_KEY: &str = "channel-webhook-secret-0123456789";
pub const CONVERSATION_TOKEN_SECRET: &str = "test-conversation-token-secret";

const FIXTURE: &str = include_str!("../data/apigw_v2_request.json");

pub struct World {
    pub caic: MockServer,
    pub msc: MockServer,
    /// The channel's webhook (`CHANNEL_WEBHOOK_URL` is `{channel}/hook`).
    pub channel: MockServer,
    pub store: Arc<dyn SessionStore>,
    pub clock: Arc<ManualClock>,
    pub ingest: Router,
    pub presence: Router,
    pub prechat: Router,
    pub handover: Router,
    pub agent: Router,
    /// live-connection, behind the WebSocket API.
    pub live: Router,
    /// API Gateway's management API (`LIVE_CONNECTIONS_URL`), where every live push lands.
    pub connections: crate::live::ManagementStub,
    /// The bucket of moto's S3 the functions keep files in, when `FILES_BUCKET` is set.
    pub files: Option<Arc<dyn handover_core::files::FileStore>>,
    /// agent-wait: what EventBridge Scheduler invokes when a wait for an agent runs out.
    pub wait: Arc<handover_core::flow::waiting::WaitDeps>,
    /// The schedule group on moto's Scheduler the waits are timed in, when
    /// `AGENT_WAIT_SCHEDULE_GROUP` is set (else the waits are off).
    pub wait_group: Option<String>,
    /// msc-outbound: what Lambda's SQS poller hands the held messages to.
    pub drainer: Arc<handover_core::flow::outbound::DrainDeps>,
    /// The outbound queue (`MSC_OUTBOUND_QUEUE_URL`), a FIFO queue of moto's SQS.
    pub outbound_queue: String,
}

impl World {
    pub async fn on(harness: Harness) -> World {
        Self::with_env(harness, &[]).await
    }

    /// `overrides` replace or add environment variables (e.g. a short `PRESENCE_TIMEOUT_MS`).
    pub async fn with_env(harness: Harness, overrides: &[(&str, &str)]) -> World {
        let caic = MockServer::start().await;
        let msc = MockServer::start().await;
        let channel = MockServer::start().await;
        let connections = crate::live::ManagementStub::start().await;
        let channel_url = format!("{}/hook", channel.uri());
        let caic_url = caic.uri();
        let presence_url = format!("{}/presence", msc.uri());
        let msc_url = format!("{}/api", msc.uri());
        let outbound_queue = crate::moto_outbound_queue(30).await;
        let mut vars: Vec<(&str, &str)> = vec![
            ("CAIC_BASE_URL", &caic_url),
            ("CAIC_CUSTOMER_KEY", "cust"),
            ("CAIC_PROJECT_KEY", "proj"),
            ("CAIC_API_KEY", CAIC_API_KEY),
            ("CAIC_CULTURE", "en"),
            ("MSC_PRESENCE_URL", &presence_url),
            ("MSC_PRESENCE_API_KEY", PRESENCE_API_KEY),
            ("MSC_API_URL", &msc_url),
            ("MSC_API_KEY", MSC_KEY),
            ("MSC_API_SECRET", MSC_SECRET),
            ("MSC_CHANNEL_ACCOUNT", "acct-1"),
            ("PRESENCE_TIMEOUT_MS", "500"),
            ("MSC_TIMEOUT_MS", "1000"),
            ("CHANNEL_API_KEY", CHANNEL_KEY),
            ("CAIC_WEBHOOK_SECRET", WEBHOOK_KEY),
            ("OPERATOR_API_KEY", OPERATOR_KEY),
            ("MSC_WEBHOOK_SECRET", MSC_WEBHOOK_KEY),
            ("CHANNEL_WEBHOOK_URL", &channel_url),
            ("CHANNEL_WEBHOOK_SECRET", CHANNEL_WEBHOOK_KEY),
            ("CHANNEL_WEBHOOK_TIMEOUT_MS", "500"),
            ("CONVERSATION_TOKEN_SECRET", CONVERSATION_TOKEN_SECRET),
            ("LIVE_CONNECTIONS_URL", &connections.url),
            ("MSC_OUTBOUND_QUEUE_URL", &outbound_queue),
            // Fast, so that tests do not crawl; the rate-limit tests set MSC's own 3.
            ("MSC_REQUESTS_PER_SECOND", "100"),
        ];
        for (name, value) in overrides {
            vars.retain(|(n, _)| n != name);
            vars.push((name, value));
        }
        let env = Env::from_pairs(vars);
        let clock: Arc<dyn Clock> = harness.clock.clone();
        // The very clients a deployment builds: one per peer, no redirects followed.
        let mut http = clients::PeerClients::deployed(&env)
            .expect("peer clients")
            .with_live_connections(env.optional("LIVE_CONNECTIONS_URL"))
            .await
            .expect("live connections");
        // FILES_BUCKET: the functions keep files in that bucket of moto's S3, as deployed.
        let files = match env.optional("FILES_BUCKET") {
            Some(bucket) => {
                let files: Arc<dyn handover_core::files::FileStore> =
                    crate::moto_files(bucket).await;
                Some(files)
            }
            None => None,
        };
        http.files = files.clone();
        // AGENT_WAIT_SCHEDULE_GROUP: the waits for an agent are timed on moto's Scheduler, as deployed.
        let wait_settings = AgentWaitSettings::from_env(&env).expect("the wait's settings");
        if let Some(scheduler) = &wait_settings.scheduler {
            let timers: Arc<dyn handover_core::waits::WaitTimers> =
                crate::moto_wait_timers(scheduler).await;
            http.timers = Some(timers);
        }
        http.outbound = Some(crate::moto_outbound(&outbound_queue));
        let store = harness.store.clone();
        let live = match LiveConnectionConfig::from_env(&env) {
            Ok(config) => {
                let post = http.live.clone().expect("the management API");
                routes::serve(startup::live_connection_routes(
                    &config,
                    store.clone(),
                    clock.clone(),
                    post,
                    files.clone(),
                ))
            }
            // Without tokens or the endpoint there is no live-connection function.
            Err(_) => Router::new(),
        };
        World {
            ingest: routes::serve(startup::answer_ingest_routes(
                &AnswerIngestConfig::from_env(&env).expect("answer-ingest configuration"),
                store.clone(),
                clock.clone(),
                http.clone(),
            )),
            presence: routes::serve(startup::presence_check_routes(
                &PresenceCheckConfig::from_env(&env).expect("presence-check configuration"),
                clock.clone(),
                http.clone(),
            )),
            prechat: routes::serve(startup::handover_routes(
                &HandoverConfig::prechat_complete_from_env(&env).expect("prechat configuration"),
                store.clone(),
                clock.clone(),
                http.clone(),
                routes::prechat_complete,
            )),
            handover: routes::serve(startup::handover_routes(
                &HandoverConfig::operator_handover_from_env(&env).expect("operator configuration"),
                store.clone(),
                clock.clone(),
                http.clone(),
                routes::operator_handover,
            )),
            agent: routes::serve(startup::agent_events_routes(
                &AgentEventsConfig::from_env(&env).expect("agent-events configuration"),
                store.clone(),
                clock.clone(),
                http.clone(),
            )),
            wait: Arc::new(startup::agent_wait_deps(
                &AgentWaitConfig::from_env(&env).expect("agent-wait configuration"),
                store.clone(),
                clock,
                http.clone(),
            )),
            wait_group: wait_settings.scheduler.map(|s| s.group),
            drainer: Arc::new(startup::msc_outbound_deps(
                &handover_core::config::MscOutboundConfig::from_env(&env)
                    .expect("msc-outbound configuration"),
                store.clone(),
                harness.clock.clone(),
                http.clone(),
            )),
            outbound_queue,
            live,
            connections,
            files,
            caic,
            msc,
            channel,
            store,
            clock: harness.clock,
        }
    }

    pub async fn message(&self, body: Value) -> (StatusCode, Value) {
        let req = event(
            "POST",
            "/v1/messages",
            "",
            Some(CHANNEL_KEY),
            &body.to_string(),
        );
        read(send(&self.ingest, req).await)
    }

    /// A message sent with an `Idempotency-Key`: the status, the body, and whether it was a replay.
    pub async fn message_with_key(&self, body: Value, key: &str) -> (StatusCode, Value, bool) {
        let mut req = event(
            "POST",
            "/v1/messages",
            "",
            Some(CHANNEL_KEY),
            &body.to_string(),
        );
        req.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_str(key).expect("a header value"),
        );
        let response = send(&self.ingest, req).await;
        let replayed = response.headers().contains_key("idempotent-replayed");
        let (status, body) = read(response);
        (status, body, replayed)
    }

    pub async fn end_slot(&self, session_id: &str, slots: Value) -> (StatusCode, Value) {
        let body = json!({"culture": "en", "sessionId": session_id, "session": {}, "name": "intake",
                          "okMessage": "Thanks", "errorMessage": "Sorry", "slots": slots});
        let req = event(
            "POST",
            "/v1/prechat/complete",
            "",
            Some(WEBHOOK_KEY),
            &body.to_string(),
        );
        read(send(&self.prechat, req).await)
    }

    pub async fn operator_handover(&self, session_id: &str) -> (StatusCode, Value) {
        let path = format!("/v1/sessions/{session_id}/handover");
        let req = event("POST", &path, "", Some(OPERATOR_KEY), "");
        read(send(&self.handover, req).await)
    }

    pub async fn presence_webhook(&self, body: Value) -> (StatusCode, Value) {
        let req = event(
            "POST",
            "/v1/presence",
            "",
            Some(WEBHOOK_KEY),
            &body.to_string(),
        );
        read(send(&self.presence, req).await)
    }

    /// MSC posts an agent's reply (or anything else) to the agent-reply webhook, with its key.
    pub async fn msc_posts_message(&self, body: Value) -> (StatusCode, Value) {
        let req = event(
            "POST",
            "/v1/msc/messages",
            "",
            Some(MSC_WEBHOOK_KEY),
            &body.to_string(),
        );
        read(send(&self.agent, req).await)
    }

    /// MSC posts a conversation event to the events webhook, with its key.
    pub async fn msc_posts_event(&self, body: Value) -> (StatusCode, Value) {
        let req = event(
            "POST",
            "/v1/msc/events",
            "",
            Some(MSC_WEBHOOK_KEY),
            &body.to_string(),
        );
        read(send(&self.agent, req).await)
    }

    /// The waits scheduled on moto's Scheduler now, each with its `at(...)` expression.
    pub async fn scheduled_waits(&self) -> Vec<(handover_core::waits::AgentWait, String)> {
        let Some(group) = &self.wait_group else {
            return Vec::new();
        };
        let scheduler = crate::scheduler_client();
        let listed = scheduler
            .list_schedules()
            .group_name(group)
            .send()
            .await
            .expect("schedules");
        let mut waits = Vec::new();
        for summary in listed.schedules() {
            let name = summary.name().unwrap_or_default();
            let schedule = scheduler
                .get_schedule()
                .group_name(group)
                .name(name)
                .send()
                .await
                .expect("schedule");
            let input = schedule.target().and_then(|t| t.input()).unwrap_or("{}");
            let wait = serde_json::from_str(input).expect("a wait as the schedule's input");
            waits.push((
                wait,
                schedule.schedule_expression().unwrap_or("").to_owned(),
            ));
        }
        waits.sort_by_key(|(wait, _): &(handover_core::waits::AgentWait, _)| wait.round);
        waits
    }

    /// EventBridge Scheduler runs the schedules of the group: agent-wait is invoked with each input,
    /// then the schedule is deleted (`ActionAfterCompletion: DELETE`). Each invocation's answer.
    pub async fn fire_waits(&self) -> Vec<Value> {
        let mut answers = Vec::new();
        for (wait, _) in self.scheduled_waits().await {
            answers.push(self.fire(&wait).await);
            crate::scheduler_client()
                .delete_schedule()
                .group_name(self.wait_group.as_deref().unwrap_or_default())
                .name(wait.schedule_name())
                .send()
                .await
                .expect("schedule deleted");
        }
        answers
    }

    /// agent-wait invoked with `wait` (as Scheduler does, also twice).
    pub async fn fire(&self, wait: &handover_core::waits::AgentWait) -> Value {
        let event = serde_json::to_value(wait).expect("a wait as JSON");
        handover_core::flow::waiting::on_event(&self.wait, "test-invocation", event)
            .await
            .expect("the wait is checked")
    }

    /// What the channel polls.
    pub async fn outbox(&self, session_id: &str, query: &str) -> (StatusCode, Value) {
        let path = format!("/v1/sessions/{session_id}/messages");
        let req = event("GET", &path, query, Some(CHANNEL_KEY), "");
        read(send(&self.ingest, req).await)
    }

    /// The operator view of a session.
    pub async fn session_view(&self, session_id: &str) -> (StatusCode, Value) {
        let path = format!("/v1/sessions/{session_id}");
        let req = event("GET", &path, "", Some(OPERATOR_KEY), "");
        read(send(&self.handover, req).await)
    }

    pub async fn operator_release(&self, session_id: &str) -> (StatusCode, Value) {
        let path = format!("/v1/sessions/{session_id}/release");
        let req = event("POST", &path, "", Some(OPERATOR_KEY), "");
        read(send(&self.handover, req).await)
    }

    /// The channel's webhook answers with this.
    pub async fn channel_answers(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(response)
            .mount(&self.channel)
            .await;
    }

    /// What the channel's webhook received.
    pub async fn channel_pushes(&self) -> Vec<Received> {
        received(&self.channel, "/hook").await
    }

    pub async fn presence_get(&self, query: &str) -> (StatusCode, Value) {
        let req = event("GET", "/v1/presence", query, Some(CHANNEL_KEY), "");
        read(send(&self.presence, req).await)
    }

    /// The peers of a handover that goes through for `session`: "agent" is a livechat answer (skill
    /// billing, with `more` output additions), the intake asks for a name, agents are online, MSC
    /// accepts messages.
    pub async fn handover_goes_through(&self, session: &str, more: Value) {
        let mut additions = json!({"livechat": true, "skill": "billing"});
        if let (Some(base), Value::Object(more)) = (additions.as_object_mut(), more) {
            base.extend(more);
        }
        self.caic_answers("agent", caic_reply(session, "Connecting.", additions))
            .await;
        self.caic_event_answers(200, caic_reply(session, "Your name?", json!({})))
            .await;
        self.presence_says(ResponseTemplate::new(200).set_body_string("Online"))
            .await;
        self.msc_accepts_messages(ResponseTemplate::new(201)).await;
    }

    /// CAIC answers `q` (any session) with this reply.
    pub async fn caic_answers(&self, q: &str, reply: Value) {
        Mock::given(method("GET"))
            .and(path("/ask"))
            .and(query_param("q", q))
            .respond_with(ResponseTemplate::new(200).set_body_json(reply))
            .mount(&self.caic)
            .await;
    }

    pub async fn caic_event_answers(&self, status: u16, reply: Value) {
        Mock::given(method("GET"))
            .and(path("/event/prechat"))
            .respond_with(ResponseTemplate::new(status).set_body_json(reply))
            .mount(&self.caic)
            .await;
    }

    pub async fn presence_says(&self, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path("/presence/api/v1"))
            .respond_with(response)
            .mount(&self.msc)
            .await;
    }

    pub async fn msc_accepts_messages(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/api/messages"))
            .respond_with(response)
            .mount(&self.msc)
            .await;
    }

    pub async fn caic_requests(&self, to_path: &str) -> Vec<Received> {
        received(&self.caic, to_path).await
    }

    /// Delivers what the outbound queue holds, as Lambda's SQS poller and msc-outbound do, until
    /// nothing is visible (a message given back after a failed delivery is invisible for its
    /// backoff). How many messages were handed to the drainer.
    pub async fn drain(&self) -> usize {
        let queue = crate::moto_outbound(&self.outbound_queue);
        let (mut handed, mut failures) = (0, 0);
        loop {
            match handover_core::flow::outbound::poll_sqs_once(&self.drainer, &queue, Some(30))
                .await
            {
                Ok(0) => return handed,
                Ok(n) => handed += n,
                // moto serves the whole suite one request at a time: poll again, as Lambda does.
                Err(err) => {
                    failures += 1;
                    assert!(failures < 10, "the outbound queue on moto: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// How many messages the outbound queue holds, visible or not (in flight, or waiting out a
    /// backoff).
    pub async fn outbound_depth(&self) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attributes = crate::sqs_client()
            .get_queue_attributes()
            .queue_url(&self.outbound_queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("the outbound queue's attributes");
        let count = |name: A| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible)
    }

    /// What MSC received, once the outbound queue is drained (see [`World::drain`]).
    pub async fn msc_messages(&self) -> Vec<Value> {
        self.drain().await;
        self.msc_received().await
    }

    /// What MSC received so far, without draining the queue.
    pub async fn msc_received(&self) -> Vec<Value> {
        received(&self.msc, "/api/messages")
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("msc body is JSON"))
            .collect()
    }

    pub async fn presence_requests(&self) -> Vec<Received> {
        received(&self.msc, "/presence/api/v1").await
    }

    /// A conversation token bound to `session_id`, as the reply to its first message carries it.
    pub fn token_for(&self, session_id: &str) -> String {
        let keys = handover_core::token::TokenKeys::new(
            handover_core::config::Keys {
                current: CONVERSATION_TOKEN_SECRET.into(),
                next: None,
            },
            86_400,
        );
        let now = self.now();
        let session = handover_core::SessionId::parse(session_id).expect("a session id");
        let (unbound, _) = keys.issue(None, now).expect("a token");
        let token = keys.verify(&unbound, now).expect("valid");
        keys.follow(&token, Some(&session), now).expect("a token").0
    }

    /// A page's WebSocket handshake (`$connect`) with `token` in the query string.
    pub async fn live_connect(&self, connection: &str, token: Option<&str>) -> (StatusCode, Value) {
        let request = websocket_event("$connect", connection, token, None);
        read(send(&self.live, request).await)
    }

    /// A page's frame on its connection, on the route API Gateway picks by its `type`.
    pub async fn live_frame(&self, connection: &str, frame: &Value) -> StatusCode {
        let route = match frame["type"].as_str() {
            Some("resume") => "resume",
            _ => "$default",
        };
        let request = websocket_event(route, connection, None, Some(&frame.to_string()));
        send(&self.live, request).await.status()
    }

    /// Connects and resumes after `after`: what a page does when it opens its live connection.
    pub async fn live_resume(&self, connection: &str, session_id: &str, after: u64) {
        let token = self.token_for(session_id);
        let (status, body) = self.live_connect(connection, Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let resume = json!({"type": "resume", "token": token, "after": after});
        assert_eq!(self.live_frame(connection, &resume).await, 200);
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

async fn received(server: &MockServer, to_path: &str) -> Vec<Received> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == to_path)
        .collect()
}

pub fn query_of(request: &Received, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An API Gateway HTTP API (payload 2.0) event from the fixture, as Lambda would deliver it.
const WEBSOCKET_FIXTURE: &str = include_str!("../data/apigw_websocket_request.json");

/// A WebSocket API event for live-connection: `$connect` with `token` in its query string, or a
/// page's frame on `route_key` (`resume`, `$default`).
pub fn websocket_event(
    route_key: &str,
    connection: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(WEBSOCKET_FIXTURE).expect("fixture is JSON");
    let context = &mut event["requestContext"];
    context["routeKey"] = json!(route_key);
    context["connectionId"] = json!(connection);
    if route_key != "$connect" {
        context["eventType"] = json!("MESSAGE");
        context["messageId"] = json!(uuid::Uuid::new_v4().to_string());
        for name in ["headers", "multiValueHeaders"] {
            event.as_object_mut().map(|e| e.remove(name));
        }
    }
    if let Some(token) = token {
        event["queryStringParameters"] = json!({"token": token});
        event["multiValueQueryStringParameters"] = json!({"token": [token]});
    }
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    lambda_http::request::from_str(&event.to_string()).expect("valid WebSocket API event")
}

pub fn event(
    http_method: &str,
    raw_path: &str,
    raw_query: &str,
    bearer: Option<&str>,
    body: &str,
) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(raw_query);
    event["requestContext"]["http"]["method"] = json!(http_method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["body"] = json!(body);
    if let Some(key) = bearer {
        event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    }
    if !raw_query.is_empty() {
        let params: serde_json::Map<String, Value> = form_pairs(raw_query);
        event["queryStringParameters"] = Value::Object(params);
    }
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

fn form_pairs(raw_query: &str) -> serde_json::Map<String, Value> {
    raw_query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect()
}

/// One request through a function's router, as `lambda_http::run` hands it over; the body collected.
pub async fn send(router: &Router, request: lambda_http::Request) -> http::Response<Bytes> {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a response body in memory");
    http::Response::from_parts(parts, bytes)
}

pub fn read(response: http::Response<Bytes>) -> (StatusCode, Value) {
    let status = response.status();
    let body = if response.body().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(response.body()).expect("JSON response")
    };
    (status, body)
}

/// A CAIC reply in the connector's normalised shape.
pub fn caic_reply(session_id: &str, answer: &str, additions: Value) -> Value {
    json!({"data": {"answer": answer, "type": "answer", "dialogOptions": [], "links": [],
                    "outputAdditions": additions},
           "metadata": {"culture": "en", "interactionId": "i-1", "sessionId": session_id}})
}
