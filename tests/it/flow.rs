//! The live chat handover end to end: real handlers, stub CAIC and MSC, sessions on moto.
//! Each of docs/design.md's seven rules has its test here, named after it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use handover_core::{AgentStatus, SessionState};
use handover_tests::world::{
    caic_reply, event, query_of, read, send, World, CAIC_API_KEY, PRESENCE_API_KEY,
};
use handover_tests::{dynamodb_harness, memory_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "7c1d2e3f-0000-4a4b-8c8d-123456789abc";

fn livechat_additions() -> Value {
    json!({"livechat": "true", "skill": "billing", "mscWebstore": "NL-shop", "mscChannel": "WebChat"})
}

/// CAIC: "hello" is a normal answer, "agent" a livechat answer; the prechat event asks a question.
async fn scripted_bot(world: &World, additions: Value) {
    world
        .caic_answers("hello", caic_reply(SID, "Hi, how can I help?", json!({})))
        .await;
    world
        .caic_answers("agent", caic_reply(SID, "Let me connect you.", additions))
        .await;
    world
        .caic_answers("Jane Doe", caic_reply(SID, "And your e-mail?", json!({})))
        .await;
    world
        .caic_event_answers(200, caic_reply(SID, "What is your name?", json!({})))
        .await;
}

async fn say(world: &World, text: &str) -> Value {
    let (status, body) = world
        .message(json!({"sessionId": SID, "text": text, "endUserUrl": "https://shop.example/cart"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn intake_slots() -> Value {
    json!([{"name": "name", "value": "Jane Doe"}, {"name": "email", "value": "jane@example.com"}])
}

#[tokio::test]
async fn rule_1_only_a_livechat_answer_starts_the_flow() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;

    let reply = say(&world, "hello").await;
    assert_eq!(reply["handledBy"], "bot");
    assert_eq!(reply["answers"], json!(["Hi, how can I help?"]));
    assert_eq!(world.store.get(SID).await.unwrap(), None);
    assert!(world.presence_requests().await.is_empty());
    assert!(world.caic_requests("/event/prechat").await.is_empty());

    let reply = say(&world, "agent").await;
    assert_eq!(
        reply["answers"],
        json!(["Let me connect you.", "What is your name?"])
    );
    let session = world.store.get(SID).await.unwrap().expect("flow started");
    assert_eq!(session.state, SessionState::Prechat);
}

#[tokio::test]
async fn rule_1_livechat_false_or_garbage_does_not_start_the_flow() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, json!({"livechat": "nope", "skill": "billing"})).await;
    let reply = say(&world, "agent").await;
    assert_eq!(reply["answers"], json!(["Let me connect you."]));
    assert_eq!(world.store.get(SID).await.unwrap(), None);
    assert!(world.caic_requests("/event/prechat").await.is_empty());
}

#[tokio::test]
async fn rule_2_agent_present_sets_agent_status_online() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    say(&world, "agent").await;

    let presence = world.presence_requests().await;
    assert_eq!(presence.len(), 1);
    assert_eq!(
        query_of(&presence[0], "apikey").as_deref(),
        Some(PRESENCE_API_KEY)
    );
    assert_eq!(
        query_of(&presence[0], "Channel").as_deref(),
        Some("WebChat")
    );
    assert_eq!(
        query_of(&presence[0], "referrer").as_deref(),
        Some("NL-shop")
    );
    let events = world.caic_requests("/event/prechat").await;
    assert_eq!(
        query_of(&events[0], "agentStatus").as_deref(),
        Some("online")
    );
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.agent_status, AgentStatus::Online);
}

#[tokio::test]
async fn rule_2_presence_saying_no_failing_or_slow_means_offline() {
    for presence in [
        ResponseTemplate::new(200).set_body_string("Offline"),
        ResponseTemplate::new(500).set_body_string("Online"),
        ResponseTemplate::new(404),
        ResponseTemplate::new(200)
            .set_body_string("Online")
            .set_delay(Duration::from_millis(1_500)),
    ] {
        let world = World::on(memory_harness().await).await;
        scripted_bot(&world, livechat_additions()).await;
        world.presence_says(presence).await;
        let reply = say(&world, "agent").await;
        assert_eq!(
            reply["answers"][1], "What is your name?",
            "the flow still starts"
        );
        let events = world.caic_requests("/event/prechat").await;
        assert_eq!(
            query_of(&events[0], "agentStatus").as_deref(),
            Some("offline")
        );
        let session = world.store.get(SID).await.unwrap().unwrap();
        assert_eq!(session.agent_status, AgentStatus::Offline);
    }
}

#[tokio::test]
async fn rule_3_webstore_channel_and_skill_are_saved() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(
        &world,
        json!({"livechat": true, "skill": "billing", "mscWebstore": "NL-shop", "mscChannel": "WhatsApp"}),
    )
    .await;
    say(&world, "agent").await;
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.webstore.as_deref(), Some("NL-shop"));
    assert_eq!(session.channel.as_deref(), Some("WhatsApp"));
    assert_eq!(session.skill.as_deref(), Some("billing"));
    assert_eq!(
        session.end_user_url.as_deref(),
        Some("https://shop.example/cart")
    );
    assert_eq!(
        query_of(&world.presence_requests().await[0], "Channel").as_deref(),
        Some("WhatsApp")
    );
}

#[tokio::test]
async fn rule_4_the_prechat_event_is_triggered_with_the_session() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    say(&world, "agent").await;
    let events = world.caic_requests("/event/prechat").await;
    assert_eq!(events.len(), 1);
    assert_eq!(query_of(&events[0], "session").as_deref(), Some(SID));
    assert_eq!(query_of(&events[0], "customerKey").as_deref(), Some("cust"));
    assert_eq!(query_of(&events[0], "projectKey").as_deref(), Some("proj"));
    assert_eq!(
        query_of(&events[0], "apiKey").as_deref(),
        Some(CAIC_API_KEY)
    );
    assert_eq!(query_of(&events[0], "culture").as_deref(), Some("en"));
}

#[tokio::test]
async fn rule_5_handover_routes_by_skill_and_webstore() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    say(&world, "agent").await;

    let (status, body) = world.end_slot(SID, intake_slots()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let sent = world.msc_messages().await;
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(message["Referrer"], "NL-shop");
    assert_eq!(message["RoutingKeywords"], "billing");
    assert_eq!(message["ConversationExternalIdentifier"], SID);
    assert_eq!(message["ChannelAccountExternalIdentifier"], "acct-1");
    assert_eq!(message["RelationName"], "Jane Doe");
    assert!(message["Content"]
        .as_str()
        .unwrap()
        .contains("email: jane@example.com"));
    let posts = world.msc.received_requests().await.unwrap();
    let received = posts
        .iter()
        .find(|r| r.url.path() == "/api/messages")
        .unwrap();
    let auth = received
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        auth, "Basic bXNjLWtleTptc2Mtc2VjcmV0",
        "HTTP Basic msc-key:msc-secret"
    );
}

#[tokio::test]
async fn rule_5_without_webstore_routing_uses_the_page_url() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(
        &world,
        json!({"livechat": "yes", "skill": "sales", "mscWebstore": ""}),
    )
    .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    say(&world, "agent").await;
    assert_eq!(
        query_of(&world.presence_requests().await[0], "referrer").as_deref(),
        Some("https://shop.example/cart")
    );
    world.end_slot(SID, intake_slots()).await;
    let sent = world.msc_messages().await;
    assert_eq!(sent[0]["Referrer"], "https://shop.example/cart");
    assert_eq!(sent[0]["RoutingKeywords"], "sales");
}

#[tokio::test]
async fn rule_6_the_whole_story_with_a_sliding_24_hour_lock() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;

    assert_eq!(say(&world, "hello").await["handledBy"], "bot");
    say(&world, "agent").await;
    let intake_turn = say(&world, "Jane Doe").await;
    assert_eq!(
        intake_turn["answers"],
        json!(["And your e-mail?"]),
        "intake turns go to CAIC"
    );
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": true})
    );
    assert_eq!(world.msc_messages().await.len(), 1);
    let locked = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(locked.state, SessionState::HandedOver);
    assert!(
        locked.intake.is_empty(),
        "intake answers are gone after the handover"
    );

    let asks_before = world.caic_requests("/ask").await.len();
    world.clock.advance(23 * 3600);
    let relayed = say(&world, "are you there?").await;
    assert_eq!(relayed["handledBy"], "agent");
    assert_eq!(relayed["answers"], json!([]));
    let sent = world.msc_messages().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["Content"], "are you there?");
    assert_eq!(sent[1]["ConversationExternalIdentifier"], SID);
    world.clock.advance(23 * 3600);
    assert_eq!(
        say(&world, "still there?").await["handledBy"],
        "agent",
        "the lock slid"
    );
    assert_eq!(
        world.caic_requests("/ask").await.len(),
        asks_before,
        "CAIC saw none of it"
    );

    world.clock.advance(24 * 3600);
    let back = say(&world, "hello").await;
    assert_eq!(back["handledBy"], "bot");
    assert_eq!(back["answers"], json!(["Hi, how can I help?"]));
    assert_eq!(world.msc_messages().await.len(), 3);
}

#[tokio::test]
async fn rule_7_a_failing_prechat_event_leaves_nothing_behind() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world.caic.reset().await;
    world
        .caic_answers(
            "agent",
            caic_reply(SID, "Let me connect you.", livechat_additions()),
        )
        .await;
    world.caic_event_answers(500, json!({})).await;
    let reply = say(&world, "agent").await;
    assert_eq!(reply["handledBy"], "bot");
    assert_eq!(reply["answers"], json!(["Let me connect you."]));
    assert_eq!(world.store.get(SID).await.unwrap(), None);
}

#[tokio::test]
async fn rule_7_msc_refusing_the_handover_returns_the_user_to_the_bot() {
    for msc in [
        ResponseTemplate::new(500),
        ResponseTemplate::new(400),
        ResponseTemplate::new(200),
        ResponseTemplate::new(201).set_delay(Duration::from_millis(2_500)),
    ] {
        let world = World::on(dynamodb_harness().await).await;
        scripted_bot(&world, livechat_additions()).await;
        world.msc_accepts_messages(msc).await;
        say(&world, "agent").await;
        assert_eq!(
            world.end_slot(SID, intake_slots()).await.1,
            json!({"success": false})
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().map(|s| s.state),
            Some(SessionState::Ended),
            "nothing stuck: ended, with the bot"
        );
        assert_eq!(say(&world, "hello").await["handledBy"], "bot");
    }
}

#[tokio::test]
async fn rule_7_with_the_store_down_the_bot_still_answers() {
    let down = handover_tests::unreachable_dynamodb_harness();
    let world = World::on(down).await;
    scripted_bot(&world, livechat_additions()).await;
    let reply = say(&world, "agent").await;
    assert_eq!(reply["handledBy"], "bot");
    assert_eq!(
        reply["answers"],
        json!(["Let me connect you."]),
        "no flow without a store"
    );
    assert!(world.caic_requests("/event/prechat").await.is_empty());
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": false})
    );
    assert!(world.msc_messages().await.is_empty());
}

#[tokio::test]
async fn completion_in_the_answer_stream_hands_over_in_process() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world
        .caic_answers(
            "jane@example.com",
            caic_reply(SID, "Connecting you now.", json!({"prechat": "true"})),
        )
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    say(&world, "agent").await;
    let reply = say(&world, "jane@example.com").await;
    assert_eq!(reply["handledBy"], "agent");
    assert_eq!(world.msc_messages().await.len(), 1);
    // The webhook arriving after it reports the same handover, and MSC hears nothing more.
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": true})
    );
    assert_eq!(world.msc_messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_end_slot_webhooks_make_one_msc_conversation() {
    let world = Arc::new(World::on(dynamodb_harness().await).await);
    scripted_bot(&world, livechat_additions()).await;
    world
        .msc_accepts_messages(ResponseTemplate::new(201).set_delay(Duration::from_millis(100)))
        .await;
    say(&world, "agent").await;
    let calls = (0..32).map(|_| {
        let world = Arc::clone(&world);
        tokio::spawn(async move { world.end_slot(SID, intake_slots()).await })
    });
    let replies: Vec<(StatusCode, Value)> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(replies.iter().all(|(status, _)| *status == StatusCode::OK));
    let successes = replies.iter().filter(|(_, b)| b["success"] == true).count();
    assert!(successes >= 1, "{replies:?}");
    assert_eq!(world.msc_messages().await.len(), 1, "one MSC conversation");
    assert_eq!(
        world.store.get(SID).await.unwrap().unwrap().state,
        SessionState::HandedOver
    );
}

#[tokio::test]
async fn operator_handover_is_idempotent() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    assert_eq!(
        world.operator_handover(SID).await.0,
        StatusCode::NOT_FOUND,
        "no intake yet"
    );
    say(&world, "agent").await;
    let (status, first) = world.operator_handover(SID).await;
    assert_eq!(
        (status, first["status"].clone()),
        (StatusCode::OK, json!("handed_over"))
    );
    let (status, again) = world.operator_handover(SID).await;
    assert_eq!(
        (status, again["status"].clone()),
        (StatusCode::OK, json!("already_handed_over"))
    );
    assert_eq!(world.msc_messages().await.len(), 1);
}

#[tokio::test]
async fn presence_webhook_and_widget_query() {
    let world = World::on(memory_harness().await).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    let (status, body) = world
        .presence_webhook(json!({"url": "https://shop.example/", "channel": "WebChat", "data": {"context": "NL-shop"}}))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"agentAvailable": true}))
    );
    let (status, body) = world
        .presence_get("referrer=https%3A%2F%2Fshop.example%2F")
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"agentStatus": "online"}))
    );
    let asked = world.presence_requests().await;
    assert_eq!(query_of(&asked[0], "referrer").as_deref(), Some("NL-shop"));
    assert_eq!(
        query_of(&asked[1], "referrer").as_deref(),
        Some("https://shop.example/")
    );
    assert_eq!(query_of(&asked[1], "Channel").as_deref(), Some("WebChat"));
}

#[tokio::test]
async fn wrong_or_missing_keys_are_401_before_anything_happens() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    let body = json!({"sessionId": SID, "text": "agent"}).to_string();
    let cases = [
        ("POST", "/v1/messages", None),
        ("POST", "/v1/messages", Some("channel-key-0123456788")),
        (
            "POST",
            "/v1/messages",
            Some(handover_tests::world::WEBHOOK_KEY),
        ),
        (
            "POST",
            "/v1/prechat/complete",
            Some(handover_tests::world::CHANNEL_KEY),
        ),
        (
            "POST",
            "/v1/presence",
            Some(handover_tests::world::CHANNEL_KEY),
        ),
        (
            "GET",
            "/v1/presence",
            Some(handover_tests::world::WEBHOOK_KEY),
        ),
    ];
    for (verb, route, key) in cases {
        let req = event(verb, route, "", key, &body);
        let response = match route {
            "/v1/messages" => send(&world.ingest, req).await,
            "/v1/prechat/complete" => send(&world.prechat, req).await,
            _ => send(&world.presence, req).await,
        };
        let (status, body) = read(response);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{verb} {route}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let req = event(
        "POST",
        &format!("/v1/sessions/{SID}/handover"),
        "",
        Some(handover_tests::world::CHANNEL_KEY),
        "",
    );
    assert_eq!(
        read(send(&world.handover, req).await).0,
        StatusCode::UNAUTHORIZED
    );
    assert!(world.caic.received_requests().await.unwrap().is_empty());
    assert!(world.msc.received_requests().await.unwrap().is_empty());
    assert_eq!(world.store.get(SID).await.unwrap(), None);
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_problem_and_touches_nothing() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    let key = Some(handover_tests::world::CHANNEL_KEY);
    let huge = json!({"text": "x".repeat(70 * 1024)}).to_string();
    let cases: Vec<(&str, &str, String, StatusCode, &str, &str)> = vec![
        (
            "POST",
            "/v1/messages",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "JSON",
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"sessionId": "s"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "text",
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"text": 42}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected a string",
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"text": "  "}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "empty",
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"text": "hi", "sessionId": "a b"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
            "session id",
        ),
        (
            "POST",
            "/v1/messages",
            format!(r#"{{"text": "hi", "sessionId": "{}"}}"#, "a".repeat(129)),
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
            "1-128",
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"text": "hi", "endUser": [null, null]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected a JSON object",
        ),
        (
            "POST",
            "/v1/messages",
            r#"["hi"]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected a JSON object",
        ),
        (
            "POST",
            "/v1/messages",
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "larger",
        ),
        (
            "GET",
            "/v1/messages",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET",
        ),
        (
            "POST",
            "/v1/nope",
            "{}".into(),
            StatusCode::NOT_FOUND,
            "no_route",
            "/v1/nope",
        ),
    ];
    for (verb, route, body, status, code, mentions) in cases {
        let (got_status, got) = read(send(&world.ingest, event(verb, route, "", key, &body)).await);
        assert_eq!(got_status, status, "{verb} {route} {got}");
        assert_eq!(got["error"]["code"], code, "{got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        );
    }
    let (status, got) = read(
        send(
            &world.handover,
            event(
                "POST",
                "/v1/sessions/bad%20id/handover",
                "",
                Some(handover_tests::world::OPERATOR_KEY),
                "",
            ),
        )
        .await,
    );
    assert_eq!(
        (status, got["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_session_id"))
    );
    let not_allowed = send(&world.ingest, event("DELETE", "/v1/messages", "", key, "")).await;
    assert_eq!(not_allowed.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        not_allowed.headers()["allow"],
        "POST",
        "RFC 9110: a 405 lists the methods"
    );
    let (status, got) = world.end_slot("", json!([])).await;
    assert_eq!(
        (status, got["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_session_id"))
    );
    assert!(world.caic.received_requests().await.unwrap().is_empty());
    assert!(world.msc.received_requests().await.unwrap().is_empty());
}

#[test]
fn a_missing_or_malformed_setting_stops_start_up_naming_the_variable() {
    use handover_core::config::{Env, PresenceCheckConfig};
    let startup_error = |pairs: &[(&str, &str)]| {
        PresenceCheckConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let complete = [
        ("MSC_PRESENCE_URL", "http://127.0.0.1:1/presence"),
        ("MSC_PRESENCE_API_KEY", "k"),
        ("CHANNEL_API_KEY", "channel-key-0123456789"),
        ("CAIC_WEBHOOK_SECRET", "webhook-secret-0123456789"),
    ];
    assert_eq!(
        startup_error(&complete),
        "",
        "a complete configuration starts"
    );
    let without = |name: &str| -> Vec<(&str, &str)> {
        complete
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect()
    };
    for name in [
        "MSC_PRESENCE_URL",
        "MSC_PRESENCE_API_KEY",
        "CHANNEL_API_KEY",
        "CAIC_WEBHOOK_SECRET",
    ] {
        let error = startup_error(&without(name));
        assert!(
            error.contains(name) && error.contains("not set"),
            "{name}: {error}"
        );
    }
    let mut malformed = without("MSC_PRESENCE_URL");
    malformed.push(("MSC_PRESENCE_URL", "presence.example"));
    assert!(startup_error(&malformed).contains("MSC_PRESENCE_URL is invalid"));
    let mut slow = complete.to_vec();
    slow.push(("PRESENCE_TIMEOUT_MS", "soon"));
    assert!(startup_error(&slow).contains("PRESENCE_TIMEOUT_MS"));
}

async fn keyed(world: &World, key: &str, text: &str) -> (StatusCode, Value, Option<String>) {
    let body = json!({"sessionId": SID, "text": text}).to_string();
    let mut req = event(
        "POST",
        "/v1/messages",
        "",
        Some(handover_tests::world::CHANNEL_KEY),
        &body,
    );
    req.headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    let response = send(&world.ingest, req).await;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = read(response);
    (status, body, replayed)
}

#[tokio::test]
async fn a_retried_message_with_the_same_idempotency_key_is_processed_once() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    let (status, first, replayed) = keyed(&world, "msg-0001", "hello").await;
    assert_eq!((status, replayed), (StatusCode::OK, None));
    let (status, again, replayed) = keyed(&world, "msg-0001", "hello").await;
    assert_eq!(
        (status, replayed.as_deref()),
        (StatusCode::OK, Some("true"))
    );
    assert_eq!(again, first, "same response");
    assert_eq!(
        world.caic_requests("/ask").await.len(),
        1,
        "CAIC asked once"
    );

    let (status, reused, _) = keyed(&world, "msg-0001", "something else").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");
    let (status, bad, _) = keyed(&world, "no spaces allowed", "hello").await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_idempotency_key"))
    );
    assert_eq!(world.caic_requests("/ask").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_retries_of_one_message_reach_caic_once() {
    let world = Arc::new(World::on(dynamodb_harness().await).await);
    world
        .caic_answers("hello", caic_reply(SID, "Hi!", json!({})))
        .await;
    world.caic.reset().await;
    wiremock::Mock::given(wiremock::matchers::path("/ask"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(caic_reply(SID, "Hi!", json!({})))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&world.caic)
        .await;
    let calls = (0..16).map(|_| {
        let world = Arc::clone(&world);
        tokio::spawn(async move { keyed(&world, "retry-storm", "hello").await })
    });
    let replies: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(world.caic_requests("/ask").await.len(), 1, "processed once");
    for (status, body, _) in &replies {
        match *status {
            StatusCode::OK => assert_eq!(body["answers"], json!(["Hi!"])),
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "request_in_progress"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (_, after, replayed) = keyed(&world, "retry-storm", "hello").await;
    assert_eq!(
        (after["answers"].clone(), replayed.as_deref()),
        (json!(["Hi!"]), Some("true"))
    );
}

#[tokio::test]
async fn a_failed_keyed_message_runs_again_on_retry_and_relays_keep_their_msc_id() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_event_answers(200, caic_reply(SID, "Your name?", json!({})))
        .await;
    let (status, _, _) = keyed(&world, "msg-7", "hello").await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "no CAIC answer mounted yet"
    );
    world
        .caic_answers("hello", caic_reply(SID, "Hi!", json!({})))
        .await;
    let (status, body, replayed) = keyed(&world, "msg-7", "hello").await;
    assert_eq!(
        (status, body["answers"].clone(), replayed),
        (StatusCode::OK, json!(["Hi!"]), None)
    );

    world
        .caic_answers(
            "agent",
            caic_reply(SID, "Connecting.", livechat_additions()),
        )
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    say(&world, "agent").await;
    world.end_slot(SID, intake_slots()).await;
    keyed(&world, "msg-8", "to the agent").await;
    keyed(&world, "msg-8", "to the agent").await;
    let sent = world.msc_messages().await;
    assert_eq!(sent.len(), 2, "handover + one relay");
    assert_eq!(
        sent[1]["MessageExternalIdentifier"],
        format!("{SID}-message-msg-8")
    );
}

#[tokio::test]
async fn the_end_slot_webhook_again_an_hour_later_reports_the_same_handover() {
    let world = World::on(dynamodb_harness().await).await;
    scripted_bot(&world, livechat_additions()).await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    say(&world, "agent").await;
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": true})
    );
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": true}),
        "twice"
    );
    world.clock.advance(3600);
    assert_eq!(
        world.end_slot(SID, intake_slots()).await.1,
        json!({"success": true}),
        "an hour later"
    );
    let sent = world.msc_messages().await;
    assert_eq!(sent.len(), 1, "one handover");
    let locked = world.store.get(SID).await.unwrap().unwrap();
    assert!(
        locked.intake.is_empty(),
        "the replayed intake was not stored again"
    );
}

#[tokio::test]
async fn presence_answers_are_reused_briefly_per_channel_and_referrer() {
    let world = World::on(memory_harness().await).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    for _ in 0..5 {
        world.presence_get("channel=WebChat&referrer=NL-shop").await;
    }
    assert_eq!(
        world.presence_requests().await.len(),
        1,
        "a burst asks MSC once"
    );
    // The cache runs on the clock port: 4,999 ms later the answer is reused, at 5,000 ms it is not.
    world.clock.advance_millis(4_999);
    world.presence_get("channel=WebChat&referrer=NL-shop").await;
    assert_eq!(world.presence_requests().await.len(), 1, "still fresh");
    world.clock.advance_millis(1);
    world.presence_get("channel=WebChat&referrer=NL-shop").await;
    assert_eq!(world.presence_requests().await.len(), 2, "expired");
    world.clock.advance_millis(1_000);
    world.presence_get("channel=WebChat&referrer=BE-shop").await;
    world
        .presence_get("channel=WhatsApp&referrer=NL-shop")
        .await;
    assert_eq!(
        world.presence_requests().await.len(),
        4,
        "per channel and referrer"
    );

    let uncached = World::with_env(memory_harness().await, &[("PRESENCE_CACHE_MS", "0")]).await;
    uncached
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    for _ in 0..3 {
        uncached
            .presence_get("channel=WebChat&referrer=NL-shop")
            .await;
        uncached.clock.advance_millis(1_000);
    }
    assert_eq!(
        uncached.presence_requests().await.len(),
        3,
        "PRESENCE_CACHE_MS=0 turns it off"
    );
}

/// Rotation without downtime: the current key and the next one are both accepted, and a next key that
/// is too short stops the start naming it.
#[tokio::test]
async fn during_a_rotation_the_current_and_the_next_key_are_both_accepted() {
    const NEXT: &str = "channel-key-next-0123456789";
    let world = World::with_env(memory_harness().await, &[("CHANNEL_API_KEY_NEXT", NEXT)]).await;
    world
        .caic_answers("hello", caic_reply(SID, "Hi!", json!({})))
        .await;
    let body = json!({"sessionId": SID, "text": "hello"}).to_string();
    for key in [handover_tests::world::CHANNEL_KEY, NEXT] {
        let req = event("POST", "/v1/messages", "", Some(key), &body);
        assert_eq!(
            read(send(&world.ingest, req).await).0,
            StatusCode::OK,
            "{key}"
        );
    }
    let req = event(
        "POST",
        "/v1/messages",
        "",
        Some("channel-key-next-012345678"),
        &body,
    );
    assert_eq!(
        read(send(&world.ingest, req).await).0,
        StatusCode::UNAUTHORIZED
    );

    use handover_core::config::{Env, PresenceCheckConfig};
    let error = PresenceCheckConfig::from_env(&Env::from_pairs([
        ("MSC_PRESENCE_URL", "http://127.0.0.1:1/presence"),
        ("MSC_PRESENCE_API_KEY", "k"),
        ("CHANNEL_API_KEY", "channel-key-0123456789"),
        ("CHANNEL_API_KEY_NEXT", "short"),
        ("CAIC_WEBHOOK_SECRET", "webhook-secret-0123456789"),
    ]))
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(error.contains("CHANNEL_API_KEY_NEXT is invalid"), "{error}");
}

/// The bot's answer reaches the page whole: its text in `answers` as before, and in `outputs` its
/// dialog options (what to send back) and its links, a `javascript:` one dropped.
#[tokio::test]
async fn a_bot_answer_carries_its_dialog_options_and_links() {
    let world = World::on(memory_harness().await).await;
    let mut reply = caic_reply(SID, "Would you like to talk to a colleague?", json!({}));
    reply["data"]["dialogOptions"] = json!([{"label": "Yes", "value": "I want an agent"}, "No"]);
    reply["data"]["links"] = json!([{"url": "https://shop.example/help", "text": "Help"},
                                    {"url": "javascript:alert(1)", "text": "Bad"}]);
    world.caic_answers("help", reply).await;
    let (status, body) = world
        .message(json!({"sessionId": SID, "text": "help"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["answers"],
        json!(["Would you like to talk to a colleague?"])
    );
    assert_eq!(
        body["outputs"],
        json!([{"text": "Would you like to talk to a colleague?",
                "options": [{"label": "Yes", "send": "I want an agent"}, {"label": "No", "send": "No"}],
                "links": [{"label": "Help", "url": "https://shop.example/help"}]}])
    );
}

/// CAIC's answers may be HTML: the agent's handover message shows the bot's words as plain text.
#[tokio::test]
async fn the_handover_message_shows_the_bots_html_as_text() {
    let world = World::on(memory_harness().await).await;
    world
        .handover_goes_through("html-session-1", json!({}))
        .await;
    world
        .message(json!({"sessionId": "html-session-1", "text": "agent", "history": [
            {"from": "user", "text": "When are you <open>?"},
            {"from": "bot", "text": "<p>We are open <b>9-17</b> &amp; <a href=\"https://shop.example/hours\">more</a></p>"}
        ]}))
        .await;
    world.end_slot("html-session-1", json!([])).await;
    let posted = world.msc_messages().await;
    let content = posted[0]["Content"].as_str().unwrap();
    assert!(
        content.contains("Chatbot: We are open 9-17 & more (https://shop.example/hours)"),
        "{content}"
    );
    assert!(
        content.contains("Customer: When are you <open>?"),
        "the end user's words stay as typed: {content}"
    );
}
