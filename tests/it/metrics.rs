//! The EMF lines a handover story writes: one per invocation, with what it counted.

use handover_tests::world::{caic_reply, World};
use handover_tests::{emf_lines, memory_harness};
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

async fn scripted(world: &World, sid: &str, msc: ResponseTemplate) {
    world
        .caic_answers(
            "agent",
            caic_reply(
                sid,
                "Connecting.",
                json!({"livechat": true, "skill": "billing"}),
            ),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(sid, "Your name?", json!({})))
        .await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    world.msc_accepts_messages(msc).await;
    world.channel_answers(ResponseTemplate::new(200)).await;
}

/// The one line written by `function` that has `metric`.
fn line_with<'a>(lines: &'a [Value], function: &str, metric: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["Function"] == function && line.get(metric).is_some())
        .unwrap_or_else(|| panic!("no {function} line with {metric}: {lines:#?}"))
}

#[tokio::test]
async fn a_handover_story_writes_its_figures_one_line_per_invocation() {
    const SID: &str = "metrics-story-0001";
    emf_lines(SID);
    let world = World::with_env(memory_harness().await, &[("RELEASE_ON_ARCHIVE", "true")]).await;
    scripted(&world, SID, ResponseTemplate::new(201)).await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    world.clock.advance(90);
    world
        .end_slot(SID, json!([{"name": "name", "value": "Jane"}]))
        .await;
    world
        .message(json!({"sessionId": SID, "text": "hello?"}))
        .await;
    world.drain().await;
    world
        .msc_posts_message(
            json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "m-1",
                                  "ConversationGuid": "guid-metrics", "Content": "Hi!"}),
        )
        .await;
    world
        .msc_posts_event(
            json!({"Name": "ConversationArchived", "Payload": {"ConversationId": "guid-metrics"}}),
        )
        .await;
    world.operator_release(SID).await;

    let lines = emf_lines(SID);
    assert_eq!(
        lines.len(),
        7,
        "one line per invocation (and per delivery): {lines:#?}"
    );
    let started = line_with(&lines, "answer-ingest", "HandoversStarted");
    assert_eq!(started["HandoversStarted"], 1.0);
    assert_eq!(
        (started["Presence"].clone(), started["Result"].clone()),
        (json!(1.0), json!("online"))
    );
    let completed = line_with(&lines, "prechat-complete", "HandoversCompleted");
    assert_eq!(completed["HandoversCompleted"], 1.0);
    assert_eq!(completed["TimeToAgent"], 90_000.0);
    assert_eq!(
        line_with(&lines, "answer-ingest", "MessagesHeld")["MessagesHeld"],
        1.0
    );
    let relayed = line_with(&lines, "msc-outbound", "MessagesRelayed");
    assert_eq!(relayed["MessagesRelayed"], 1.0);
    assert!(relayed["TimeToMsc"].as_f64().unwrap() >= 0.0, "{relayed}");
    assert_eq!(
        line_with(&lines, "agent-events", "AgentRepliesDelivered")["AgentRepliesDelivered"],
        1.0
    );
    let ended = line_with(&lines, "agent-events", "HandoversEnded");
    assert_eq!(
        (ended["HandoversEnded"].clone(), ended["Reason"].clone()),
        (json!(1.0), json!("agent_closed"))
    );
    let rejected = line_with(&lines, "operator-handover", "RequestsRejected");
    assert_eq!(rejected["ErrorCode"], "not_handed_over");
    for line in &lines {
        let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert!(
            directives.iter().all(|d| d["Namespace"] == "Handover"),
            "{line}"
        );
        assert!(line["_aws"]["Timestamp"].as_i64().unwrap() > 0);
    }
}

#[tokio::test]
async fn a_refused_handover_counts_its_reason() {
    const SID: &str = "metrics-refused-0001";
    emf_lines(SID);
    let world = World::on(memory_harness().await).await;
    scripted(&world, SID, ResponseTemplate::new(500)).await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    world.end_slot(SID, json!([])).await;
    let lines = emf_lines(SID);
    let failed = line_with(&lines, "prechat-complete", "HandoversFailed");
    assert_eq!(
        (failed["HandoversFailed"].clone(), failed["Reason"].clone()),
        (json!(1.0), json!("msc_status_500"))
    );
}
