//! Load without loss: many concurrent conversations through the whole loop against the local runner
//! (sandbox CAIC and MSC on 127.0.0.1) backed by moto: bot, intake, handover (duplicate end-slot
//! webhooks, injected MSC failures), relayed messages, agent replies (each delivered twice at once by
//! "MSC", pushed to a channel webhook that fails some pushes), the agent closing the conversation, and
//! the bot answering again. Afterwards every conversation was handed over exactly once or stayed with
//! the bot, none is stuck, every relayed message reached MSC once and in order, and every agent reply is
//! in the outbox once and in order.
//!
//! `HANDOVER_LOAD_SESSIONS` sets the number of conversations (default 200; `scripts/test --full` runs 1000),
//! at most 200 at once. `HANDOVER_LOAD_LOG=<file>` writes the runner's logs there as JSON lines (each
//! with its session id), to follow a conversation that failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use handover_core::config::Env;
use handover_core::store::dynamodb::{ensure_table, DynamoDbStore};
use handover_core::{EndReason, SessionState, SessionStore, SystemClock};
use handover_local::{start_with, LOCAL_CHANNEL_KEY, LOCAL_MSC_WEBHOOK_SECRET, LOCAL_OPERATOR_KEY};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CONCURRENT: usize = 200;
const RELAYS: [&str; 3] = ["first", "second", "third"];
const AGENT_REPLIES: [&str; 3] = ["Hello, I am Sam.", "Let me look.", "Done, anything else?"];

struct Outcome {
    session_id: String,
    /// The session was handed over once the relays had been answered: MSC has the conversation, so
    /// its agent answers.
    handed_over: bool,
    /// Who answered each relay: `bot`, `agent`, or `agent (queued)` behind a handover being made.
    relay_replies: Vec<String>,
    /// What the channel's poll showed after the agent closed: `(from, text)`.
    shown: Vec<(String, String)>,
    /// Who answered the first message after the handover ended (or after the bot kept it).
    afterwards: String,
}

/// The channel's webhook, refusing every fourth push: the pusher tries again, the outbox keeps all.
#[derive(Clone, Default)]
struct FlakyChannel {
    pushes: Arc<AtomicUsize>,
}

impl Respond for FlakyChannel {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        match self.pushes.fetch_add(1, Ordering::SeqCst) % 4 {
            3 => ResponseTemplate::new(500),
            _ => ResponseTemplate::new(204),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conversations_are_handed_over_once_or_back_with_the_bot() {
    let sessions: usize = std::env::var("HANDOVER_LOAD_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    if let Ok(path) = std::env::var("HANDOVER_LOAD_LOG") {
        let file = std::sync::Arc::new(std::fs::File::create(path).unwrap());
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || file.clone())
                    .with_filter(handover_core::telemetry::filter("info")),
            )
            .try_init();
    }
    // moto handles one request at a time (scripts/moto_dynamodb.py), so a burst of conversations queues
    // DynamoDB calls for seconds: far beyond the 1 s attempt limit meant for DynamoDB itself, which
    // would turn moto's queue into write timeouts. The fault tests cover those; here the limits are wide.
    let client = handover_tests::client_with_timeouts(
        &handover_tests::dynamodb_endpoint(),
        Duration::from_secs(20),
        Duration::from_secs(60),
    );
    let table = format!("handover-load-{}", uuid::Uuid::new_v4().simple());
    ensure_table(&client, &table).await.expect("table");
    let store: Arc<dyn SessionStore> = Arc::new(DynamoDbStore::new(
        client,
        table,
        Arc::new(SystemClock),
        handover_tests::policy(),
    ));
    // The sandbox CAIC, like CAIC, answers the last intake turn only after its end-slot webhook returned,
    // and that webhook's DynamoDB calls wait in moto's queue: the CAIC limit is widened with the rest.
    let channel = MockServer::start().await;
    let flaky = FlakyChannel::default();
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(flaky.clone())
        .mount(&channel)
        .await;
    let channel_url = format!("{}/hook", channel.uri());
    let env = Env::from_pairs([
        ("SANDBOX_MSC_FAILURE_PERCENT", "20"),
        // The load is the service's, not MSC's limit (msc_rate_limit.rs holds it to 3 a second).
        ("MSC_REQUESTS_PER_SECOND", "1000"),
        ("SANDBOX_DUPLICATE_WEBHOOKS", "true"),
        ("CAIC_TIMEOUT_MS", "60000"),
        ("CHANNEL_WEBHOOK_URL", channel_url.as_str()),
        ("CHANNEL_WEBHOOK_SECRET", "load-channel-webhook-secret"),
        ("RELEASE_ON_ARCHIVE", "true"),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = start_with(listener, env, Some(store.clone()))
        .await
        .expect("runner");
    let base = format!("http://{}", running.addr);
    handover_core::clients::install_crypto_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let retries = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // At most CONCURRENT conversations at once: moto serves one request at a time, and past a few
    // hundred waiting connections its queue, not our code, is what a test would measure.
    let conversations = (0..sessions).map(|i| {
        let http = http.clone();
        let base = base.clone();
        let retries = retries.clone();
        tokio::spawn(async move { converse(&http, &base, i, retries).await })
    });
    let outcomes: Vec<Outcome> = stream::iter(conversations)
        .buffer_unordered(CONCURRENT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|joined| joined.expect("conversation task"))
        .collect();
    let elapsed = started.elapsed();

    // The relays were answered once held: the runner's queue delivers them (failed posts come round
    // again after a backoff). Read MSC's inbox once it has stopped growing.
    let inbox = || async {
        let sink: Value = http
            .get(format!("{base}/sandbox/msc/api/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sink
    };
    let mut sink = inbox().await;
    let mut unchanged = 0;
    while unchanged < 6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = inbox().await;
        let grew =
            now["messages"].as_array().map(Vec::len) != sink["messages"].as_array().map(Vec::len);
        unchanged = if grew { 0 } else { unchanged + 1 };
        sink = now;
    }
    let mut received: HashMap<String, Vec<Value>> = HashMap::new();
    for message in sink["messages"].as_array().unwrap() {
        let conversation = message["ConversationExternalIdentifier"]
            .as_str()
            .unwrap()
            .to_owned();
        received
            .entry(conversation)
            .or_default()
            .push(message.clone());
    }

    let (mut handed_over, mut with_bot, mut stuck, mut agent_replies) = (0, 0, 0, 0);
    for outcome in &outcomes {
        let stored = store
            .get(&outcome.session_id)
            .await
            .expect("store readable");
        let messages = received
            .get(&outcome.session_id)
            .cloned()
            .unwrap_or_default();
        let handovers = messages.iter().filter(|m| m["Subject"].is_string()).count();
        let relayed: Vec<&str> = messages
            .iter()
            .filter(|m| m["Subject"].is_null())
            .map(|m| m["Content"].as_str().unwrap())
            .collect();
        let ended_by = stored.as_ref().and_then(|s| s.agent.end_reason);
        assert_eq!(outcome.afterwards, "bot", "{}", outcome.session_id);
        match (stored.as_ref().map(|s| s.state), ended_by) {
            (Some(SessionState::Ended), Some(EndReason::AgentClosed)) => {
                handed_over += 1;
                assert_eq!(handovers, 1, "{}: one MSC conversation", outcome.session_id);
                assert!(outcome.handed_over, "{}", outcome.session_id);
                assert!(
                    outcome
                        .relay_replies
                        .iter()
                        .all(|by| by.starts_with("agent")),
                    "{}: {:?}",
                    outcome.session_id,
                    outcome.relay_replies
                );
                assert_eq!(
                    relayed, RELAYS,
                    "{}: every relay once, in order",
                    outcome.session_id
                );
                let agent_texts: Vec<&str> = outcome
                    .shown
                    .iter()
                    .filter(|(from, _)| from == "agent")
                    .map(|(_, text)| text.as_str())
                    .collect();
                assert_eq!(
                    agent_texts, AGENT_REPLIES,
                    "{}: every agent reply once, in order",
                    outcome.session_id
                );
                assert_eq!(
                    outcome.shown.last().map(|(from, _)| from.as_str()),
                    Some("system"),
                    "{}: the end told",
                    outcome.session_id
                );
                agent_replies += agent_texts.len();
            }
            // A refused handover ends the session (its history kept): back with the bot.
            (None, _) | (Some(SessionState::Ended), Some(EndReason::HandoverFailed)) => {
                with_bot += 1;
                assert_eq!(
                    handovers, 0,
                    "{}: MSC refused, nothing accepted",
                    outcome.session_id
                );
                assert!(relayed.is_empty(), "{}", outcome.session_id);
                assert!(
                    // A message queued behind a handover that then failed waits for the bot.
                    outcome
                        .relay_replies
                        .iter()
                        .all(|by| by == "bot" || by == "agent (queued)"),
                    "{}: {:?}",
                    outcome.session_id,
                    outcome.relay_replies
                );
            }
            (state, reason) => {
                stuck += 1;
                eprintln!("{} stuck in {state:?} ({reason:?})", outcome.session_id);
            }
        }
    }
    let summary = format!(
        "load: {sessions} conversations in {:.1} s: {handed_over} handed over once, {with_bot} back with the bot \
         (injected MSC failures), {stuck} stuck; {} MSC messages accepted; {agent_replies} agent replies \
         (each delivered twice) in the outboxes once and in order, {} pushes to the channel (every fourth \
         refused); {} retries after 409",
        elapsed.as_secs_f64(),
        sink["messages"].as_array().unwrap().len(),
        flaky.pushes.load(Ordering::SeqCst),
        retries.load(Ordering::Relaxed)
    );
    println!("{summary}");
    // The test command prints this after the run (cargo hides a passing test's output).
    if let Ok(path) = std::env::var("HANDOVER_LOAD_REPORT") {
        std::fs::write(path, format!("{summary}\n")).expect("write the load report");
    }
    assert_eq!(stuck, 0);
    assert_eq!(handed_over + with_bot, sessions);
    assert!(handed_over > 0 && with_bot > 0, "both outcomes exercised");
    running.task.abort();
}

async fn converse(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    retries: Arc<AtomicUsize>,
) -> Outcome {
    // A well-behaved channel: a 409 (a handover of this session is being made) is retried after its
    // Retry-After, shortened here to keep the run short. Every other status must be 200.
    let say = |session: Option<&str>, text: &str, key: Option<String>| {
        let session_label = session.unwrap_or("new").to_owned();
        let mut body = json!({"text": text, "endUserUrl": format!("https://shop.example/{i}")});
        if let Some(s) = session {
            body["sessionId"] = json!(s);
        }
        let request = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(LOCAL_CHANNEL_KEY)
            .json(&body);
        let request = match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        };
        let retries = retries.clone();
        async move {
            for _ in 0..60 {
                let attempt = request.try_clone().expect("a JSON body can be cloned");
                let response = attempt.send().await.expect("runner answers");
                let status = response.status();
                let body: Value = response.json().await.expect("JSON");
                if status == 409 && body["error"]["code"] == "handover_in_progress" {
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                assert_eq!(status, 200, "conversation {i} ({session_label}): {body}");
                return body;
            }
            panic!("conversation {i} ({session_label}): still 409 after 15 s");
        }
    };
    let first = say(None, "hello", None).await;
    let session_id = first["sessionId"].as_str().unwrap().to_owned();
    say(Some(&session_id), "agent please", None).await;
    say(Some(&session_id), &format!("Visitor {i}"), None).await;
    say(Some(&session_id), &format!("visitor{i}@example.com"), None).await;
    let mut relay_replies = Vec::new();
    for (n, text) in RELAYS.iter().enumerate() {
        let reply = say(Some(&session_id), text, Some(format!("{session_id}-{n}"))).await;
        let by = reply["handledBy"].as_str().unwrap().to_owned();
        relay_replies.push(if reply["queued"] == true {
            format!("{by} (queued)")
        } else {
            by
        });
    }
    let view = get_json(
        http,
        &format!("{base}/v1/sessions/{session_id}"),
        LOCAL_OPERATOR_KEY,
    )
    .await;
    let handed_over = view["state"] == "handed_over";
    let mut shown = Vec::new();
    if handed_over {
        agent_replies_and_close(http, base, &session_id).await;
        let outbox = get_json(
            http,
            &format!("{base}/v1/sessions/{session_id}/messages"),
            LOCAL_CHANNEL_KEY,
        )
        .await;
        for message in outbox["messages"].as_array().expect("messages") {
            shown.push((
                message["from"].as_str().unwrap_or_default().to_owned(),
                message["text"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    let afterwards = say(Some(&session_id), "back to the bot?", None).await;
    Outcome {
        handed_over,
        session_id,
        relay_replies,
        shown,
        afterwards: afterwards["handledBy"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> Value {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .expect("runner answers")
        .json()
        .await
        .expect("JSON")
}

/// The agent's side as MSC plays it: three replies, each delivered twice at once (a webhook retry
/// racing the first delivery), then the conversation archived. The replies are dated in the past: the
/// outbox is in `SentDateTime` order and the end of the handover is dated now.
async fn agent_replies_and_close(http: &reqwest::Client, base: &str, session_id: &str) {
    let guid = uuid::Uuid::new_v4().to_string();
    let post = |route: &str, body: Value| {
        let request = http
            .post(format!("{base}/v1/msc/{route}"))
            .bearer_auth(LOCAL_MSC_WEBHOOK_SECRET)
            .json(&body);
        async move {
            let response = request.send().await.expect("runner answers");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(status, 200, "{session_id}: {body}");
            body
        }
    };
    for (n, text) in AGENT_REPLIES.iter().enumerate() {
        let reply = json!({"ChannelAccountExternalIdentifier": "local", "ConversationGuid": guid,
                           "ConversationExternalIdentifier": session_id,
                           "MessageExternalIdentifier": format!("{session_id}-agent-{n}"),
                           "RelationName": "Visitor", "Content": text, "IsPrivate": false,
                           "SentDateTime": format!("2026-01-01T10:00:0{n}Z"), "Attachments": []});
        let (first, second) =
            tokio::join!(post("messages", reply.clone()), post("messages", reply));
        let mut statuses = [first["status"].clone(), second["status"].clone()];
        statuses.sort_by_key(|s| s.to_string());
        assert_eq!(
            statuses,
            [json!("delivered"), json!("duplicate")],
            "{session_id}"
        );
    }
    let archived = json!({"Name": "ConversationArchived",
                          "Payload": {"ConversationId": guid, "AgentName": "Sam",
                                      "EventUtcDateTime": "2026-01-01T10:01:00Z"}});
    let ended = post("events", archived).await;
    assert_eq!(ended["status"], "ended", "{session_id}");
}
