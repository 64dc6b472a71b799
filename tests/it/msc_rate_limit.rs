//! MSC's rate limit (3 requests a second, 180 a minute): a stub MSC that enforces it. Within the
//! budget a 429 is waited out as `Retry-After` asks; past it a relay answers 503 with `Retry-After`
//! (the channel retries with its `Idempotency-Key`) and a handover goes back to the bot (rule 7).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use handover_core::{SessionState, StartIntakeOutcome};
use handover_tests::world::{event, read, send, World, CHANNEL_KEY};
use handover_tests::{memory_harness, online_intake};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

/// MSC's messages API as its limit makes it behave: at most `per_second` accepted in any second,
/// 429 with `Retry-After` past that. `per_second` 0 is an MSC that is busy for now.
#[derive(Clone)]
struct RateLimitedMsc {
    per_second: Arc<AtomicUsize>,
    /// `None`: the 429 carries no `Retry-After`.
    retry_after: Option<&'static str>,
    recent: Arc<Mutex<VecDeque<Instant>>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    turned_away: Arc<AtomicUsize>,
}

impl RateLimitedMsc {
    async fn mount(
        world: &World,
        per_second: usize,
        retry_after: Option<&'static str>,
    ) -> RateLimitedMsc {
        let msc = RateLimitedMsc {
            per_second: Arc::new(AtomicUsize::new(per_second)),
            retry_after,
            recent: Arc::default(),
            accepted: Arc::default(),
            turned_away: Arc::default(),
        };
        Mock::given(method("POST"))
            .and(path("/api/messages"))
            .respond_with(msc.clone())
            .mount(&world.msc)
            .await;
        msc
    }

    fn accepted_texts(&self) -> Vec<String> {
        let accepted = self.accepted.lock().unwrap();
        accepted
            .iter()
            .map(|m| m["Content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Respond for RateLimitedMsc {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap();
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() >= self.per_second.load(Ordering::SeqCst) {
            self.turned_away.fetch_add(1, Ordering::SeqCst);
            let busy = ResponseTemplate::new(429);
            return match self.retry_after {
                Some(seconds) => busy.insert_header("Retry-After", seconds),
                None => busy,
            };
        }
        recent.push_back(now);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.accepted.lock().unwrap().push(body);
        ResponseTemplate::new(201)
    }
}

async fn handed_over(world: &World, session_id: &str) {
    handover_tests::handed_over_in(world.store.as_ref(), session_id).await;
}

async fn relay(
    world: &World,
    session_id: &str,
    text: &str,
    key: &str,
) -> (StatusCode, Value, Option<String>) {
    let body = json!({"sessionId": session_id, "text": text}).to_string();
    let mut request = event("POST", "/v1/messages", "", Some(CHANNEL_KEY), &body);
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    let response = send(&world.ingest, request).await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = read(response);
    (status, body, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_past_the_limit_is_waited_out_and_every_message_reaches_msc_once() {
    let world = Arc::new(World::on(memory_harness().await).await);
    let msc = RateLimitedMsc::mount(&world, 3, Some("1")).await;
    let sessions: Vec<String> = (0..7).map(|n| format!("busy-session-{n}")).collect();
    for session in &sessions {
        handed_over(&world, session).await;
    }

    let relays = sessions.iter().map(|session| {
        let world = world.clone();
        let session = session.clone();
        tokio::spawn(async move {
            relay(
                &world,
                &session,
                &format!("question from {session}"),
                &format!("{session}-1"),
            )
            .await
        })
    });
    for outcome in futures::future::join_all(relays).await {
        let (status, body, _) = outcome.unwrap();
        assert_eq!(
            (status, body["handledBy"].clone()),
            (StatusCode::OK, json!("agent")),
            "{body}"
        );
    }

    assert!(
        msc.turned_away.load(Ordering::SeqCst) > 0,
        "the burst met the limit"
    );
    let mut texts = msc.accepted_texts();
    texts.sort();
    let mut expected: Vec<String> = sessions
        .iter()
        .map(|s| format!("question from {s}"))
        .collect();
    expected.sort();
    assert_eq!(texts, expected, "each message accepted once");
}

#[tokio::test]
async fn past_the_budget_a_relay_answers_503_with_retry_after_and_the_retry_delivers_once() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, Some("5")).await;
    handed_over(&world, "busy-relay").await;

    let (status, body, retry_after) =
        relay(&world, "busy-relay", "still there?", "turn-0001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "msc_busy");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(
        world.caic_requests("/ask").await.is_empty(),
        "the bot did not answer"
    );
    assert_eq!(
        world
            .store
            .get("busy-relay")
            .await
            .unwrap()
            .map(|s| s.state),
        Some(SessionState::HandedOver),
        "the agent keeps the conversation"
    );

    msc.per_second.store(3, Ordering::SeqCst);
    let (status, body, _) = relay(&world, "busy-relay", "still there?", "turn-0001").await;
    assert_eq!(
        (status, body["handledBy"].clone()),
        (StatusCode::OK, json!("agent"))
    );
    assert_eq!(msc.accepted_texts(), vec!["still there?".to_owned()]);
}

#[tokio::test]
async fn a_handover_msc_is_too_busy_for_goes_back_to_the_bot() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, Some("5")).await;
    let start = online_intake("busy-handover");
    assert!(matches!(
        world.store.start_intake(&start).await,
        Ok(StartIntakeOutcome::Started(_))
    ));

    let (status, body) = world.end_slot("busy-handover", json!([])).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": false})));
    assert!(msc.accepted_texts().is_empty());
    let (_, view) = world.session_view("busy-handover").await;
    assert_eq!(view["state"], "ended");
    assert_eq!(view["handledBy"], "bot");
    assert_eq!(view["endReason"], "handover_failed");
    let refused = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "msc_refused")
        .cloned();
    assert_eq!(
        refused.map(|e| e["detail"].clone()),
        Some(json!("msc_busy"))
    );
}

/// A peer's number never reaches arithmetic unbounded: a `Retry-After` of u64::MAX once overflowed
/// the wait (a panic, which aborts a release build). Now it is taken as 60 s, past the budget, and
/// passed on to the channel as 60.
#[tokio::test]
async fn a_huge_retry_after_is_bounded_and_passed_on_bounded() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, Some("18446744073709551615")).await;
    handed_over(&world, "huge-retry").await;

    let (status, body, retry_after) = relay(&world, "huge-retry", "hello?", "turn-0001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "msc_busy");
    assert_eq!(retry_after.as_deref(), Some("60"));
    assert_eq!(msc.turned_away.load(Ordering::SeqCst), 1, "not waited for");
    assert_eq!(
        world
            .store
            .get("huge-retry")
            .await
            .unwrap()
            .map(|s| s.state),
        Some(SessionState::HandedOver)
    );
}

/// No `Retry-After` means one second: within the 3 s budget MSC is asked at 0, 1 and 2 s (a default of
/// 2 s would ask twice, of 0 s many times), and the channel is told 1.
#[tokio::test]
async fn without_retry_after_msc_is_asked_again_after_one_second() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, None).await;
    handed_over(&world, "no-retry-after").await;

    let (status, body, retry_after) = relay(&world, "no-retry-after", "hello?", "turn-0001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(msc.turned_away.load(Ordering::SeqCst), 3);
}
