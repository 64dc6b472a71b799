//! What each step costs in DynamoDB requests, counted on the wire (a proxy in front of moto): a bot
//! turn is one read and no write; a relayed turn one read and, most of the time, no write; the whole
//! handover from the livechat answer to the lock one read and three writes.

use handover_tests::counted_dynamodb_harness;
use handover_tests::world::{caic_reply, World};
use serde_json::json;

const SID: &str = "cost-session-1";

async fn world() -> (World, handover_tests::counting::DynamoCounter) {
    let (harness, counter) = counted_dynamodb_harness().await;
    let world = World::on(harness).await;
    world
        .caic_answers("hello", caic_reply(SID, "Hi!", json!({})))
        .await;
    world.handover_goes_through(SID, json!({})).await;
    (world, counter)
}

#[tokio::test]
async fn a_bot_turn_is_one_read_and_no_write() {
    let (world, counter) = world().await;
    let (status, _) = world
        .message(json!({"sessionId": SID, "text": "hello"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (counter.reads(), counter.writes()),
        (1, 0),
        "{:?}",
        counter.snapshot()
    );
    counter.reset();
    world.message(json!({"text": "hello"})).await;
    assert_eq!(
        (counter.reads(), counter.writes()),
        (0, 0),
        "a new conversation has nothing to read"
    );
    counter.reset();
    let history = json!([{"from": "user", "text": "hi"}, {"from": "bot", "text": "Hello!"}]);
    world
        .message(json!({"sessionId": SID, "text": "hello", "history": history}))
        .await;
    assert_eq!(
        (counter.reads(), counter.writes()),
        (1, 0),
        "the channel's history costs nothing on a bot turn"
    );
}

#[tokio::test]
async fn the_handover_story_is_one_read_and_four_writes() {
    let (world, counter) = world().await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    let (_, reply) = world
        .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
        .await;
    assert_eq!(reply, json!({"success": true}));
    let snapshot = counter.snapshot();
    assert_eq!(
        counter.writes(),
        4,
        "start intake, claim, the handover's slot of MSC's pace, complete: {snapshot:?}"
    );
    assert_eq!(
        counter.reads(),
        1,
        "the gate read of the livechat turn: {snapshot:?}"
    );
}

#[tokio::test]
async fn a_relayed_turn_is_one_read_and_writes_only_to_slide_the_lock() {
    let (world, counter) = world().await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    world.end_slot(SID, json!([])).await;
    counter.reset();
    for _ in 0..5 {
        world.clock.advance(30);
        world
            .message(json!({"sessionId": SID, "text": "to the agent"}))
            .await;
    }
    assert_eq!(
        (counter.reads(), counter.writes()),
        (5, 0),
        "{:?}",
        counter.snapshot()
    );
    counter.reset();
    world.clock.advance(300);
    world
        .message(json!({"sessionId": SID, "text": "later"}))
        .await;
    assert_eq!(
        (counter.reads(), counter.writes()),
        (1, 1),
        "one slide per refresh interval"
    );
}

/// What the drainer spends per message, low load: its slot of MSC's pace (one write while the slot is
/// free), and the receipt for the page (the session's read, its amendment, and with live connections
/// on, the announcement that returns them).
#[tokio::test]
async fn a_delivery_is_one_pace_write_and_the_receipt() {
    let (world, counter) = world().await;
    world
        .channel_answers(wiremock::ResponseTemplate::new(204))
        .await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    world.end_slot(SID, json!([])).await;
    world
        .message(json!({"sessionId": SID, "text": "to the agent"}))
        .await;
    counter.reset();
    assert_eq!(world.drain().await, 1);
    assert_eq!(
        (counter.reads(), counter.writes()),
        (1, 3),
        "{:?}",
        counter.snapshot()
    );
}

/// With live connections on (as deployed), every reply stored in the outbox is also announced to the
/// conversation's pages, and their connections are looked up beside the write that stores it: one
/// read and one write more, whether or not a page is connected.
#[tokio::test]
async fn an_agent_reply_is_two_reads_and_two_writes_once_its_conversation_is_linked() {
    let (world, counter) = world().await;
    world
        .channel_answers(wiremock::ResponseTemplate::new(204))
        .await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    world
        .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
        .await;
    let reply = |id: &str| {
        json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": id,
               "ConversationGuid": "cost-guid-1", "Content": "Hello"})
    };
    counter.reset();
    world.msc_posts_message(reply("m-1")).await;
    assert_eq!(
        (counter.reads(), counter.writes()),
        (3, 4),
        "the first: the reply, its look-ahead and announcement, then the link and its record: {:?}",
        counter.snapshot()
    );
    counter.reset();
    world.msc_posts_message(reply("m-2")).await;
    assert_eq!(
        (counter.reads(), counter.writes()),
        (2, 2),
        "the next: the reply, its look-ahead and its announcement: {:?}",
        counter.snapshot()
    );
}

/// A page's turns with a conversation token cost what the channel's do plus the conversation's quota:
/// one write each. Minting from the backend touches no table; a page's own mint costs its address
/// quota's write.
#[tokio::test]
async fn a_turn_with_a_conversation_token_costs_one_quota_write_more_than_with_the_key() {
    use handover_tests::world::{event, read, send, CHANNEL_KEY};
    let (world, counter) = world().await;
    let (status, minted) = read(
        send(
            &world.ingest,
            event("POST", "/v1/conversations", "", Some(CHANNEL_KEY), ""),
        )
        .await,
    );
    assert_eq!(status, 201);
    assert_eq!(
        (counter.reads(), counter.writes()),
        (0, 0),
        "a backend's mint"
    );
    let turn = |token: &str, body: serde_json::Value| {
        event("POST", "/v1/messages", "", Some(token), &body.to_string())
    };
    let token = minted["token"].as_str().unwrap();
    let (_, first) = read(send(&world.ingest, turn(token, json!({"text": "hello"}))).await);
    assert_eq!(
        (counter.reads(), counter.writes()),
        (0, 1),
        "the first turn: its quota: {:?}",
        counter.snapshot()
    );
    counter.reset();
    let bound = first["token"].as_str().unwrap();
    let (status, _) = read(
        send(
            &world.ingest,
            turn(bound, json!({"sessionId": SID, "text": "hello"})),
        )
        .await,
    );
    assert_eq!(status, 200);
    assert_eq!(
        (counter.reads(), counter.writes()),
        (1, 1),
        "a bot turn: the session and the quota: {:?}",
        counter.snapshot()
    );
}
