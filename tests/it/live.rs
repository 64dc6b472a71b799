//! The pages' live connections end to end: live-connection's handshake and resume as API Gateway's
//! WebSocket API invokes them, the pushes of whatever stores a message in the outbox, and a stub of
//! the management API (tests/src/live.rs) that records every frame and answers 410 for stale
//! connections. The store is moto's DynamoDB unless a test says otherwise.

use futures::future::join_all;
use futures::StreamExt;
use handover_tests::world::{caic_reply, World};
use handover_tests::{counted_dynamodb_harness, dynamodb_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

/// A conversation handed over to MSC (its id is also CAIC's session id). Each asks for an agent in
/// words of its own, so that CAIC's stub answers each with its own session.
async fn handed_over(world: &World, session: &str) {
    let ask = format!("agent for {session}");
    world
        .caic_answers(
            &ask,
            caic_reply(session, "Connecting.", json!({"livechat": true})),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(session, "Your name?", json!({})))
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    world.channel_answers(ResponseTemplate::new(204)).await;
    let (status, body) = world
        .message(json!({"sessionId": session, "text": ask}))
        .await;
    assert_eq!(status, 200, "{body}");
    let slots = json!([{"name": "name", "value": "Jane"}]);
    assert_eq!(
        world.end_slot(session, slots).await.1,
        json!({"success": true}),
        "{session}"
    );
}

async fn agent_says(world: &World, session: &str, id: &str, text: &str) {
    let reply = json!({"ConversationGuid": format!("guid-{session}"),
                       "ConversationExternalIdentifier": session,
                       "MessageExternalIdentifier": id, "Content": text,
                       "SentDateTime": "2026-12-03T10:00:00Z"});
    let (status, body) = world.msc_posts_message(reply).await;
    assert_eq!(status, 200, "{body}");
}

fn messages(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "message")
        .map(|frame| frame["message"].clone())
        .collect()
}

#[tokio::test]
async fn an_agent_reply_reaches_every_live_connection_of_its_conversation_and_no_other() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-a").await;
    handed_over(&world, "live-b").await;
    world.live_resume("L0SM9cOFvHcCIhw=", "live-a", 0).await;
    world.live_resume("tab-a2", "live-a", 0).await;
    world.live_resume("tab-b1", "live-b", 0).await;
    assert_eq!(
        world.connections.frames("L0SM9cOFvHcCIhw="),
        vec![json!({"type": "resumed", "cursor": 0, "handledBy": "agent"})]
    );

    agent_says(&world, "live-a", "m-1", "Hello Jane, Sam here.").await;

    let (_, outbox) = world.outbox("live-a", "after=0").await;
    for tab in ["L0SM9cOFvHcCIhw=", "tab-a2"] {
        assert_eq!(
            messages(&world.connections.frames(tab)),
            outbox["messages"].as_array().unwrap().clone(),
            "{tab}: the outbox route's JSON, once"
        );
    }
    assert!(messages(&world.connections.frames("tab-b1")).is_empty());
    // The signed webhook push of server-side channels goes on as before.
    assert_eq!(world.channel_pushes().await.len(), 1);
}

#[tokio::test]
async fn a_stale_connection_is_forgotten_on_410_and_the_others_still_get_the_message() {
    let (harness, counter) = counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    handed_over(&world, "live-stale").await;
    world.live_resume("tab-gone", "live-stale", 0).await;
    world.live_resume("tab-open", "live-stale", 0).await;
    world.connections.mark_stale("tab-gone");

    agent_says(&world, "live-stale", "m-1", "one").await;
    assert_eq!(world.connections.cursors("tab-open"), vec![1]);
    assert_eq!(world.connections.gone_answers("tab-gone"), 1);

    counter.reset();
    agent_says(&world, "live-stale", "m-2", "two").await;
    assert_eq!(world.connections.cursors("tab-open"), vec![1, 2]);
    assert_eq!(
        world.connections.gone_answers("tab-gone"),
        1,
        "forgotten: not posted to again"
    );
}

#[tokio::test]
async fn a_connection_opened_with_a_cursor_gets_exactly_what_it_missed_then_live_messages() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-cursor").await;
    for (id, text) in [("m-1", "one"), ("m-2", "two"), ("m-3", "three")] {
        agent_says(&world, "live-cursor", id, text).await;
    }
    world.live_resume("tab", "live-cursor", 1).await;
    let frames = world.connections.frames("tab");
    assert_eq!(world.connections.cursors("tab"), vec![2, 3]);
    assert_eq!(
        frames.last(),
        Some(&json!({"type": "resumed", "cursor": 3, "handledBy": "agent"})),
        "caught up, then told so"
    );
    agent_says(&world, "live-cursor", "m-4", "four").await;
    // The operator hands it back: the end and its reason reach the page too.
    assert_eq!(world.operator_release("live-cursor").await.0, 200);
    assert_eq!(world.connections.cursors("tab"), vec![2, 3, 4, 5]);
    let end = messages(&world.connections.frames("tab")).pop().unwrap();
    assert_eq!(end["event"], "handover_ended");
    assert_eq!(end["reason"], "operator_released");
}

/// MSC's `ConversationStarted` tells the page who took the conversation, once: a repeat of the event
/// (MSC retrying) stores and pushes nothing more.
#[tokio::test]
async fn an_agent_joining_reaches_the_page_once() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-joined").await;
    world.live_resume("tab", "live-joined", 0).await;
    agent_says(&world, "live-joined", "m-1", "Hello").await;
    let started = json!({"Name": "ConversationStarted",
                         "Payload": {"ConversationId": "guid-live-joined", "AgentName": "Sam"}});
    for _ in 0..2 {
        let (status, body) = world.msc_posts_event(started.clone()).await;
        assert_eq!(
            (status.as_u16(), &body["status"]),
            (200, &json!("agent_joined"))
        );
    }
    let pushed = messages(&world.connections.frames("tab"));
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    assert_eq!(pushed[1]["event"], "agent_joined");
    assert_eq!(pushed[1]["agentName"], "Sam");
    assert_eq!(pushed[1]["text"], "Sam has joined the conversation.");
    let (_, outbox) = world.outbox("live-joined", "after=0").await;
    assert_eq!(
        outbox["messages"].as_array().unwrap().len(),
        2,
        "stored once"
    );
}

/// The page is killed after the reply is stored and before it is pushed (its connection is gone when
/// the push arrives); its next connection, with the cursor it had, gets the reply once.
#[tokio::test]
async fn a_page_killed_between_the_outbox_write_and_the_push_gets_the_message_on_its_next_connection_once(
) {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-killed").await;
    world.live_resume("tab-before", "live-killed", 0).await;
    agent_says(&world, "live-killed", "m-1", "one").await;
    world.connections.mark_stale("tab-before");
    agent_says(&world, "live-killed", "m-2", "two").await;
    assert_eq!(world.connections.cursors("tab-before"), vec![1]);

    world.live_resume("tab-after", "live-killed", 1).await;
    agent_says(&world, "live-killed", "m-3", "three").await;
    assert_eq!(world.connections.cursors("tab-after"), vec![2, 3]);
}

/// A push that fails for another reason than 410 closes the connection, so that the page reconnects
/// and resumes rather than wait on a connection that missed a message.
#[tokio::test]
async fn a_push_that_fails_closes_the_connection_so_the_page_resumes() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-failing").await;
    world.live_resume("tab", "live-failing", 0).await;
    world.connections.fail_with(500);
    agent_says(&world, "live-failing", "m-1", "one").await;
    assert_eq!(world.connections.deleted(), vec!["tab".to_owned()]);
    world.connections.fail_with(0);
    let (_, outbox) = world.outbox("live-failing", "after=0").await;
    assert_eq!(
        outbox["messages"][0]["id"], "m-1",
        "the outbox is the truth"
    );
}

#[tokio::test]
async fn the_handshake_refuses_expired_forged_and_unbound_tokens_before_any_store_request() {
    let (harness, counter) = counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    let valid = world.token_for("live-handshake");
    let forged = {
        let (head, _) = valid.rsplit_once('.').unwrap();
        format!("{head}.c2lnbmVkIGJ5IHNvbWVib2R5IGVsc2U")
    };
    let unbound = {
        let keys = handover_core::token::TokenKeys::new(
            handover_core::config::Keys {
                current: handover_tests::world::CONVERSATION_TOKEN_SECRET.into(),
                next: None,
            },
            60,
        );
        keys.issue(None, world.now()).unwrap().0
    };
    counter.reset();
    for (token, status, code) in [
        (None, 401, "unauthorized"),
        (Some(forged.as_str()), 401, "unauthorized"),
        (Some("not-a-token"), 401, "unauthorized"),
        (Some(unbound.as_str()), 409, "no_conversation_yet"),
    ] {
        let (got, body) = world.live_connect("tab-refused", token).await;
        assert_eq!(
            (got.as_u16(), body["error"]["code"].as_str()),
            (status, Some(code))
        );
    }
    world.clock.advance(86_400);
    let (got, _) = world.live_connect("tab-refused", Some(&valid)).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "expired");
    assert_eq!(counter.snapshot().len(), 0, "{:?}", counter.snapshot());
    assert!(world.connections.connections().is_empty());
}

#[tokio::test]
async fn a_resume_gets_only_its_own_conversation_and_bad_frames_get_an_error_frame() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, "live-own").await;
    handed_over(&world, "live-other").await;
    agent_says(&world, "live-own", "m-own", "yours").await;
    agent_says(&world, "live-other", "m-other", "not yours").await;
    // Connected with its own token, resumed with another conversation's: it gets that one's, and
    // only because it holds that one's token.
    world.live_resume("tab-own", "live-own", 0).await;
    let got = messages(&world.connections.frames("tab-own"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], "m-own");

    for (frame, code) in [
        (json!({"type": "hello"}), "invalid_frame"),
        (json!({"type": "resume"}), "invalid_frame"),
        (
            json!({"type": "resume", "token": "x".repeat(9000)}),
            "frame_too_large",
        ),
        (
            json!({"type": "resume", "token": "forged", "after": 0}),
            "unauthorized",
        ),
    ] {
        world.connections.forget();
        assert_eq!(world.live_frame("tab-bad", &frame).await, 200);
        let frames = world.connections.frames("tab-bad");
        assert_eq!(frames.len(), 1, "{frame}");
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["error"]["code"], code, "{frame}");
    }
    world.connections.forget();
    assert_eq!(
        world.live_frame("tab-bad", &json!({"type": "ping"})).await,
        200
    );
    assert!(
        world.connections.frames("tab-bad").is_empty(),
        "a ping needs no answer"
    );
}

/// Replies stored while pages resume, all at once, against DynamoDB's conditional writes: every page
/// gets every message after its cursor exactly once, whether by the catch-up or by a push.
#[tokio::test]
async fn racing_replies_and_resumes_deliver_each_message_once_to_each_connection() {
    let world = World::on(dynamodb_harness().await).await;
    let session = "live-race";
    handed_over(&world, session).await;
    agent_says(&world, session, "m-0", "before").await;
    let replies = (1..=12).map(|i| {
        let world = &world;
        async move { agent_says(world, session, &format!("m-{i}"), "racing").await }
    });
    let pages = (0..8).map(|page| {
        let world = &world;
        async move {
            world
                .live_resume(&format!("tab-{page}"), session, page % 2)
                .await
        }
    });
    futures::join!(join_all(replies), join_all(pages));
    let (_, outbox) = world.outbox(session, "after=0").await;
    let last = outbox["messages"].as_array().unwrap().len() as u64;
    assert_eq!(last, 13);
    for page in 0..8u64 {
        let mut cursors = world.connections.cursors(&format!("tab-{page}"));
        let received = cursors.len();
        cursors.sort_unstable();
        cursors.dedup();
        assert_eq!(cursors.len(), received, "tab-{page}: nothing twice");
        assert_eq!(
            cursors,
            (page % 2 + 1..=last).collect::<Vec<_>>(),
            "tab-{page}: nothing missing"
        );
    }
}

/// A thousand pages reconnecting at once (a deployment, the 2-hour close, a network back): each
/// costs one read and one write, however many reconnect together. Most conversations are the bot's
/// (nothing in their outbox); some are with an agent, with a message to catch up on.
#[tokio::test]
async fn a_reconnect_storm_costs_each_page_one_read_and_one_write() {
    let (harness, counter) = counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    let pages = 1_000;
    let with_agent: Vec<String> = (0..10).map(|i| format!("live-storm-{i}")).collect();
    for session in &with_agent {
        handed_over(&world, session).await;
        agent_says(&world, session, &format!("{session}-m-1"), "hello").await;
    }
    let tokens: Vec<String> = (0..pages)
        .map(|page| world.token_for(&format!("live-storm-{page}")))
        .collect();
    counter.reset();
    // 16 at a time: one moto process, one request at a time, stands in for DynamoDB, and the SDK's
    // one-second attempt timeout would fail what it cannot answer in time on a loaded machine
    // (deployed, each page is its own invocation).
    let statuses: Vec<StatusCode> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(page, token)| {
            let world = &world;
            async move {
                let frame = json!({"type": "resume", "token": token, "after": 0});
                world.live_frame(&format!("storm-{page}"), &frame).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    // Counted as the operations the code called: on a loaded machine the SDK may retry one whose
    // attempt timed out, which is the same operation again, not a page costing more.
    let snapshot = counter.snapshot();
    assert_eq!(counter.operations(), (pages, pages), "{snapshot:?}");
    for page in 0..pages {
        let expected: Vec<u64> = if page < with_agent.len() {
            vec![1]
        } else {
            vec![]
        };
        let tab = format!("storm-{page}");
        assert_eq!(world.connections.cursors(&tab), expected, "{tab}");
        assert_eq!(
            world
                .connections
                .frames(&tab)
                .last()
                .map(|f| f["type"].clone()),
            Some(json!("resumed")),
            "{tab}"
        );
    }
}
