//! The fault matrix: every outbound dependency (DynamoDB, CAIC ask, CAIC event, MSC presence, MSC
//! messages) under every fault (refused, timeout, 5xx, 4xx, unparseable 200, truncated body), each
//! running the flow step that uses it and asserting the documented outcome.

use std::time::{Duration, Instant};

use handover_core::{
    AgentStatus, ClaimOutcome, EndReason, Guarded, IntakeStart, SessionState, StartIntakeOutcome,
};
use handover_tests::faulty::{faulty_base_url, Behaviour, Fault, FaultyPeer, ALL_FAULTS};
use handover_tests::world::{caic_reply, query_of, World};
use handover_tests::{dynamodb_harness_at, memory_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "fault-session-1";

/// Short client limits so timeouts cost a second, not five.
const FAST: [(&str, &str); 3] = [
    ("CAIC_TIMEOUT_MS", "1000"),
    ("MSC_TIMEOUT_MS", "800"),
    ("PRESENCE_TIMEOUT_MS", "500"),
];

fn with_fast<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FAST.iter().copied().chain(extra.iter().copied()).collect()
}

fn livechat() -> Value {
    caic_reply(
        SID,
        "Let me connect you.",
        json!({"livechat": "true", "skill": "billing", "mscWebstore": "NL-shop"}),
    )
}

async fn message(world: &World, text: &str) -> (StatusCode, Value) {
    world.message(json!({"sessionId": SID, "text": text})).await
}

fn no_internals(body: &Value) {
    let shown = body.to_string();
    for internal in [
        "127.0.0.1",
        "reqwest",
        "hyper",
        "dispatch",
        "caic-api-key",
        "msc-secret",
    ] {
        assert!(
            !shown.contains(internal),
            "error body leaks {internal:?}: {shown}"
        );
    }
}

#[tokio::test]
async fn caic_ask_faults_are_a_clear_502_and_store_nothing() {
    for fault in ALL_FAULTS {
        let caic = faulty_base_url(fault).await;
        let world = World::with_env(
            memory_harness().await,
            &with_fast(&[("CAIC_BASE_URL", &caic)]),
        )
        .await;
        let started = Instant::now();
        let (status, body) = message(&world, "agent").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{fault:?}: {body}");
        assert_eq!(body["error"]["code"], "caic_unavailable", "{fault:?}");
        no_internals(&body);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{fault:?} bounded by CAIC_TIMEOUT_MS"
        );
        assert_eq!(world.store.get(SID).await.unwrap(), None, "{fault:?}");
    }
}

#[tokio::test]
async fn caic_event_faults_leave_the_user_with_the_bot_and_nothing_stored() {
    for fault in ALL_FAULTS {
        let caic = FaultyPeer::start(vec![
            (
                "/ask",
                Behaviour::Healthy {
                    status: 200,
                    body: livechat().to_string(),
                },
            ),
            ("/event", Behaviour::Faulty(fault)),
        ])
        .await;
        let world = World::with_env(
            memory_harness().await,
            &with_fast(&[("CAIC_BASE_URL", &caic.url)]),
        )
        .await;
        let (status, body) = message(&world, "agent").await;
        assert_eq!(status, StatusCode::OK, "{fault:?}: {body}");
        assert_eq!(body["handledBy"], "bot");
        assert_eq!(body["answers"], json!(["Let me connect you."]), "{fault:?}");
        assert_eq!(
            world.store.get(SID).await.unwrap(),
            None,
            "{fault:?}: abandoned"
        );
    }
}

#[tokio::test]
async fn presence_faults_mean_agents_offline() {
    for fault in ALL_FAULTS {
        let presence = faulty_base_url(fault).await;
        let world = World::with_env(
            memory_harness().await,
            &with_fast(&[("MSC_PRESENCE_URL", &presence)]),
        )
        .await;
        world.caic_answers("agent", livechat()).await;
        world
            .caic_event_answers(200, caic_reply(SID, "Your name?", json!({})))
            .await;
        let (status, body) = message(&world, "agent").await;
        assert_eq!(status, StatusCode::OK, "{fault:?}");
        assert_eq!(
            body["answers"][1], "Your name?",
            "{fault:?}: the flow still starts"
        );
        let events = world.caic_requests("/event/prechat").await;
        assert_eq!(
            query_of(&events[0], "agentStatus").as_deref(),
            Some("offline"),
            "{fault:?}"
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().unwrap().agent_status,
            AgentStatus::Offline
        );
    }
}

async fn prechat_session(world: &World) {
    let start = IntakeStart {
        session_id: SID.into(),
        skill: Some("billing".into()),
        webstore: Some("NL-shop".into()),
        channel: Some("WebChat".into()),
        agent_status: AgentStatus::Online,
        end_user_url: None,
        culture: None,
        transcript: Vec::new(),
        history: Vec::new(),
        outbox: Vec::new(),
        last_cursor: 0,
        verified: None,
    };
    assert!(matches!(
        world.store.start_intake(&start).await,
        Ok(StartIntakeOutcome::Started(_))
    ));
}

#[tokio::test]
async fn msc_message_faults_release_the_handover_and_nothing_is_stuck() {
    for fault in ALL_FAULTS {
        if fault == Fault::Truncated {
            // A 201 whose body is cut short is still MSC's "accepted": the body is never read.
            continue;
        }
        let msc = faulty_base_url(fault).await;
        let world =
            World::with_env(memory_harness().await, &with_fast(&[("MSC_API_URL", &msc)])).await;
        prechat_session(&world).await;
        let (status, body) = world
            .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"success": false})),
            "{fault:?}"
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().map(|s| s.state),
            Some(handover_core::SessionState::Ended),
            "{fault:?}: back with the bot, the refusal in its history"
        );
        let (status, body) = world.operator_handover(SID).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{fault:?}: {body}");
    }
}

#[tokio::test]
async fn a_truncated_201_from_msc_is_an_accepted_handover() {
    let msc = FaultyPeer::start(vec![(
        "/",
        Behaviour::Healthy {
            status: 201,
            body: String::new(),
        },
    )])
    .await;
    let world = World::with_env(
        memory_harness().await,
        &with_fast(&[("MSC_API_URL", &msc.url)]),
    )
    .await;
    prechat_session(&world).await;
    assert_eq!(
        world.end_slot(SID, json!([])).await.1,
        json!({"success": true})
    );
}

/// A relayed turn is answered once the message is held: MSC failing is the drainer's to meet. A
/// failure that may pass (no answer, a 5xx, a garbled answer) leaves the message in the queue for
/// later, nothing told; MSC's 4xx refuses it for good: the page is told `not_delivered`, the queue
/// lets it go. Either way the lock stays and CAIC sees nothing.
#[tokio::test]
async fn relay_faults_keep_the_message_held_or_refuse_it_for_good_and_keep_the_lock() {
    for fault in ALL_FAULTS {
        if fault == Fault::Truncated {
            continue;
        }
        let msc = faulty_base_url(fault).await;
        let world =
            World::with_env(memory_harness().await, &with_fast(&[("MSC_API_URL", &msc)])).await;
        prechat_session(&world).await;
        let Ok(ClaimOutcome::Claimed(claim)) = world.store.claim(SID, &[]).await else {
            panic!("claim")
        };
        let Ok(Guarded::Applied(_)) = world.store.complete(SID, &claim.token).await else {
            panic!("complete")
        };
        let (status, body) = message(&world, "are you there?").await;
        assert_eq!(status, StatusCode::OK, "{fault:?}: {body}");
        assert_eq!(body["delivery"], "on_its_way", "{fault:?}: {body}");
        assert_eq!(world.drain().await, 1, "{fault:?}: handed to the drainer");
        let refused = fault == Fault::ClientError;
        let (_, outbox) = world.outbox(SID, "").await;
        let told: Vec<&Value> = outbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["messageId"] == body["messageId"])
            .collect();
        if refused {
            assert_eq!(told.len(), 1, "{fault:?}: {outbox}");
            assert_eq!(told[0]["event"], "not_delivered");
            assert_eq!(told[0]["status"], 400);
        } else {
            assert!(told.is_empty(), "{fault:?}: nothing told yet: {outbox}");
        }
        assert_eq!(
            world.outbound_depth().await,
            usize::from(!refused),
            "{fault:?}: held for later, or let go"
        );
        assert!(
            world.caic_requests("/ask").await.is_empty(),
            "{fault:?}: CAIC saw nothing"
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().map(|s| s.state),
            Some(SessionState::HandedOver),
            "{fault:?}: the lock stays"
        );
    }
}

#[tokio::test]
async fn dynamodb_faults_leave_the_user_with_the_bot() {
    for fault in ALL_FAULTS {
        let endpoint = faulty_base_url(fault).await;
        let world = World::with_env(dynamodb_harness_at(&endpoint), &FAST).await;
        world.caic_answers("agent", livechat()).await;
        world
            .caic_event_answers(200, caic_reply(SID, "Your name?", json!({})))
            .await;
        world.msc_accepts_messages(ResponseTemplate::new(201)).await;
        let started = Instant::now();
        let (status, body) = message(&world, "agent").await;
        assert_eq!(status, StatusCode::OK, "{fault:?}: {body}");
        assert_eq!(body["handledBy"], "bot");
        assert_eq!(
            body["answers"],
            json!(["Let me connect you."]),
            "{fault:?}: no flow without a store"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{fault:?}: AWS calls are bounded"
        );
        assert_eq!(
            world.end_slot(SID, json!([])).await.1,
            json!({"success": false}),
            "{fault:?}"
        );
        let (status, body) = world.operator_handover(SID).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
        assert_eq!(body["error"]["code"], "store_unavailable");
        no_internals(&body);
        assert!(
            world.msc_messages().await.is_empty(),
            "{fault:?}: no MSC conversation"
        );
    }
}

/// The SDK retries a put whose response was lost; the retry finds the key taken by the very request
/// that retries it, which must not turn the channel's first try into a 409 `request_in_progress`.
#[tokio::test]
async fn an_idempotency_key_whose_first_put_answered_too_late_is_still_this_requests() {
    let (harness, counter) = handover_tests::counted_dynamodb_harness().await;
    counter.lose_next_response("PutItem");
    assert_eq!(
        harness.store.begin_request("k-lost", "fp").await.unwrap(),
        handover_core::IdempotencyBegin::Fresh
    );
    assert_eq!(counter.count("PutItem"), 2, "the put was retried");
    assert_eq!(
        harness.store.begin_request("k-lost", "fp").await.unwrap(),
        handover_core::IdempotencyBegin::InProgress,
        "another request with the key still waits"
    );
}

/// MSC accepted the handover and the lock write failed: the write is tried again; if it keeps
/// failing, the claim stays as the trace and the next end-user turn after its lease finishes the lock.
#[tokio::test]
async fn a_lock_that_could_not_be_written_after_msc_accepted_is_finished_not_dropped() {
    for (failures, written_at_once) in [(3, true), (9, false)] {
        let (harness, counter) = handover_tests::counted_dynamodb_harness().await;
        let world = World::on(harness).await;
        prechat_session(&world).await;
        world.msc_accepts_messages(ResponseTemplate::new(201)).await;
        world
            .caic_answers("still there?", caic_reply(SID, "Bot.", json!({})))
            .await;
        counter.fail_next("UpdateItem", "handed_over", failures);
        let (_, body) = world
            .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
            .await;
        let state = world.store.get(SID).await.unwrap().map(|s| s.state);
        if written_at_once {
            assert_eq!(body, json!({"success": true}), "retried within the webhook");
            assert_eq!(state, Some(SessionState::HandedOver));
            continue;
        }
        assert_eq!(body, json!({"success": false}));
        assert_eq!(
            state,
            Some(SessionState::HandingOver),
            "the claim is the trace"
        );
        let (_, queued) = message(&world, "hello?").await;
        assert_eq!(queued["queued"], true, "kept behind the unfinished claim");
        world.clock.advance(31);
        let (status, relayed) = message(&world, "still there?").await;
        assert_eq!(status, StatusCode::OK, "{relayed}");
        assert_eq!(
            relayed["handledBy"], "agent",
            "finished, not handed back to the bot"
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().map(|s| s.state),
            Some(SessionState::HandedOver)
        );
        let sent = world.msc_messages().await;
        let ids: Vec<&str> = sent
            .iter()
            .map(|m| m["MessageExternalIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        assert_eq!(ids[0], ids[1], "the repeated handover message keeps its id");
        assert_eq!(sent[2]["Content"], "hello?");
        assert_eq!(sent[3]["Content"], "still there?");
        assert!(world
            .caic_requests("/ask")
            .await
            .iter()
            .all(|r| { query_of(r, "q").as_deref() != Some("still there?") }));
    }
}

/// MSC accepted the handover, the lock was never written, and the end user wrote behind the claim
/// ("hello?", queued).
async fn lock_left_unwritten_with_a_queued_message() -> World {
    let (harness, counter) = handover_tests::counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    prechat_session(&world).await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    counter.fail_next("UpdateItem", "handed_over", 9);
    let (_, body) = world
        .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
        .await;
    assert_eq!(body, json!({"success": false}), "the lock was not written");
    let (_, queued) = message(&world, "hello?").await;
    assert_eq!(queued["queued"], true);
    world
}

async fn agent_says(world: &World, text: &str) -> Value {
    let (status, reply) = world
        .msc_posts_message(json!({"ConversationExternalIdentifier": SID,
                                  "MessageExternalIdentifier": format!("agent-{text}"),
                                  "ConversationGuid": "guid-unwritten",
                                  "Content": text}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

/// The agent answers before the end user writes again, within the claim's lease or after it: the
/// reply proves MSC has the conversation, so it finishes the lock and is delivered, never acknowledged
/// and dropped. What waited behind the claim reaches MSC before the end user's next message.
#[tokio::test]
async fn an_agent_reply_finishes_a_lock_left_unwritten_within_the_lease_or_after_it() {
    for after_lease in [false, true] {
        let world = lock_left_unwritten_with_a_queued_message().await;
        if after_lease {
            world.clock.advance(31);
        }
        let reply = agent_says(&world, "Hi, I am Sam.").await;
        assert_eq!(
            reply["status"], "delivered",
            "after the lease: {after_lease}"
        );
        let session = world.store.get(SID).await.unwrap().expect("session");
        assert_eq!(session.state, SessionState::HandedOver);
        let texts: Vec<&str> = session
            .agent
            .outbox
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(texts, ["Hi, I am Sam."]);
        let (_, relayed) = message(&world, "thanks").await;
        assert_eq!(relayed["handledBy"], "agent", "{relayed}");
        let sent = world.msc_messages().await;
        let contents: Vec<&str> = sent[1..]
            .iter()
            .map(|m| m["Content"].as_str().unwrap())
            .collect();
        assert_eq!(
            contents,
            ["hello?", "thanks"],
            "after the lease: {after_lease}"
        );
    }
}

/// The same, but the handover ends before the end user writes again: what waited never reached the
/// agent, so the bot answers it with the next turn, led by why the handover ended.
#[tokio::test]
async fn a_queue_left_when_the_handover_ends_first_is_answered_by_the_bot() {
    let world = lock_left_unwritten_with_a_queued_message().await;
    agent_says(&world, "Hi, I am Sam.").await;
    let (status, _) = world.operator_release(SID).await;
    assert_eq!(status, StatusCode::OK);
    world
        .caic_answers(
            "hello?\nanyone?",
            caic_reply(SID, "How can I help?", json!({})),
        )
        .await;
    let (status, answered) = message(&world, "anyone?").await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(
        (answered["handledBy"].clone(), answered["answers"].clone()),
        (
            json!("bot"),
            json!([EndReason::OperatorReleased.text(), "How can I help?"])
        )
    );
    assert_eq!(
        world.msc_messages().await.len(),
        1,
        "only the handover reached MSC"
    );
    assert!(world
        .store
        .get(SID)
        .await
        .unwrap()
        .unwrap()
        .queued
        .is_empty());
}

/// The SDK retries a claim, and then a completion, whose response was lost: each retry finds the
/// session as this very caller left it (its token), so the handover is made once: one message to MSC,
/// the session locked, the webhook told `success`.
#[tokio::test]
async fn a_claim_or_a_completion_whose_response_was_lost_is_still_this_callers() {
    for lost in ["handing_over", "handed_over"] {
        let (harness, counter) = handover_tests::counted_dynamodb_harness().await;
        let world = World::on(harness).await;
        prechat_session(&world).await;
        world.msc_accepts_messages(ResponseTemplate::new(201)).await;
        counter.reset();
        counter.lose_next_response_containing("UpdateItem", lost);
        let (_, body) = world
            .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
            .await;
        assert_eq!(body, json!({"success": true}), "{lost} lost");
        assert_eq!(
            counter.count("UpdateItem"),
            4,
            "{lost}: the pace's slot, and the lost write retried once"
        );
        assert_eq!(world.msc_messages().await.len(), 1, "{lost}: one handover");
        assert_eq!(
            world.store.get(SID).await.unwrap().map(|s| s.state),
            Some(SessionState::HandedOver),
            "{lost}"
        );
    }
}

/// A holder whose lease ran out while MSC was answering still completes, as long as nobody took over:
/// the lease decides who may take over, the token who may complete.
#[tokio::test]
async fn a_holder_whose_lease_lapsed_still_completes_when_nobody_took_over() {
    let world = World::on(handover_tests::dynamodb_harness().await).await;
    prechat_session(&world).await;
    let Ok(ClaimOutcome::Claimed(claim)) = world.store.claim(SID, &[]).await else {
        panic!("claim")
    };
    world.clock.advance(31);
    let completed = world.store.complete(SID, &claim.token).await.unwrap();
    assert!(completed.is_applied(), "{completed:?}");
    assert_eq!(
        world.store.get(SID).await.unwrap().map(|s| s.state),
        Some(SessionState::HandedOver)
    );
    // Had another caller taken over, the old token would be refused.
    let world = World::on(handover_tests::dynamodb_harness().await).await;
    prechat_session(&world).await;
    let Ok(ClaimOutcome::Claimed(first)) = world.store.claim(SID, &[]).await else {
        panic!("claim")
    };
    world.clock.advance(31);
    let Ok(ClaimOutcome::Claimed(_)) = world.store.claim(SID, &[]).await else {
        panic!("take-over")
    };
    assert!(!world
        .store
        .complete(SID, &first.token)
        .await
        .unwrap()
        .is_applied());
}

/// The SDK retries an agent reply's amendment whose response was lost: the retry's refusal carries
/// this very write's mark, so the reply counts as delivered and is pushed (not taken for MSC's
/// redelivery, which would leave the channel waiting for its next poll).
#[tokio::test]
async fn an_amendment_whose_response_was_lost_is_still_delivered_and_pushed() {
    let (harness, counter) = handover_tests::counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    prechat_session(&world).await;
    let Ok(ClaimOutcome::Claimed(claim)) = world.store.claim(SID, &[]).await else {
        panic!("claim")
    };
    assert!(world
        .store
        .complete(SID, &claim.token)
        .await
        .unwrap()
        .is_applied());
    world.channel_answers(ResponseTemplate::new(204)).await;
    counter.lose_next_response_containing("UpdateItem", "m-lost");
    let reply = json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "m-lost",
                       "ConversationGuid": "guid-lost", "Content": "Hello"});
    let (_, body) = world.msc_posts_message(reply.clone()).await;
    assert_eq!(body, json!({"status": "delivered"}));
    assert_eq!(world.channel_pushes().await.len(), 1, "pushed");
    let (_, body) = world.msc_posts_message(reply).await;
    assert_eq!(body, json!({"status": "duplicate"}), "MSC's redelivery");
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.agent.outbox.len(), 1);
}
