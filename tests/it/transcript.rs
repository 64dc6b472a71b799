//! The agent sees the conversation: the handover message carries what happened before it, formatted
//! for an agent inbox; nothing of it stays in the table once the handover is made; one name throughout.

use handover_tests::world::{caic_reply, World};
use handover_tests::{dynamodb_harness, memory_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "transcript-session-0001";

async fn scripted(world: &World) {
    world
        .caic_answers(
            "Can I talk to a person?",
            caic_reply(
                SID,
                "Let me connect you to a colleague.",
                json!({"livechat": true, "skill": "billing"}),
            ),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(SID, "What is your name?", json!({})))
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
}

fn history(turns: usize) -> Value {
    (0..turns)
        .map(|n| {
            let from = if n % 2 == 0 { "user" } else { "bot" };
            json!({"from": from, "text": format!("turn {n}")})
        })
        .collect()
}

#[tokio::test]
async fn the_agent_reads_the_conversation_before_the_handover() {
    let world = World::on(dynamodb_harness().await).await;
    scripted(&world).await;
    let history = json!([
        {"from": "user", "text": "Where is my parcel?"},
        {"from": "bot", "text": "Which order number?"},
        {"from": "user", "text": "  4711  "},
        {"from": "bot", "text": "That order was sent on Monday."},
    ]);
    let (status, reply) = world
        .message(json!({"sessionId": SID, "text": "Can I talk to a person?", "history": history,
                        "endUserUrl": "https://shop.example/orders", "endUser": {"name": "J. Doe"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let slots = json!([{"name": "name", "value": "Jane Doe"}, {"name": "email", "value": "jane@example.com"}]);
    assert_eq!(world.end_slot(SID, slots).await.1, json!({"success": true}));

    let sent = world.msc_messages().await;
    assert_eq!(
        sent[0]["Content"],
        "Conversation handed over by the chatbot. Topic: billing.\n\
         \n\
         Before the handover:\n\
         Customer: Where is my parcel?\n\
         Chatbot: Which order number?\n\
         Customer: 4711\n\
         Chatbot: That order was sent on Monday.\n\
         Customer: Can I talk to a person?\n\
         Chatbot: Let me connect you to a colleague.\n\
         \n\
         Intake:\n\
         name: Jane Doe\n\
         email: jane@example.com\n\
         \n\
         Page: https://shop.example/orders"
    );
    let locked = world.store.get(SID).await.unwrap().unwrap();
    assert!(locked.transcript.is_empty(), "nothing of it stays");
    assert!(locked.intake.is_empty());

    // One person, one name: the relayed message carries the handover's name, whatever the channel says.
    world
        .message(json!({"sessionId": SID, "text": "hello?", "endUser": {"name": "J. Doe"}}))
        .await;
    let sent = world.msc_messages().await;
    assert_eq!(sent[0]["RelationName"], "Jane Doe");
    assert_eq!(sent[1]["RelationName"], "Jane Doe");
}

#[tokio::test]
async fn the_handover_message_shows_at_most_transcript_turns_earlier_turns() {
    let world = World::with_env(memory_harness().await, &[("TRANSCRIPT_TURNS", "3")]).await;
    scripted(&world).await;
    world
        .message(
            json!({"sessionId": SID, "text": "Can I talk to a person?", "history": history(12)}),
        )
        .await;
    world.end_slot(SID, json!([])).await;
    let content = world.msc_messages().await[0]["Content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!content.contains("turn 8"), "{content}");
    assert!(
        content
            .contains("Chatbot: turn 9\nCustomer: turn 10\nChatbot: turn 11\nCustomer: Can I talk"),
        "{content}"
    );
    assert_eq!(
        world.msc_messages().await[0]["RelationName"],
        "Website visitor"
    );
}

#[tokio::test]
async fn a_malformed_history_is_a_4xx_naming_it_and_changes_nothing() {
    let world = World::on(memory_harness().await).await;
    scripted(&world).await;
    for (history, mentions) in [
        (json!([{"from": "agent", "text": "hi"}]), "user or bot"),
        (json!([{"from": "user", "text": "   "}]), "not all blank"),
        (
            json!([{"from": "user", "text": "x".repeat(2_001)}]),
            "1-2000",
        ),
        (history(51), "at most 50"),
        (json!([{"from": "user"}]), "missing field `text`"),
        (
            json!({"from": "user", "text": "hi"}),
            "list of JSON objects",
        ),
    ] {
        let (status, got) = world
            .message(
                json!({"sessionId": SID, "text": "Can I talk to a person?", "history": history}),
            )
            .await;
        assert_eq!(
            (status, got["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_body")),
            "{got}"
        );
        let message = got["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        );
    }
    assert_eq!(world.store.get(SID).await.unwrap(), None);
    assert!(world.caic.received_requests().await.unwrap().is_empty());
}
