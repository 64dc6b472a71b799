//! Nobody came: a handover no agent takes within `AGENT_WAIT_SECS` tells the end user so, once, and
//! offers to keep waiting or go back to the bot. The timers are schedules on moto's EventBridge
//! Scheduler (`AWS_ENDPOINT_URL_SCHEDULER` is moto), fired as Scheduler would: agent-wait invoked with
//! each schedule's input. Sessions on moto's DynamoDB.

use handover_core::{Clock, SessionState};
use handover_tests::dynamodb_harness;
use handover_tests::world::{caic_reply, World};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const GUID: &str = "3c0d5f9e-1b7a-4e6b-8a51-0d1f2e3c4b5a";

/// A world whose waits for an agent are timed on moto's Scheduler, in a group of its own.
async fn world_with(more: &[(&str, &str)]) -> World {
    let group = format!("handover-waits-{}", uuid::Uuid::new_v4().simple());
    let group: &'static str = Box::leak(group.into_boxed_str());
    let mut env = vec![
        ("AGENT_WAIT_SECS", "60"),
        ("AGENT_WAIT_SCHEDULE_GROUP", group),
        (
            "AGENT_WAIT_FUNCTION_ARN",
            "arn:aws:lambda:eu-west-1:123456789012:function:agent-wait",
        ),
        (
            "AGENT_WAIT_SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/scheduler-invokes-agent-wait",
        ),
    ];
    env.extend_from_slice(more);
    World::with_env(dynamodb_harness().await, &env).await
}

/// `sid` handed over through CAIC's end slot, MSC accepting; the channel's webhook takes pushes.
async fn handed_over(world: &World, sid: &str) {
    let slots = json!([{"name": "name", "value": "Jane"}]);
    let answered = intake_ends(world, sid, ResponseTemplate::new(201), slots).await;
    assert_eq!(answered, json!({"success": true}));
}

/// `sid`'s intake started and its end slot called, MSC answering the handover with `msc`: what the
/// end slot answered CAIC.
async fn intake_ends(world: &World, sid: &str, msc: ResponseTemplate, slots: Value) -> Value {
    world
        .caic_answers(
            "agent",
            caic_reply(sid, "Connecting.", json!({"livechat": true})),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(sid, "Your name?", json!({})))
        .await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    world.msc_accepts_messages(msc).await;
    world.channel_answers(ResponseTemplate::new(204)).await;
    world
        .message(json!({"sessionId": sid, "text": "agent"}))
        .await;
    world.end_slot(sid, slots).await.1
}

async fn choose(world: &World, sid: &str, choice: &str) -> (StatusCode, Value) {
    world
        .message(json!({"sessionId": sid, "text": "(button)", "choice": choice}))
        .await
}

async fn waiting_messages(world: &World, sid: &str) -> Vec<Value> {
    let (_, outbox) = world.outbox(sid, "").await;
    outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["event"] == "no_agent_yet")
        .cloned()
        .collect()
}

fn agent_reply(sid: &str, id: &str) -> Value {
    json!({"ChannelAccountExternalIdentifier": "acct-1", "ConversationGuid": GUID,
           "ConversationExternalIdentifier": sid, "MessageExternalIdentifier": id,
           "RelationName": "Jane", "Content": "Hello, I am Sam", "IsPrivate": false,
           "SentDateTime": "2025-06-15T15:10:00Z", "Attachments": []})
}

#[tokio::test]
async fn the_handover_schedules_one_wait_and_firing_it_twice_tells_the_end_user_once() {
    let world = world_with(&[]).await;
    let sid = "wait-once-0001";
    handed_over(&world, sid).await;

    // One one-time schedule, a minute after MSC accepted, in the stack's group, deleted after it ran.
    let waits = world.scheduled_waits().await;
    assert_eq!(waits.len(), 1, "{waits:?}");
    let (wait, expression) = &waits[0];
    assert_eq!((wait.session_id.as_str(), wait.round), (sid, 1));
    assert_eq!(wait.at, world.clock.now() + 60);
    let at = jiff::Timestamp::from_second(wait.at).unwrap();
    assert_eq!(
        expression,
        &format!("at({})", at.strftime("%Y-%m-%dT%H:%M:%S"))
    );
    let schedule = handover_tests::scheduler_client()
        .get_schedule()
        .group_name(world.wait_group.as_deref().unwrap())
        .name(wait.schedule_name())
        .send()
        .await
        .unwrap();
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        schedule.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    assert_eq!(
        schedule.flexible_time_window().map(|w| w.mode().as_str()),
        Some("OFF")
    );
    let target = schedule.target().unwrap();
    assert_eq!(
        target.arn(),
        "arn:aws:lambda:eu-west-1:123456789012:function:agent-wait"
    );
    assert_eq!(
        target.role_arn(),
        "arn:aws:iam::123456789012:role/scheduler-invokes-agent-wait"
    );

    world.clock.advance(60);
    let first = world.fire(wait).await;
    let again = world.fire(wait).await;
    assert_eq!(first, json!({"outcome": "told"}));
    assert_eq!(again["outcome"], "nothing", "{again}");

    let told = waiting_messages(&world, sid).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["from"], "system");
    assert_eq!(told[0]["round"], 1);
    assert_eq!(told[0].get("agentsOffline"), None, "agents were online");
    assert_eq!(
        told[0]["choices"],
        json!([{"id": "keep_waiting", "label": "Keep waiting"},
               {"id": "back_to_bot", "label": "Back to the chatbot"}])
    );
    assert!(told[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("No colleague has taken your conversation yet."));
    // Pushed once, as every message of the outbox is.
    let pushed: Vec<Value> = world
        .channel_pushes()
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .filter(|body: &Value| body["event"] == "no_agent_yet")
        .collect();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["id"], told[0]["id"]);
    let stored = world.store.get(sid).await.unwrap().unwrap();
    assert_eq!(stored.agent.wait_asks, 1);
    assert!(stored.history.iter().any(|e| e.event == "no_agent_in_time"));
}

#[tokio::test]
async fn an_agent_who_answered_before_the_wait_ran_out_means_no_message() {
    let world = world_with(&[]).await;
    let sid = "wait-agent-came-0001";
    handed_over(&world, sid).await;
    let (status, body) = world.msc_posts_message(agent_reply(sid, "m-1")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("delivered"))
    );

    world.clock.advance(60);
    let answers = world.fire_waits().await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["outcome"], "nothing");
    assert!(waiting_messages(&world, sid).await.is_empty());
    assert!(
        world.scheduled_waits().await.is_empty(),
        "deleted after it ran"
    );
}

#[tokio::test]
async fn back_to_the_bot_ends_the_handover_tells_the_agents_privately_and_the_bot_answers_next() {
    let world = world_with(&[]).await;
    let sid = "wait-back-to-bot-0001";
    handed_over(&world, sid).await;
    world.clock.advance(120);
    world.fire_waits().await;

    let (status, body) = choose(&world, sid, "back_to_bot").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["choice"].as_str(), body["handledBy"].as_str()),
        (Some("back_to_bot"), Some("bot"))
    );
    let stored = world.store.get_stored(sid).await.unwrap().unwrap();
    assert_eq!(stored.state, SessionState::Ended);
    assert_eq!(
        stored.agent.end_reason,
        Some(handover_core::EndReason::NoAgent)
    );
    let (_, view) = world.session_view(sid).await;
    assert_eq!(view["endReason"], "no_agent");
    let (_, outbox) = world.outbox(sid, "").await;
    let last = outbox["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["event"].as_str(), last["reason"].as_str()),
        (Some("handover_ended"), Some("no_agent"))
    );
    // The agents' side hears of it once, privately, in the handover's conversation.
    let notes: Vec<Value> = world
        .msc_messages()
        .await
        .into_iter()
        .filter(|m| m["IsPrivate"] == true)
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["ConversationExternalIdentifier"], sid);
    assert!(notes[0]["Content"]
        .as_str()
        .unwrap()
        .contains("went back to the chatbot"));
    assert!(notes[0]["MessageExternalIdentifier"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{sid}-left-")));

    // The same choice again (another tab) changes nothing.
    let (_, again) = choose(&world, sid, "back_to_bot").await;
    assert_eq!(again["choice"], "too_late");
    // The next message goes to the bot.
    world
        .caic_answers("what now?", caic_reply(sid, "I can help.", json!({})))
        .await;
    let (_, reply) = world
        .message(json!({"sessionId": sid, "text": "what now?"}))
        .await;
    assert_eq!(reply["handledBy"], "bot");
    assert_eq!(reply["answers"], json!(["I can help."]));
    let relayed = world
        .msc_messages()
        .await
        .into_iter()
        .filter(|m| m["Content"] == "what now?")
        .count();
    assert_eq!(relayed, 0, "nothing reaches the agent any more");
}

#[tokio::test]
async fn keep_waiting_asks_again_after_another_wait_and_at_most_the_asks() {
    let world = world_with(&[("AGENT_WAIT_ASKS", "2")]).await;
    let sid = "wait-keep-waiting-0001";
    handed_over(&world, sid).await;
    let (_, early) = choose(&world, sid, "keep_waiting").await;
    assert_eq!(early["choice"], "too_late", "nothing was asked yet");

    world.clock.advance(60);
    world.fire_waits().await;
    let (status, kept) = choose(&world, sid, "keep_waiting").await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(
        (kept["choice"].as_str(), kept["handledBy"].as_str()),
        (Some("kept_waiting"), Some("agent"))
    );
    let (_, view) = world.session_view(sid).await;
    assert_eq!(
        view["counts"],
        json!({"agentReplies": 0, "outbox": 1, "queued": 0, "noAgentQuestions": 1, "keptWaiting": 1})
    );
    let second = world.scheduled_waits().await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0.round, 2);
    assert_eq!(second[0].0.at, world.clock.now() + 60);

    world.clock.advance(60);
    assert_eq!(world.fire_waits().await, vec![json!({"outcome": "told"})]);
    let told = waiting_messages(&world, sid).await;
    assert_eq!(told.len(), 2);
    assert_eq!(told[1]["round"], 2);
    let (_, kept) = choose(&world, sid, "keep_waiting").await;
    assert_eq!(kept["choice"], "kept_waiting");
    assert!(
        world.scheduled_waits().await.is_empty(),
        "asked twice: no third wait"
    );
    // Nothing of the choices reached the agent or the bot.
    assert!(world
        .msc_messages()
        .await
        .iter()
        .all(|m| m["Content"] != "(button)"));
    assert!(world.caic_requests("/ask").await.iter().all(|r| !r
        .url
        .query()
        .unwrap_or_default()
        .contains("button")));
}

#[tokio::test]
async fn an_agent_answering_as_the_end_user_goes_back_gives_one_outcome_never_both() {
    for n in 0..8 {
        let world = world_with(&[]).await;
        let sid = format!("wait-race-{n:04}");
        handed_over(&world, &sid).await;
        world.clock.advance(60);
        world.fire_waits().await;
        // Each side in turn a little behind the other, so that either may win.
        let behind = |late: bool| std::time::Duration::from_millis(if late { n * 2 } else { 0 });
        let ((_, chosen), (_, replied)) = tokio::join!(
            async {
                tokio::time::sleep(behind(n % 2 == 1)).await;
                choose(&world, &sid, "back_to_bot").await
            },
            async {
                tokio::time::sleep(behind(n % 2 == 0)).await;
                world
                    .msc_posts_message(agent_reply(&sid, &format!("race-{n}")))
                    .await
            }
        );
        let stored = world.store.get_stored(&sid).await.unwrap().unwrap();
        let (_, outbox) = world.outbox(&sid, "").await;
        let shown_reply = outbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["from"] == "agent");
        if chosen["choice"] == "back_to_bot" {
            assert_eq!(stored.state, SessionState::Ended, "{sid}");
            assert_eq!(replied["status"], "not_handed_over", "{sid}");
            assert!(!shown_reply, "{sid}");
        } else {
            assert_eq!(chosen["choice"], "too_late", "{sid}");
            assert_eq!(stored.state, SessionState::HandedOver, "{sid}");
            assert_eq!(replied["status"], "delivered", "{sid}");
            assert!(shown_reply, "{sid}");
        }
    }
}

#[tokio::test]
async fn a_handover_made_while_closed_says_so_and_when_agents_are_back() {
    // The world's clock starts on Sunday 2025-06-15, 17:06 in Amsterdam: closed until Monday 09:00.
    let hours = "* = Europe/Amsterdam: mon-fri 09:00-17:30";
    let world = world_with(&[("BUSINESS_HOURS", hours)]).await;
    let sid = "wait-closed-0001";
    handed_over(&world, sid).await;
    world.clock.advance(60);
    world.fire_waits().await;
    let told = waiting_messages(&world, sid).await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["opensAt"], "2025-06-16T07:00:00Z");
    assert_eq!(told[0]["agentsOffline"], true);
    let text = told[0]["text"].as_str().unwrap();
    assert!(
        text.contains("we are closed now, and open again at 2025-06-16 07:00 UTC"),
        "{text}"
    );
}

#[tokio::test]
async fn choices_are_checked_where_they_enter_and_change_nothing_when_refused() {
    let world = world_with(&[("AGENT_WAIT_SECS", "0")]).await;
    let sid = "wait-off-0001";
    handed_over(&world, sid).await;
    assert!(world.scheduled_waits().await.is_empty(), "waits are off");
    let before = world.store.get_stored(sid).await.unwrap();
    let (status, body) = world
        .message(json!({"text": "x", "choice": "back_to_bot"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sessionId"));
    let (status, body) = choose(&world, sid, "leave").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keep_waiting or back_to_bot"));
    // Nothing was asked: going back is refused, and the agent keeps the conversation.
    let (_, body) = choose(&world, sid, "back_to_bot").await;
    assert_eq!(
        (body["choice"].as_str(), body["handledBy"].as_str()),
        (Some("too_late"), Some("agent"))
    );
    assert_eq!(world.store.get_stored(sid).await.unwrap(), before);
}

#[tokio::test]
async fn nobody_coming_and_the_choice_are_counted() {
    let sid = "wait-metrics-0001";
    handover_tests::emf_lines(sid);
    let world = world_with(&[]).await;
    handed_over(&world, sid).await;
    world.clock.advance(60);
    world.fire_waits().await;
    choose(&world, sid, "back_to_bot").await;

    let lines = handover_tests::emf_lines(sid);
    let unanswered = lines
        .iter()
        .find(|line| line["Function"] == "agent-wait")
        .unwrap_or_else(|| panic!("no agent-wait line: {lines:#?}"));
    assert_eq!(unanswered["HandoversUnanswered"], 1.0);
    let chosen = lines
        .iter()
        .find(|line| line.get("WaitChoices").is_some())
        .unwrap_or_else(|| panic!("no choice counted: {lines:#?}"));
    assert_eq!(chosen["Function"], "answer-ingest");
    assert_eq!(
        (chosen["Choice"].as_str(), chosen["Reason"].as_str()),
        (Some("back_to_bot"), Some("no_agent"))
    );
    assert_eq!(chosen["HandoversEnded"], 1.0);
}

#[tokio::test]
async fn a_handover_msc_refuses_leaves_a_wait_that_fires_into_nothing() {
    let world = world_with(&[]).await;
    let sid = "wait-refused-0001";
    let answered = intake_ends(&world, sid, ResponseTemplate::new(500), json!([])).await;
    assert_eq!(answered, json!({"success": false}));
    // Started beside the post, before MSC's answer was known.
    assert_eq!(world.scheduled_waits().await.len(), 1);
    world.clock.advance(60);
    assert_eq!(world.fire_waits().await[0]["outcome"], "nothing");
    let stored = world.store.get_stored(sid).await.unwrap().unwrap();
    assert_eq!(stored.state, SessionState::Ended);
    assert!(stored.agent.outbox.is_empty(), "nothing told");
}

#[tokio::test]
async fn a_wait_scheduler_refuses_leaves_the_handover_standing_and_is_counted() {
    let sid = "wait-unscheduled-0001";
    handover_tests::emf_lines(sid);
    let world = world_with(&[]).await;
    // The schedule group is gone (deleted by hand, or a role without the right): Scheduler refuses.
    handover_tests::scheduler_client()
        .delete_schedule_group()
        .name(world.wait_group.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    handed_over(&world, sid).await;
    let stored = world.store.get_stored(sid).await.unwrap().unwrap();
    assert_eq!(stored.state, SessionState::HandedOver);
    let lines = handover_tests::emf_lines(sid);
    let unscheduled = lines
        .iter()
        .find(|line| line.get("AgentWaitsNotScheduled").is_some())
        .unwrap_or_else(|| panic!("not counted: {lines:#?}"));
    assert_eq!(unscheduled["Function"], "prechat-complete");
}
