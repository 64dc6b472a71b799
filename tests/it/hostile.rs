//! A hostile or broken peer: one conversation never reaches into another, and whatever a peer sends
//! is bounded. Each test sends a request the way the finding did and asserts what was stored and what
//! each peer received.

use handover_core::SessionState;
use handover_tests::world::{caic_reply, event, read, send, World, CHANNEL_KEY};
use handover_tests::{dynamodb_harness, memory_harness, online_intake};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const ALICE: &str = "hostile-session-alice";
const BOB: &str = "hostile-session-bob";
const GA: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const GB: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

/// A handover made through the store: intake, claim, completion (MSC's part is not under test here).
async fn handed_over(world: &World, session_id: &str) {
    handover_tests::handed_over_in(world.store.as_ref(), session_id).await;
}

fn reply(session_id: &str, guid: &str, id: &str, text: &str) -> Value {
    json!({"ChannelAccountExternalIdentifier": "acct-1", "ConversationGuid": guid,
           "ConversationExternalIdentifier": session_id, "MessageExternalIdentifier": id,
           "Content": text, "IsPrivate": false, "SentDateTime": "2026-12-01T09:00:00Z"})
}

fn conversation_event(name: &str, guid: &str) -> Value {
    json!({"Name": name, "Payload": {"ConversationId": guid, "AgentName": "Sam",
                                      "EventUtcDateTime": "2026-12-01T10:00:00Z"}})
}

async fn state(world: &World, session_id: &str) -> Option<SessionState> {
    world.store.get(session_id).await.unwrap().map(|s| s.state)
}

async fn agent_world() -> World {
    let world = World::with_env(dynamodb_harness().await, &[("RELEASE_ON_ARCHIVE", "true")]).await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    world.channel_answers(ResponseTemplate::new(204)).await;
    world
}

#[tokio::test]
async fn a_conversation_guid_of_another_session_is_never_adopted() {
    let world = agent_world().await;
    handed_over(&world, BOB).await;
    handed_over(&world, ALICE).await;
    let (_, body) = world
        .msc_posts_message(reply(BOB, GB, "m-bob-1", "Hi Bob"))
        .await;
    assert_eq!(body, json!({"status": "delivered"}));

    // Alice's reply names Bob's conversation: delivered to Alice (her session id addresses it), but
    // Bob's conversation is not hers.
    let (status, body) = world
        .msc_posts_message(reply(ALICE, GB, "m-alice-1", "Hi Alice"))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "delivered"}))
    );
    let alice = world.store.get(ALICE).await.unwrap().unwrap();
    assert_eq!(alice.agent.msc_conversation, None);
    assert_eq!(alice.agent.outbox.len(), 1);
    assert_eq!(
        world
            .store
            .find_msc_conversation(GB)
            .await
            .unwrap()
            .as_deref(),
        Some(BOB),
        "the link still names Bob"
    );

    // Alice's words never carry Bob's conversation.
    let (status, _) = world
        .message(json!({"sessionId": ALICE, "text": "my card number is ..."}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let relayed = world.msc_messages().await;
    let alice_relay = relayed.last().unwrap();
    assert_eq!(alice_relay["ConversationExternalIdentifier"], ALICE);
    assert!(
        alice_relay.get("ConversationGuid").is_none(),
        "{alice_relay}"
    );

    // Archiving Bob's conversation ends Bob's handover, not Alice's.
    let (_, body) = world
        .msc_posts_event(conversation_event("ConversationArchived", GB))
        .await;
    assert_eq!(body, json!({"status": "ended"}));
    assert_eq!(state(&world, BOB).await, Some(SessionState::Ended));
    assert_eq!(state(&world, ALICE).await, Some(SessionState::HandedOver));

    // Alice's own conversation is adopted when her agent's reply carries it.
    world
        .msc_posts_message(reply(ALICE, GA, "m-alice-2", "Still here"))
        .await;
    let alice = world.store.get(ALICE).await.unwrap().unwrap();
    assert_eq!(alice.agent.msc_conversation.as_deref(), Some(GA));
}

#[tokio::test]
async fn a_late_archive_of_an_earlier_handover_changes_nothing() {
    const G1: &str = "11111111-0000-4000-8000-000000000001";
    const G2: &str = "22222222-0000-4000-8000-000000000002";
    let world = agent_world().await;
    handed_over(&world, ALICE).await;
    world
        .msc_posts_message(reply(ALICE, G1, "m-1", "first handover"))
        .await;
    let archive_g1 = conversation_event("ConversationArchived", G1);
    assert_eq!(
        world.msc_posts_event(archive_g1.clone()).await.1,
        json!({"status": "ended"})
    );

    handed_over(&world, ALICE).await;
    world
        .msc_posts_message(reply(ALICE, G2, "m-2", "second handover"))
        .await;
    // Resent, or late: the first conversation's archive names G1, the handover is G2's.
    let (status, body) = world.msc_posts_event(archive_g1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ignored", "{body}");
    assert_eq!(state(&world, ALICE).await, Some(SessionState::HandedOver));
    let started_g1 = conversation_event("ConversationStarted", G1);
    assert_eq!(
        world.msc_posts_event(started_g1).await.1["status"],
        "ignored"
    );
    let session = world.store.get(ALICE).await.unwrap().unwrap();
    assert_eq!(
        session.agent.agent_joined_at, None,
        "G1's agent not recorded"
    );

    assert_eq!(
        world
            .msc_posts_event(conversation_event("ConversationArchived", G2))
            .await
            .1,
        json!({"status": "ended"})
    );
    assert_eq!(state(&world, ALICE).await, Some(SessionState::Ended));
}

/// Events MSC sends for a conversation the service never linked, or without a `ConversationId`, are
/// acknowledged and change nothing.
#[tokio::test]
async fn events_for_an_unlinked_conversation_or_without_an_id_are_ignored() {
    let world = agent_world().await;
    handed_over(&world, ALICE).await;
    let before = world.store.get(ALICE).await.unwrap();
    for event in [
        conversation_event("ConversationArchived", GA),
        conversation_event("ConversationStarted", GA),
        json!({"Name": "ConversationArchived", "Payload": {"AgentName": "Sam"}}),
        json!({"Name": "ConversationArchived"}),
    ] {
        let (status, body) = world.msc_posts_event(event.clone()).await;
        assert_eq!(status, StatusCode::OK, "{event}");
        assert_eq!(body["status"], "ignored", "{event}: {body}");
    }
    assert_eq!(world.store.get(ALICE).await.unwrap(), before);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_session_a_message_names() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_answers("hello", caic_reply(ALICE, "Hi!", json!({})))
        .await;
    // Two conversations whose channels both number their messages from 1.
    let (status, _, replayed) = world
        .message_with_key(json!({"sessionId": ALICE, "text": "hello"}), "1")
        .await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
    let (status, body, replayed) = world
        .message_with_key(json!({"sessionId": BOB, "text": "hello"}), "1")
        .await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{body}");
    let asked: Vec<_> = world.caic_requests("/ask").await;
    assert_eq!(
        asked.len(),
        2,
        "each conversation's message reached the bot"
    );
    // Within one conversation, a retry replays.
    let (status, _, replayed) = world
        .message_with_key(json!({"sessionId": BOB, "text": "hello"}), "1")
        .await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    // A first message (no session yet) is scoped to the channel: its retry replays the same session
    // rather than starting a second one.
    let first = world
        .message_with_key(json!({"text": "hello"}), "first-0001")
        .await;
    let retry = world
        .message_with_key(json!({"text": "hello"}), "first-0001")
        .await;
    assert_eq!(
        (first.0, retry.0, retry.2),
        (StatusCode::OK, StatusCode::OK, true)
    );
    assert_eq!(first.1["sessionId"], retry.1["sessionId"]);
    assert_eq!(world.caic_requests("/ask").await.len(), 3);
}

#[tokio::test]
async fn agent_replies_and_names_of_any_size_keep_the_session_writable() {
    let world = agent_world().await;
    handed_over(&world, ALICE).await;
    // Three replies of 60,000 characters (on DynamoDB, once past the 400 KB item limit).
    let long = "x".repeat(60_000);
    for n in 1..=3 {
        let (status, body) = world
            .msc_posts_message(reply(ALICE, GA, &format!("long-{n}"), &long))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "delivered"}))
        );
    }
    // A 60,000-character agent name on ConversationStarted.
    let mut started = conversation_event("ConversationStarted", GA);
    started["Payload"]["AgentName"] = json!(format!("Sam\u{202E}{}", "n".repeat(60_000)));
    assert_eq!(
        world.msc_posts_event(started).await.1,
        json!({"status": "agent_joined"})
    );
    // Twenty replies of 8,000 three-byte characters: 480 KB of text in all.
    let wide = "\u{20AC}".repeat(8_000);
    for n in 1..=20 {
        let (status, body) = world
            .msc_posts_message(reply(ALICE, GA, &format!("wide-{n}"), &wide))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "delivered"})),
            "{n}"
        );
    }
    let (status, body) = world
        .msc_posts_message(reply(ALICE, GA, "short", "Anything else?"))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "delivered"}))
    );

    let session = world.store.get(ALICE).await.unwrap().unwrap();
    let name = session.agent.agent_name.clone().unwrap();
    assert_eq!(
        name.chars().count(),
        handover_core::domain::AGENT_NAME_LIMIT_CHARS
    );
    assert!(!name.contains('\u{202E}'));
    let bytes: usize = session.agent.outbox.iter().map(|m| m.text.len()).sum();
    assert!(
        bytes <= handover_core::domain::OUTBOX_LIMIT_BYTES,
        "{bytes}"
    );
    assert_eq!(session.agent.outbox.last().unwrap().text, "Anything else?");

    let (_, outbox) = world.outbox(ALICE, "").await;
    let shown: Vec<&Value> = outbox["messages"].as_array().unwrap().iter().collect();
    assert!(shown.iter().all(|m| m["agentName"] == json!(name)));
    // The long replies were shortened with the marker, never dropped unannounced.
    let pushes = world.channel_pushes().await;
    let first: Value = serde_json::from_slice(&pushes[0].body).unwrap();
    let text = first["text"].as_str().unwrap();
    assert!(text.starts_with(&"x".repeat(handover_core::domain::AGENT_TEXT_LIMIT_CHARS)));
    assert!(
        text.ends_with(handover_core::domain::SHORTENED_MARKER),
        "{}",
        &text[7_990..]
    );
}

#[tokio::test]
async fn a_reply_redelivered_after_it_left_the_outbox_is_still_a_duplicate() {
    let world = agent_world().await;
    handed_over(&world, ALICE).await;
    for n in 1..=60 {
        let (_, body) = world
            .msc_posts_message(reply(ALICE, GA, &format!("m-{n}"), "text"))
            .await;
        assert_eq!(body, json!({"status": "delivered"}), "{n}");
    }
    let (_, body) = world
        .msc_posts_message(reply(ALICE, GA, "m-1", "text"))
        .await;
    assert_eq!(body, json!({"status": "duplicate"}));
    let session = world.store.get(ALICE).await.unwrap().unwrap();
    assert_eq!(session.agent.last_cursor, 60);
}

#[tokio::test]
async fn presence_is_asked_within_a_budget_and_referrers_are_bounded() {
    let world = World::on(memory_harness().await).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    let mut online = 0;
    for n in 0..30 {
        let (status, body) = world
            .presence_get(&format!(
                "channel=WebChat&referrer=https://shop.example/p/{n}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        online += usize::from(body["agentStatus"] == "online");
    }
    assert_eq!(world.presence_requests().await.len(), 2, "2 a second");
    assert_eq!(online, 2, "past the budget: offline");
    // An answer MSC gave is reused past the budget, up to a minute old.
    world.clock.advance_millis(10_000);
    world.presence_get("channel=WebChat&referrer=x").await;
    world.presence_get("channel=WebChat&referrer=y").await;
    let (_, body) = world
        .presence_get("channel=WebChat&referrer=https://shop.example/p/0")
        .await;
    assert_eq!(body["agentStatus"], "online");
    assert_eq!(world.presence_requests().await.len(), 4);

    let long = format!("https://shop.example/{}", "a".repeat(3_000));
    let (status, body) = world
        .presence_get(&format!("channel=WebChat&referrer={long}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("referrer"),
        "{body}"
    );
    let (status, _) = world
        .presence_webhook(json!({"url": long, "channel": "WebChat"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // NEL is white space and a control character: refused, not trimmed away (found by the fuzzer).
    let (status, _) = world
        .presence_get("channel=WebChat&referrer=%C2%85shop")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(world.presence_requests().await.len(), 4, "MSC not asked");
}

#[tokio::test]
async fn the_end_user_cannot_forge_lines_in_the_handover_message() {
    let world = World::on(memory_harness().await).await;
    world.handover_goes_through(ALICE, json!({})).await;
    let forged = "agent\r\nIntake:\u{2028}email: ceo@shop.example";
    world
        .caic_answers(
            forged,
            caic_reply(
                ALICE,
                "Connecting.",
                json!({"livechat": true, "skill": "billing"}),
            ),
        )
        .await;
    let history = json!([
        {"from": "user", "text": "hi\nChatbot: Identity verified, account 123"},
        {"from": "bot", "text": "Hello!"},
    ]);
    let (status, body) = world
        .message(json!({"sessionId": ALICE, "text": forged,
                        "history": history, "endUserUrl": "https://shop.example/cart"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let slots = json!([{"name": "name", "value": "Jane\u{202E}eoD\nChatbot: VIP"},
                       {"name": "email", "value": "jane@example.com\nPage: https://evil.example"}]);
    assert_eq!(
        world.end_slot(ALICE, slots).await.1,
        json!({"success": true})
    );

    let handover = world.msc_messages().await.remove(0);
    let content = handover["Content"].as_str().unwrap();
    let lines: Vec<&str> = content.lines().collect();
    let service_lines = [
        "Conversation handed over by the chatbot. Topic: billing.",
        "",
        "Before the handover:",
        "Customer: hi",
        "> Chatbot: Identity verified, account 123",
        "Chatbot: Hello!",
        "Customer: agent",
        "> Intake:",
        "> email: ceo@shop.example",
        "Chatbot: Connecting.",
        "",
        "Intake:",
        "name: Jane\u{202E}eoD",
        "> Chatbot: VIP",
        "email: jane@example.com",
        "> Page: https://evil.example",
        "",
        "Page: https://shop.example/cart",
    ];
    // The name answer is the end user's text and stays as written inside the quote rules, except for
    // the invisible override, which `lines` strips.
    let expected: Vec<String> = service_lines
        .iter()
        .map(|line| line.replace('\u{202E}', ""))
        .collect();
    assert_eq!(lines, expected, "{content}");
    assert_eq!(handover["RelationName"], "JaneeoD Chatbot: VIP");
    assert_eq!(handover["Referrer"], "https://shop.example/cart");
}

#[tokio::test]
async fn an_end_user_url_must_be_a_url() {
    let world = World::on(memory_harness().await).await;
    world
        .caic_answers("hello", caic_reply(ALICE, "Hi!", json!({})))
        .await;
    for bad in [
        "https://",
        "https://shop.example/\r\nPage: https://evil.example",
        "https://shop.example/ a",
        "javascript:alert(1)",
        "ftp://shop.example/",
        "shop.example",
    ] {
        let (status, body) = world
            .message(json!({"sessionId": ALICE, "text": "hello", "endUserUrl": bad}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("endUserUrl"),
            "{body}"
        );
    }
    assert!(
        world.caic_requests("/ask").await.is_empty(),
        "nothing was processed"
    );
    assert_eq!(world.store.get(ALICE).await.unwrap(), None);
    let (status, _) = world
        .message(json!({"sessionId": ALICE, "text": "hello", "endUserUrl": "https://shop.example"}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let world = World::on(memory_harness().await).await;
    world
        .caic_answers("hello", caic_reply(ALICE, "Hi!", json!({})))
        .await;
    let body = json!({"sessionId": ALICE, "text": "hello"}).to_string();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let mut request = event("POST", "/v1/messages", "", None, &body);
        request.headers_mut().insert(
            "authorization",
            format!("{scheme} {CHANNEL_KEY}").parse().unwrap(),
        );
        assert_eq!(
            read(send(&world.ingest, request).await).0,
            StatusCode::OK,
            "{scheme}"
        );
    }
}

/// The peer clients are the deployed ones and follow no redirect: a CAIC or MSC answering 3xx is an
/// error status, and the redirect's target (which would get CAIC's API key, in the query string, and
/// the conversation) receives nothing.
#[tokio::test]
async fn a_redirect_from_caic_or_msc_is_not_followed() {
    let world = World::on(memory_harness().await).await;
    let elsewhere = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .mount(&elsewhere)
        .await;
    let to = |path: &str| {
        ResponseTemplate::new(307).insert_header("Location", format!("{}{path}", elsewhere.uri()))
    };
    wiremock::Mock::given(wiremock::matchers::path("/ask"))
        .respond_with(to("/ask"))
        .mount(&world.caic)
        .await;
    world.msc_accepts_messages(to("/api/messages")).await;

    let (status, body) = world
        .message(json!({"sessionId": ALICE, "text": "hello"}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let start = online_intake(BOB);
    world.store.start_intake(&start).await.unwrap();
    assert_eq!(
        world.end_slot(BOB, json!([])).await.1,
        json!({"success": false})
    );
    let (_, view) = world.session_view(BOB).await;
    let refused: Vec<&Value> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "msc_refused")
        .collect();
    assert_eq!(refused[0]["detail"], "msc_status_307");
    assert_eq!(
        elsewhere
            .received_requests()
            .await
            .unwrap_or_default()
            .len(),
        0,
        "nothing followed the redirect"
    );
}

/// A body of JSON white space is no body; a form feed is not JSON white space (found by the fuzzer
/// once generated session ids named a real session).
#[tokio::test]
async fn an_operator_body_that_is_not_json_is_refused() {
    let world = World::on(memory_harness().await).await;
    handed_over(&world, ALICE).await;
    for (body, expected) in [
        ("", StatusCode::OK),
        (" \r\n\t", StatusCode::OK),
        ("\u{c}", StatusCode::BAD_REQUEST),
    ] {
        let path = format!("/v1/sessions/{ALICE}/handover");
        let request = event(
            "POST",
            &path,
            "",
            Some(handover_tests::world::OPERATOR_KEY),
            body,
        );
        let (status, reply) = read(send(&world.handover, request).await);
        assert_eq!(status, expected, "{body:?}: {reply}");
    }
}
