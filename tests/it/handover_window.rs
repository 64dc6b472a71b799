//! Messages that arrive while a handover is being made: accepted, kept in order, and posted to MSC
//! right after the handover message; after a failed handover, answered by the bot. Nothing refused,
//! nothing dropped, within a bound.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use handover_core::SessionState;
use handover_tests::world::{caic_reply, World};
use handover_tests::{dynamodb_harness, memory_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "handover-window-session-01";

async fn intake_started(world: &World, msc: ResponseTemplate) {
    world
        .caic_answers(
            "agent",
            caic_reply(
                SID,
                "Connecting.",
                json!({"livechat": true, "skill": "billing"}),
            ),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(SID, "Your name?", json!({})))
        .await;
    world.msc_accepts_messages(msc).await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
}

async fn say(world: &World, text: &str) -> (StatusCode, Value) {
    world.message(json!({"sessionId": SID, "text": text})).await
}

/// Waits until the end-slot webhook running beside the test holds the claim.
async fn until_handing_over(world: &World) {
    for _ in 0..200 {
        let state = world.store.get(SID).await.unwrap().map(|s| s.state);
        if state == Some(SessionState::HandingOver) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the claim was never taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_during_the_handover_follow_it_to_msc_in_order_once_each() {
    let world = Arc::new(World::on(dynamodb_harness().await).await);
    // MSC takes its time, so the claim is held while the end user writes.
    intake_started(
        &world,
        ResponseTemplate::new(201).set_delay(Duration::from_millis(700)),
    )
    .await;
    let end_slot = {
        let world = Arc::clone(&world);
        tokio::spawn(async move {
            world
                .end_slot(SID, json!([{"name": "name", "value": "Jane Doe"}]))
                .await
        })
    };
    until_handing_over(&world).await;
    for text in ["hello?", "is anyone there?", "my order is 1234"] {
        let (status, reply) = say(&world, text).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            (
                reply["handledBy"].clone(),
                reply["queued"].clone(),
                reply["answers"].clone()
            ),
            (json!("agent"), json!(true), json!([]))
        );
    }
    let concurrent = (0..5).map(|n| {
        let world = Arc::clone(&world);
        tokio::spawn(async move { say(&world, &format!("concurrent {n}")).await })
    });
    for sent in join_all(concurrent).await {
        assert_eq!(sent.unwrap().1["queued"], true);
    }
    assert_eq!(end_slot.await.unwrap().1, json!({"success": true}));

    let sent = world.msc_messages().await;
    let contents: Vec<&str> = sent
        .iter()
        .map(|m| m["Content"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 9, "{contents:?}");
    assert!(
        contents[0].starts_with("Conversation handed over"),
        "handover first"
    );
    assert_eq!(
        contents[1..4],
        ["hello?", "is anyone there?", "my order is 1234"]
    );
    let mut concurrent: Vec<&str> = contents[4..].to_vec();
    concurrent.sort_unstable();
    assert_eq!(
        concurrent,
        (0..5)
            .map(|n| format!("concurrent {n}"))
            .collect::<Vec<_>>()
    );
    let ids: std::collections::BTreeSet<&str> = sent
        .iter()
        .map(|m| m["MessageExternalIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 9, "each its own id");
    assert!(sent[1]["MessageExternalIdentifier"]
        .as_str()
        .unwrap()
        .ends_with("-1"));
    assert!(sent[1..]
        .iter()
        .all(|m| m["RelationName"] == sent[0]["RelationName"]));
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.state, SessionState::HandedOver);
    assert!(session.queued.is_empty(), "posted, then forgotten");
    assert!(session.intake.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_failed_handover_the_bot_answers_what_waited() {
    let world = Arc::new(World::on(dynamodb_harness().await).await);
    intake_started(
        &world,
        ResponseTemplate::new(500).set_delay(Duration::from_millis(700)),
    )
    .await;
    let end_slot = {
        let world = Arc::clone(&world);
        tokio::spawn(async move { world.end_slot(SID, json!([])).await })
    };
    until_handing_over(&world).await;
    assert_eq!(say(&world, "hello?").await.1["queued"], true);
    assert_eq!(say(&world, "still there?").await.1["queued"], true);
    assert_eq!(end_slot.await.unwrap().1, json!({"success": false}));
    let kept = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(kept.state, SessionState::Ended);
    assert_eq!(kept.queued.len(), 2, "none dropped");
    assert!(kept.intake.is_empty());

    world
        .caic_answers(
            "hello?\nstill there?\nanyone?",
            caic_reply(SID, "I am here. How can I help?", json!({})),
        )
        .await;
    let (status, reply) = say(&world, "anyone?").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["handledBy"], "bot");
    assert_eq!(
        reply["answers"],
        json!([
            "No colleague could take over the conversation. The chatbot is here to help again.",
            "I am here. How can I help?"
        ])
    );
    assert!(world
        .store
        .get(SID)
        .await
        .unwrap()
        .unwrap()
        .queued
        .is_empty());
    world
        .caic_answers("thanks", caic_reply(SID, "You are welcome.", json!({})))
        .await;
    assert_eq!(
        say(&world, "thanks").await.1["answers"],
        json!(["You are welcome."])
    );
}

#[tokio::test]
async fn the_queue_is_bounded_and_a_full_queue_changes_nothing() {
    for harness in [memory_harness().await, dynamodb_harness().await] {
        let world = World::on(harness).await;
        intake_started(&world, ResponseTemplate::new(201)).await;
        // A claim held (as by an end-slot webhook waiting on MSC).
        world.store.claim(SID, &[]).await.unwrap();
        for n in 0..20 {
            assert_eq!(say(&world, &format!("m{n}")).await.1["queued"], true);
        }
        let (status, full) = say(&world, "one more").await;
        assert_eq!(
            (status, full["error"]["code"].clone()),
            (StatusCode::TOO_MANY_REQUESTS, json!("handover_queue_full"))
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().unwrap().queued.len(),
            20
        );

        let world = World::on(memory_harness().await).await;
        intake_started(&world, ResponseTemplate::new(201)).await;
        world.store.claim(SID, &[]).await.unwrap();
        let quarter = "x".repeat(4_096);
        for _ in 0..4 {
            assert_eq!(say(&world, &quarter).await.1["queued"], true);
        }
        assert_eq!(
            say(&world, "y").await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "16 KiB"
        );
        assert_eq!(world.store.get(SID).await.unwrap().unwrap().queued.len(), 4);
        assert!(world.msc_messages().await.is_empty());
    }
}
