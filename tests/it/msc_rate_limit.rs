//! MSC's rate limit (3 requests a second, 180 a minute): a stub MSC that enforces it. Every message
//! but the handover's is held in the outbound queue (moto's SQS) and delivered by the drainer at the
//! pace `MSC_REQUESTS_PER_SECOND` sets, shared by every drainer and every handover through the sessions
//! table; a turn is answered once its message is held. MSC busy or failing slows the drain and loses
//! nothing; MSC refusing a message (4xx) is recorded and not tried again; a handover MSC does not take
//! within its bound goes back to the bot (rule 7).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// When each accepted message arrived.
    accepted_at: Arc<Mutex<Vec<Instant>>>,
    turned_away: Arc<AtomicUsize>,
    /// Every request, accepted or not.
    asked: Arc<Mutex<Vec<Value>>>,
    /// Until then, MSC fails (503 without `Retry-After`), as when it is down.
    down_until: Arc<Mutex<Option<Instant>>>,
    /// Messages with this text are refused for good (400).
    refuse: Option<&'static str>,
}

impl RateLimitedMsc {
    async fn mount(
        world: &World,
        per_second: usize,
        retry_after: Option<&'static str>,
    ) -> RateLimitedMsc {
        Self::mount_with(world, per_second, retry_after, None).await
    }

    async fn mount_with(
        world: &World,
        per_second: usize,
        retry_after: Option<&'static str>,
        refuse: Option<&'static str>,
    ) -> RateLimitedMsc {
        let msc = RateLimitedMsc {
            per_second: Arc::new(AtomicUsize::new(per_second)),
            retry_after,
            recent: Arc::default(),
            accepted: Arc::default(),
            accepted_at: Arc::default(),
            turned_away: Arc::default(),
            asked: Arc::default(),
            down_until: Arc::default(),
            refuse,
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
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.asked.lock().unwrap().push(body.clone());
        if self
            .down_until
            .lock()
            .unwrap()
            .is_some_and(|until| now < until)
        {
            return ResponseTemplate::new(503);
        }
        if self.refuse.is_some_and(|text| body["Content"] == text) {
            return ResponseTemplate::new(400);
        }
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
        self.accepted.lock().unwrap().push(body);
        self.accepted_at.lock().unwrap().push(now);
        ResponseTemplate::new(201)
    }
}

async fn handed_over(world: &World, session_id: &str) {
    handover_tests::handed_over_in(world.store.as_ref(), session_id).await;
}

async fn relay(world: &World, session_id: &str, text: &str, key: &str) -> (StatusCode, Value) {
    let body = json!({"sessionId": session_id, "text": text}).to_string();
    let mut request = event("POST", "/v1/messages", "", Some(CHANNEL_KEY), &body);
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    read(send(&world.ingest, request).await)
}

/// MSC's own pace, as deployed.
const AT_MSCS_PACE: &[(&str, &str)] = &[("MSC_REQUESTS_PER_SECOND", "3")];

/// Lambda's SQS poller with msc-outbound at its maximum concurrency (2): two drainers, each taking a
/// batch at a time, until `stop` is set.
fn drainers(world: &Arc<World>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let world = world.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let queue = handover_tests::moto_outbound(&world.outbound_queue);
                while !stop.load(Ordering::SeqCst) {
                    let polled = handover_core::flow::outbound::poll_sqs_once(
                        &world.drainer,
                        &queue,
                        Some(30),
                    )
                    .await;
                    // Lambda's poller polls again; what it had in hand comes round after the timeout.
                    if polled.unwrap_or(0) == 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The most messages MSC accepted within any one second.
fn most_in_any_second(accepted_at: &[Instant]) -> usize {
    let mut sorted = accepted_at.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|at| at.duration_since(sorted[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The texts MSC accepted for one conversation, in the order it accepted them.
fn texts_of(accepted: &[Value], conversation: &str) -> Vec<String> {
    accepted
        .iter()
        .filter(|m| m["ConversationExternalIdentifier"] == conversation)
        .map(|m| m["Content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The load: 20 conversations each writing 10 messages as fast as they can, against an MSC that
/// allows 3 a second. Every turn is answered 200 at once; the drainers deliver every message once, in
/// order within its conversation, never more than 3 in any second (MSC turns none away); a handover made
/// in the middle of it reaches MSC within 2 s (its slot comes after at most the two the drainers hold).
/// The pace is the memory store's here: moto serves one request at a time, and under this load its
/// round trips alone would be the jitter the pace's margin is for (the DynamoDB adapter's reservations
/// under concurrency are the store contract's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_conversations_of_ten_messages_reach_msc_paced_in_order_and_once() {
    let world = Arc::new(World::with_env(memory_harness().await, AT_MSCS_PACE).await);
    let msc = RateLimitedMsc::mount(&world, 3, Some("1")).await;
    let sessions: Vec<String> = (0..20).map(|n| format!("burst-{n:02}")).collect();
    for session in &sessions {
        handed_over(&world, session).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drain = drainers(&world, &stop);

    let writers = sessions.iter().map(|session| {
        let world = world.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in 1..=10 {
                let key = format!("{session}-{n}");
                let text = format!("message {n}");
                let mut answer = relay(&world, &session, &text, &key).await;
                // moto serves one request at a time for the whole test suite: when its queue does
                // not answer in time, the turn is a 503 and a channel sends it again, same key.
                while answer.1["error"]["code"] == "outbound_unavailable" {
                    answer = relay(&world, &session, &text, &key).await;
                }
                answers.push(answer);
            }
            answers
        })
    });
    for answers in futures::future::join_all(writers).await {
        for (status, body) in answers.unwrap() {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(
                (body["handledBy"].clone(), body["delivery"].clone()),
                (json!("agent"), json!("on_its_way")),
                "{body}"
            );
        }
    }

    // A handover in the middle of the drain: it does not wait behind the queue.
    until(
        "a tenth of the burst delivered",
        Duration::from_secs(60),
        || msc.accepted.lock().unwrap().len() >= 20,
    )
    .await;
    assert!(matches!(
        world
            .store
            .start_intake(&online_intake("burst-handover"))
            .await,
        Ok(StartIntakeOutcome::Started(_))
    ));
    let started = Instant::now();
    let (status, made) = world.end_slot("burst-handover", json!([])).await;
    let took = started.elapsed();
    assert_eq!((status, made), (StatusCode::OK, json!({"success": true})));
    assert!(took < Duration::from_secs(2), "the handover took {took:?}");

    until("every message delivered", Duration::from_secs(150), || {
        msc.accepted.lock().unwrap().len() >= 201
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    futures::future::join_all(drain).await;

    assert_eq!(
        msc.turned_away.load(Ordering::SeqCst),
        0,
        "MSC turned none away"
    );
    let accepted = msc.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 201, "each message once, and the handover");
    assert!(
        most_in_any_second(&msc.accepted_at.lock().unwrap()) <= 3,
        "never more than 3 in any second"
    );
    let expected: Vec<String> = (1..=10).map(|n| format!("message {n}")).collect();
    for session in &sessions {
        assert_eq!(
            texts_of(&accepted, session),
            expected,
            "{session}: in order, once"
        );
    }
    assert_eq!(world.outbound_depth().await, 0, "nothing left held");
}

/// MSC down for 30 seconds (503 to everything), then back: the drain slows (each message comes round
/// after a growing backoff) and every message arrives once, in order; nothing is refused or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn msc_down_for_thirty_seconds_then_back_loses_nothing_and_sends_nothing_twice() {
    const DOWN: Duration = Duration::from_secs(30);
    let world = Arc::new(World::with_env(memory_harness().await, AT_MSCS_PACE).await);
    let msc = RateLimitedMsc::mount(&world, 3, Some("1")).await;
    *msc.down_until.lock().unwrap() = Some(Instant::now() + DOWN);
    let sessions = ["down-1", "down-2", "down-3"];
    for session in sessions {
        handed_over(&world, session).await;
        for n in 1..=3 {
            let (status, body) = relay(
                &world,
                session,
                &format!("message {n}"),
                &format!("{session}-{n}"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drain = drainers(&world, &stop);
    until(
        "every message delivered",
        DOWN + Duration::from_secs(60),
        || msc.accepted.lock().unwrap().len() >= 9,
    )
    .await;
    // Anything still coming round would be a repeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    futures::future::join_all(drain).await;

    let accepted = msc.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 9, "nothing twice");
    let expected: Vec<String> = (1..=3).map(|n| format!("message {n}")).collect();
    for session in sessions {
        assert_eq!(texts_of(&accepted, session), expected, "{session}");
    }
    let tries = msc.asked.lock().unwrap().len();
    assert!(
        tries < 9 * 12,
        "the drain slowed while MSC was down ({tries} requests)"
    );
    assert_eq!(world.outbound_depth().await, 0);
    let (_, outbox) = world.outbox("down-1", "").await;
    assert!(
        outbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["event"] != "not_delivered"),
        "{outbox}"
    );
}

/// MSC refusing a message for good (400): it is asked once, the page is told `not_delivered` (the
/// session's history and the metrics say so too), and the messages after it still go.
#[tokio::test]
async fn a_message_msc_refuses_is_recorded_and_not_tried_again() {
    const SID: &str = "refused-relay";
    handover_tests::emf_lines(SID);
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount_with(&world, 3, Some("1"), Some("refuse me")).await;
    handed_over(&world, SID).await;
    let (_, refused) = relay(&world, SID, "refuse me", "turn-1").await;
    let (_, next) = relay(&world, SID, "and this", "turn-2").await;
    world.drain().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    world.drain().await;

    let asked = msc.asked.lock().unwrap().clone();
    assert_eq!(
        asked.iter().filter(|m| m["Content"] == "refuse me").count(),
        1,
        "asked once, not again"
    );
    assert_eq!(msc.accepted_texts(), ["and this"]);
    assert_eq!(world.outbound_depth().await, 0, "nothing held for later");
    let (_, outbox) = world.outbox(SID, "").await;
    let events: Vec<(Value, Value, Value)> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["event"].clone(),
                m["messageId"].clone(),
                m["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                json!("not_delivered"),
                refused["messageId"].clone(),
                json!(400)
            ),
            (json!("delivered"), next["messageId"].clone(), Value::Null),
        ]
    );
    let (_, view) = world.session_view(SID).await;
    assert!(
        view["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "message_refused_by_msc" && e["detail"] == "status 400"),
        "{view}"
    );
    let lines = handover_tests::emf_lines(SID);
    assert!(
        lines
            .iter()
            .any(|l| l["Function"] == "msc-outbound" && l["MessagesRefusedByMsc"] == 1.0),
        "{lines:#?}"
    );
}

/// MSC busy: the turn does not wait for it (answered at once); the drainer waits as `Retry-After`
/// asks and delivers once MSC has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_msc_is_waited_out_by_the_drainer_not_the_end_user() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, Some("1")).await;
    handed_over(&world, "busy-relay").await;

    let started = Instant::now();
    let (status, body) = relay(&world, "busy-relay", "still there?", "turn-0001").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivery"], "on_its_way");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert!(
        world.caic_requests("/ask").await.is_empty(),
        "the bot did not answer"
    );

    let room = msc.per_second.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        room.store(3, Ordering::SeqCst);
    });
    world.drain().await;
    assert!(msc.turned_away.load(Ordering::SeqCst) >= 1, "MSC was busy");
    assert_eq!(msc.accepted_texts(), vec!["still there?".to_owned()]);
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
/// the wait (a panic, which aborts a release build). Now it is taken as 60 s: every sender holds back
/// 60 s at most, and the message stays held.
#[tokio::test]
async fn a_huge_retry_after_holds_the_pace_back_a_minute_at_most() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, Some("18446744073709551615")).await;
    handed_over(&world, "huge-retry").await;

    let (status, body) = relay(&world, "huge-retry", "hello?", "turn-0001").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    world.drain().await;
    assert_eq!(msc.turned_away.load(Ordering::SeqCst), 1, "not waited for");
    assert_eq!(world.outbound_depth().await, 1, "still held");
    let now = handover_core::Clock::now_millis(&handover_core::SystemClock);
    let next = world
        .store
        .reserve_send(now, 1, now)
        .await
        .expect("the pace");
    let handover_core::store::Reserved::NotBefore(next) = next else {
        panic!("the pace is held back")
    };
    assert!(
        (55_000..=61_000).contains(&(next - now)),
        "held back {} ms",
        next - now
    );
}

/// No `Retry-After` means one second: within a handover's 3 s MSC is asked at 0, 1 and 2 s (a default
/// of 2 s would ask twice, of 0 s many times).
#[tokio::test]
async fn without_retry_after_msc_is_asked_again_after_one_second() {
    let world = World::on(memory_harness().await).await;
    let msc = RateLimitedMsc::mount(&world, 0, None).await;
    let start = online_intake("no-retry-after");
    assert!(matches!(
        world.store.start_intake(&start).await,
        Ok(StartIntakeOutcome::Started(_))
    ));
    let (_, body) = world.end_slot("no-retry-after", json!([])).await;
    assert_eq!(body, json!({"success": false}));
    assert_eq!(msc.turned_away.load(Ordering::SeqCst), 3);
}
