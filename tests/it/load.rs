//! Load without loss: many concurrent conversations through the whole story against the local runner
//! (sandbox CAIC and MSC on 127.0.0.1) backed by moto, with duplicate end-slot webhooks and injected MSC
//! failures. Afterwards every conversation is handed over exactly once or back with the bot, none is
//! stuck, and every relayed message reached MSC once, in order.
//!
//! `HANDOVER_LOAD_SESSIONS` sets the number of conversations (default 200; `scripts/test --full` runs 1000).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use handover_core::config::Env;
use handover_core::store::dynamodb::{ensure_table, DynamoDbStore};
use handover_core::{SessionState, SessionStore, SystemClock};
use handover_local::{start_with, LOCAL_CHANNEL_KEY};
use serde_json::{json, Value};

const RELAYS: [&str; 3] = ["first", "second", "third"];

struct Outcome {
    session_id: String,
    handled_by_agent: bool,
    relay_replies: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conversations_are_handed_over_once_or_back_with_the_bot() {
    let sessions: usize = std::env::var("HANDOVER_LOAD_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
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
    let env = Env::from_pairs([
        ("SANDBOX_MSC_FAILURE_PERCENT", "20"),
        ("SANDBOX_DUPLICATE_WEBHOOKS", "true"),
        ("CAIC_TIMEOUT_MS", "60000"),
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
    let conversations = (0..sessions).map(|i| {
        let http = http.clone();
        let base = base.clone();
        let retries = retries.clone();
        tokio::spawn(async move { converse(&http, &base, i, retries).await })
    });
    let outcomes: Vec<Outcome> = join_all(conversations)
        .await
        .into_iter()
        .map(|joined| joined.expect("conversation task"))
        .collect();
    let elapsed = started.elapsed();

    let sink: Value = http
        .get(format!("{base}/sandbox/msc/api/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let (mut handed_over, mut with_bot, mut stuck) = (0, 0, 0);
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
        match stored.as_ref().map(|s| s.state) {
            Some(SessionState::HandedOver) => {
                handed_over += 1;
                assert_eq!(handovers, 1, "{}: one MSC conversation", outcome.session_id);
                assert!(outcome.handled_by_agent);
                assert_eq!(
                    relayed, RELAYS,
                    "{}: every relay once, in order",
                    outcome.session_id
                );
            }
            // A refused handover ends the session (its history kept): back with the bot.
            None | Some(SessionState::Ended) => {
                with_bot += 1;
                assert_eq!(
                    handovers, 0,
                    "{}: MSC refused, nothing accepted",
                    outcome.session_id
                );
                assert!(relayed.is_empty(), "{}", outcome.session_id);
                assert!(
                    outcome.relay_replies.iter().all(|by| by == "bot"),
                    "{}",
                    outcome.session_id
                );
            }
            Some(state) => {
                stuck += 1;
                eprintln!("{} stuck in {state}", outcome.session_id);
            }
        }
    }
    let summary = format!(
        "load: {sessions} conversations in {:.1} s: {handed_over} handed over once, {with_bot} back with the bot \
         (injected MSC failures), {stuck} stuck; {} MSC messages accepted; {} retries after 409",
        elapsed.as_secs_f64(),
        sink["messages"].as_array().unwrap().len(),
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
        relay_replies.push(reply["handledBy"].as_str().unwrap().to_owned());
    }
    Outcome {
        handled_by_agent: relay_replies.iter().all(|by| by == "agent"),
        session_id,
        relay_replies,
    }
}
