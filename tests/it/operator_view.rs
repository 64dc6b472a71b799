//! The operator view: a session's state and how it got there, never personal data.

use handover_tests::world::World;
use handover_tests::{dynamodb_harness, emf_lines};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "operator-view-session-01";

fn events(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_view_tells_the_story_of_a_handover_without_personal_data() {
    emf_lines(SID);
    let world = World::with_env(dynamodb_harness().await, &[("RELEASE_ON_ARCHIVE", "true")]).await;
    assert_eq!(
        world.session_view(SID).await.1["error"]["code"],
        "no_session",
        "404 before there is one"
    );
    world
        .handover_goes_through(SID, json!({"mscWebstore": "NL-shop"}))
        .await;
    world.channel_answers(ResponseTemplate::new(200)).await;
    world
        .message(json!({"sessionId": SID, "text": "agent", "endUserUrl": "https://shop.example/?email=jane@example.com"}))
        .await;
    world
        .end_slot(SID, json!([{"name": "name", "value": "Jane Doe"}, {"name": "email", "value": "jane@example.com"}]))
        .await;
    world
        .msc_posts_message(
            json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "m-1",
                                  "ConversationGuid": "guid-view", "Content": "Hello Jane!"}),
        )
        .await;
    world
        .msc_posts_event(json!({"Name": "ConversationStarted", "Payload": {"ConversationId": "guid-view", "AgentName": "Sam"}}))
        .await;
    world
        .msc_posts_message(
            json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "m-2",
                                  "ConversationGuid": "guid-view", "Content": "Anything else?"}),
        )
        .await;
    let (status, during) = world.session_view(SID).await;
    assert_eq!(status, StatusCode::OK, "{during}");
    assert_eq!(
        (during["state"].clone(), during["handledBy"].clone()),
        (json!("handed_over"), json!("agent"))
    );
    assert_eq!(during["counts"]["agentReplies"], 2);
    assert_eq!(during["agentName"], "Sam");
    world
        .msc_posts_event(
            json!({"Name": "ConversationArchived", "Payload": {"ConversationId": "guid-view"}}),
        )
        .await;

    let (status, view) = world.session_view(SID).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        (
            view["state"].clone(),
            view["handledBy"].clone(),
            view["endReason"].clone()
        ),
        (json!("ended"), json!("bot"), json!("agent_closed"))
    );
    assert_eq!(
        (
            view["skill"].clone(),
            view["webstore"].clone(),
            view["channel"].clone(),
            view["agentStatus"].clone()
        ),
        (
            json!("billing"),
            json!("NL-shop"),
            json!("WebChat"),
            json!("online")
        )
    );
    assert_eq!(
        events(&view),
        [
            "flow_started",
            "claimed",
            "msc_accepted",
            "locked",
            "first_agent_reply",
            "agent_assigned",
            "ended"
        ]
    );
    let history = &view["history"];
    assert_eq!(history[0]["detail"], "agentStatus=online, presence=asked");
    assert_eq!(history[1]["detail"], "intake answers: 2");
    assert_eq!(history[6]["detail"], "agent_closed");
    let shown = view.to_string();
    for personal in ["Jane", "jane@example.com", "Hello", "shop.example"] {
        assert!(!shown.contains(personal), "{personal} in {shown}");
    }
    // The same story in the metrics, each line carrying the session id as a property.
    let counted: Vec<String> = emf_lines(SID)
        .iter()
        .flat_map(|line| {
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .cloned()
        })
        .flatten()
        .filter_map(|metric| metric["Name"].as_str().map(str::to_owned))
        .collect();
    for metric in [
        "HandoversStarted",
        "HandoversCompleted",
        "AgentRepliesDelivered",
        "HandoversEnded",
    ] {
        assert!(counted.iter().any(|m| m == metric), "{metric}: {counted:?}");
    }
}

/// An ended handover's history is carried into the next handover's start, and the session keeps the
/// newest 50 events however many handovers it has seen.
#[tokio::test]
async fn the_history_carries_into_the_next_handover_and_keeps_the_newest_fifty_events() {
    let world = World::on(dynamodb_harness().await).await;
    world.handover_goes_through(SID, json!({})).await;
    world.channel_answers(ResponseTemplate::new(200)).await;
    let mut rounds = 0;
    let view = loop {
        rounds += 1;
        world
            .message(json!({"sessionId": SID, "text": "agent"}))
            .await;
        let (_, body) = world.end_slot(SID, json!([])).await;
        assert_eq!(body, json!({"success": true}), "round {rounds}");
        let (_, view) = world.session_view(SID).await;
        if rounds == 2 {
            let starts = events(&view)
                .iter()
                .filter(|e| *e == "flow_started")
                .count();
            assert_eq!(
                starts, 2,
                "the first handover's history carried into the second"
            );
        }
        let (status, _) = world.operator_release(SID).await;
        assert_eq!(status, StatusCode::OK);
        if events(&view).len() >= 50 || rounds == 20 {
            break world.session_view(SID).await.1;
        }
    };
    let history = events(&view);
    assert_eq!(history.len(), 50, "after {rounds} handovers");
    assert_eq!(
        history[history.len() - 2..],
        ["locked", "ended"],
        "the newest kept: {history:?}"
    );
}
