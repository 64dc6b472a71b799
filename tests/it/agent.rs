//! The agent's side end to end: MSC's webhooks into the outbox and out to the channel's webhook, the
//! ends of a handover, and what the channel polls. Real handlers, wiremock CAIC, MSC and channel.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use handover_core::SessionState;
use handover_tests::world::{caic_reply, event, read, send, World, CHANNEL_WEBHOOK_KEY};
use handover_tests::{dynamodb_harness, memory_harness};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

const SID: &str = "agent-side-session-0001";
const GUID: &str = "6f1c0b1e-8d4a-4c43-9b9e-2f64d1d0aa01";

/// A conversation handed over to MSC, with the channel's webhook answering `channel`.
async fn handed_over(world: &World, channel: ResponseTemplate) {
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
        .caic_answers("hello", caic_reply(SID, "Hi, I am the bot.", json!({})))
        .await;
    world
        .caic_event_answers(200, caic_reply(SID, "Your name?", json!({})))
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    world.channel_answers(channel).await;
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    let slots = json!([{"name": "name", "value": "Jane"}]);
    assert_eq!(world.end_slot(SID, slots).await.1, json!({"success": true}));
}

fn reply(id: &str, text: &str, sent_at: &str) -> Value {
    json!({"ChannelAccountExternalIdentifier": "acct-1", "ConversationGuid": GUID,
           "ConversationExternalIdentifier": SID, "MessageExternalIdentifier": id,
           "RelationName": "Jane", "Content": text, "IsPrivate": false,
           "SentDateTime": sent_at, "Attachments": []})
}

fn archived() -> Value {
    json!({"Name": "ConversationArchived",
           "Payload": {"ConversationId": GUID, "AgentName": "Sam", "EventUtcDateTime": "2026-12-01T10:00:00Z"}})
}

async fn say(world: &World, text: &str) -> Value {
    let (status, body) = world.message(json!({"sessionId": SID, "text": text})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn texts(outbox: &Value) -> Vec<String> {
    outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// What the channel recomputes to trust a push: `t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>`.
fn signature_holds(header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    // Recomputed as a channel would, with an HMAC library, not with the code under test.
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(CHANNEL_WEBHOOK_KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    t.parse::<i64>().is_ok() && v1 == expected
}

#[tokio::test]
async fn an_agent_reply_reaches_the_outbox_and_the_channel_signed() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(204)).await;
    let (status, body) = world
        .msc_posts_message(reply(
            "m-1",
            "Hello Jane, how can I help?",
            "2026-12-01T09:00:00Z",
        ))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "delivered"}))
    );

    let (status, outbox) = world.outbox(SID, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outbox["handledBy"], "agent");
    assert_eq!(outbox["messages"][0]["id"], "m-1");
    assert_eq!(outbox["messages"][0]["from"], "agent");
    assert_eq!(outbox["messages"][0]["cursor"], 1);
    assert_eq!(outbox["messages"][0]["sentAt"], "2026-12-01T09:00:00Z");
    assert_eq!(texts(&outbox), ["Hello Jane, how can I help?"]);
    assert_eq!(world.outbox(SID, "after=1").await.1["messages"], json!([]));

    let pushes = world.channel_pushes().await;
    assert_eq!(pushes.len(), 1);
    let pushed: Value = serde_json::from_slice(&pushes[0].body).unwrap();
    assert_eq!(pushed["sessionId"], SID);
    assert_eq!(pushed["text"], "Hello Jane, how can I help?");
    let header = pushes[0].headers["handover-signature"].to_str().unwrap();
    assert!(signature_holds(header, &pushes[0].body), "{header}");
    let tampered = [pushes[0].body.as_slice(), b" "].concat();
    assert!(!signature_holds(header, &tampered));

    // The reply slid the lock and saved MSC's conversation; the next relay carries it.
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.expires_at, world.now() + 86_400);
    assert_eq!(session.agent.msc_conversation.as_deref(), Some(GUID));
    say(&world, "thanks, my invoice number is 42").await;
    let relayed = world.msc_messages().await;
    assert_eq!(relayed.last().unwrap()["ConversationGuid"], GUID);
    assert!(
        relayed[0].get("ConversationGuid").is_none(),
        "the handover had none yet"
    );
}

#[tokio::test]
async fn the_same_reply_posted_five_times_is_delivered_once() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            world
                .msc_posts_message(reply("m-dup", "Once.", "2026-12-01T09:00:00Z"))
                .await
                .1["status"]
                .clone(),
        );
    }
    assert_eq!(statuses[0], "delivered");
    assert!(
        statuses[1..].iter().all(|s| s == "duplicate"),
        "{statuses:?}"
    );
    assert_eq!(texts(&world.outbox(SID, "").await.1), ["Once."]);
    assert_eq!(world.channel_pushes().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_replies_all_land_in_the_order_msc_sent_them() {
    let world = Arc::new(World::on(dynamodb_harness().await).await);
    handed_over(&world, ResponseTemplate::new(200)).await;
    let posts = (0..16).map(|n| {
        let world = Arc::clone(&world);
        tokio::spawn(async move {
            let sent_at = format!("2026-12-01T09:00:{n:02}Z");
            world
                .msc_posts_message(reply(&format!("m-{n}"), &format!("reply {n}"), &sent_at))
                .await
        })
    });
    for posted in join_all(posts).await {
        assert_eq!(posted.unwrap().1["status"], "delivered");
    }
    let outbox = world.outbox(SID, "").await.1;
    let expected: Vec<String> = (0..16).map(|n| format!("reply {n}")).collect();
    assert_eq!(texts(&outbox), expected);
    let mut cursors: Vec<u64> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["cursor"].as_u64().unwrap())
        .collect();
    cursors.sort_unstable();
    assert_eq!(
        cursors,
        (1..=16).collect::<Vec<u64>>(),
        "each arrival its own cursor"
    );
    assert_eq!(world.channel_pushes().await.len(), 16);
}

#[tokio::test]
async fn with_the_channel_webhook_down_the_reply_stays_in_the_outbox() {
    for channel in [
        ResponseTemplate::new(500),
        ResponseTemplate::new(200).set_delay(Duration::from_millis(1_500)),
    ] {
        let world = World::on(memory_harness().await).await;
        handed_over(&world, channel).await;
        let (status, body) = world
            .msc_posts_message(reply("m-1", "Still here.", "2026-12-01T09:00:00Z"))
            .await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::OK, json!("delivered"))
        );
        assert_eq!(world.channel_pushes().await.len(), 3, "three attempts");
        assert_eq!(texts(&world.outbox(SID, "").await.1), ["Still here."]);
    }
    let refused = World::with_env(
        memory_harness().await,
        &[("CHANNEL_WEBHOOK_URL", handover_tests::faulty::REFUSED_URL)],
    )
    .await;
    handed_over(&refused, ResponseTemplate::new(200)).await;
    refused
        .msc_posts_message(reply("m-1", "Still here.", "2026-12-01T09:00:00Z"))
        .await;
    assert_eq!(texts(&refused.outbox(SID, "").await.1), ["Still here."]);
}

#[tokio::test]
async fn a_private_note_is_acknowledged_and_never_delivered() {
    let world = World::on(memory_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    let mut note = reply("m-note", "Customer seems upset.", "2026-12-01T09:00:00Z");
    note["IsPrivate"] = json!(true);
    assert_eq!(
        world.msc_posts_message(note).await.1["status"],
        "private_note"
    );
    assert_eq!(world.outbox(SID, "").await.1["messages"], json!([]));
    assert!(world.channel_pushes().await.is_empty());
}

#[tokio::test]
async fn a_reply_for_a_session_not_handed_over_is_acknowledged_and_kept_out() {
    let world = World::on(memory_harness().await).await;
    let (status, body) = world
        .msc_posts_message(reply("m-1", "Anyone?", "2026-12-01T09:00:00Z"))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "not_handed_over"}))
    );
    assert_eq!(world.store.get(SID).await.unwrap(), None);
}

#[tokio::test]
async fn the_agent_closing_the_conversation_hands_it_back_to_the_bot_when_configured() {
    let world = World::with_env(dynamodb_harness().await, &[("RELEASE_ON_ARCHIVE", "true")]).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    world
        .msc_posts_message(reply("m-1", "Done here.", "2026-12-01T09:00:00Z"))
        .await;
    let started = json!({"Name": "ConversationStarted",
                         "Payload": {"ConversationId": GUID, "AgentName": "Sam"}});
    assert_eq!(
        world.msc_posts_event(started).await.1["status"],
        "agent_joined"
    );
    assert_eq!(world.msc_posts_event(archived()).await.1["status"], "ended");

    let outbox = world.outbox(SID, "after=1").await.1;
    assert_eq!(outbox["handledBy"], "bot");
    let joined = &outbox["messages"][0];
    assert_eq!(
        (&joined["from"], &joined["event"], &joined["agentName"]),
        (&json!("system"), &json!("agent_joined"), &json!("Sam"))
    );
    assert_eq!(joined["text"], "Sam has joined the conversation.");
    let ended = &outbox["messages"][1];
    assert_eq!(ended["from"], "system");
    assert_eq!(ended["event"], "handover_ended");
    assert_eq!(ended["reason"], "agent_closed");
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(session.agent.agent_name.as_deref(), Some("Sam"));

    let back = say(&world, "hello").await;
    assert_eq!(
        (back["handledBy"].clone(), back["answers"].clone()),
        (json!("bot"), json!(["Hi, I am the bot."]))
    );
    // And a new livechat answer can start a new handover.
    say(&world, "agent").await;
    assert_eq!(
        world.store.get(SID).await.unwrap().unwrap().state,
        SessionState::Prechat
    );
}

#[tokio::test]
async fn without_release_on_archive_the_session_stays_with_the_agent() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    world
        .msc_posts_message(reply("m-1", "Done here.", "2026-12-01T09:00:00Z"))
        .await;
    assert_eq!(
        world.msc_posts_event(archived()).await.1["status"],
        "ignored"
    );
    assert_eq!(say(&world, "hello?").await["handledBy"], "agent");
}

#[tokio::test]
async fn an_operator_sends_the_conversation_back_to_the_bot() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    let (status, body) = world.operator_release(SID).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"sessionId": SID, "status": "released"})
        )
    );
    let outbox = world.outbox(SID, "").await.1;
    assert_eq!(outbox["messages"][0]["reason"], "operator_released");
    let pushed: Value = serde_json::from_slice(&world.channel_pushes().await[0].body).unwrap();
    assert_eq!(pushed["reason"], "operator_released");
    assert_eq!(say(&world, "hello").await["handledBy"], "bot");
    let (status, again) = world.operator_release(SID).await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("not_handed_over"))
    );
}

#[tokio::test]
async fn a_lock_that_lapsed_ends_with_inactivity_on_the_next_turn() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    world.clock.advance(86_400 + 1);
    assert_eq!(say(&world, "hello").await["handledBy"], "bot");
    let pushed: Value = serde_json::from_slice(&world.channel_pushes().await[0].body).unwrap();
    assert_eq!(
        (pushed["event"].clone(), pushed["reason"].clone()),
        (json!("handover_ended"), json!("inactivity"))
    );
    let session = world.store.get(SID).await.unwrap().unwrap();
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(say(&world, "hello").await["handledBy"], "bot");
    assert_eq!(world.channel_pushes().await.len(), 1, "told once");
}

#[tokio::test]
async fn msc_webhooks_without_their_key_are_401_and_change_nothing() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    let body = reply("m-1", "Hi", "2026-12-01T09:00:00Z").to_string();
    let before = world.store.get(SID).await.unwrap();
    for (query, key) in [
        ("", None),
        ("", Some("msc-webhook-secret-0123456788")),
        ("key=msc-webhook-secret-0123456788", None),
        ("", Some(handover_tests::world::CHANNEL_KEY)),
    ] {
        for path in ["/v1/msc/messages", "/v1/msc/events"] {
            let (status, got) =
                read(send(&world.agent, event("POST", path, query, key, &body)).await);
            assert_eq!(
                (status, got["error"]["code"].clone()),
                (StatusCode::UNAUTHORIZED, json!("unauthorized")),
                "{path} {query}"
            );
        }
    }
    assert_eq!(world.store.get(SID).await.unwrap(), before);
    // The key in the URL is accepted, for MSC setups that take only a URL.
    let in_url = format!("key={}", handover_tests::world::MSC_WEBHOOK_KEY);
    let (status, got) = read(
        send(
            &world.agent,
            event("POST", "/v1/msc/messages", &in_url, None, &body),
        )
        .await,
    );
    assert_eq!(
        (status, got["status"].clone()),
        (StatusCode::OK, json!("delivered"))
    );
}

#[tokio::test]
async fn malformed_msc_bodies_are_a_4xx_naming_the_field() {
    let world = World::on(memory_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    let without = |field: &str| {
        let mut body = reply("m-1", "Hi", "2026-12-01T09:00:00Z");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let mut bad_session = reply("m-1", "Hi", "2026-12-01T09:00:00Z");
    bad_session["ConversationExternalIdentifier"] = json!("not a session");
    for (body, code, mentions) in [
        (
            without("MessageExternalIdentifier"),
            "invalid_body",
            "MessageExternalIdentifier",
        ),
        (
            without("ConversationExternalIdentifier"),
            "invalid_body",
            "ConversationExternalIdentifier",
        ),
        (
            json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": 7}),
            "invalid_body",
            "expected a string",
        ),
        (bad_session, "invalid_session_id", "session id"),
    ] {
        let (status, got) = world.msc_posts_message(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
        assert_eq!(got["error"]["code"], code, "{got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions}"
        );
    }
    // Nothing to show is acknowledged (MSC would retry a refusal forever), and not delivered.
    let empty = reply("m-2", "  ", "2026-12-01T09:00:00Z");
    assert_eq!(
        world.msc_posts_message(empty).await.1,
        json!({"status": "empty"})
    );
    let (status, got) = world.msc_posts_event(json!({"Payload": {}})).await;
    assert_eq!(
        (status, got["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_body"))
    );
    assert!(got["error"]["message"].as_str().unwrap().contains("Name"));
    let (status, got) = world.outbox(SID, "after=soon").await;
    assert_eq!(
        (status, got["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_cursor"))
    );
    assert_eq!(
        world.outbox(SID, "").await.1["messages"],
        json!([]),
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reply_before_the_lock_is_written_finishes_it_and_is_delivered() {
    for harness in [memory_harness().await, dynamodb_harness().await] {
        let adapter = harness.adapter;
        let world = Arc::new(World::on(harness).await);
        // MSC answers the handover late; its agent is quicker and replies before the 201 arrives.
        world
            .msc_accepts_messages(ResponseTemplate::new(201).set_delay(Duration::from_millis(800)))
            .await;
        world.channel_answers(ResponseTemplate::new(204)).await;
        let start = handover_tests::online_intake(SID);
        world.store.start_intake(&start).await.unwrap();
        let holder = {
            let world = world.clone();
            tokio::spawn(async move { world.end_slot(SID, json!([])).await })
        };
        while world.msc_messages().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let (status, body) = world
            .msc_posts_message(reply("early-1", "Hello Jane", "2026-12-01T10:00:00Z"))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "delivered"})),
            "{adapter}"
        );
        assert_eq!(
            world.store.get(SID).await.unwrap().unwrap().state,
            SessionState::HandedOver,
            "{adapter}: locked by the reply"
        );
        assert_eq!(
            holder.await.unwrap(),
            (StatusCode::OK, json!({"success": true})),
            "{adapter}: the holder's completion is its own"
        );
        let (_, shown) = world.outbox(SID, "").await;
        assert_eq!(shown["messages"][0]["text"], "Hello Jane", "{adapter}");
        assert_eq!(shown["handledBy"], "agent", "{adapter}");
    }
}

/// A second handover of the same conversation: the channel that read up to the first one's last
/// cursor gets the second one's replies (its cursors go on counting), and the first one's stay
/// readable.
#[tokio::test]
async fn a_second_handover_goes_on_counting_where_the_first_one_ended() {
    let world = World::on(dynamodb_harness().await).await;
    handed_over(&world, ResponseTemplate::new(200)).await;
    world
        .msc_posts_message(reply("first-1", "First agent.", "2026-12-01T09:00:00Z"))
        .await;
    assert_eq!(world.operator_release(SID).await.0, StatusCode::OK);
    let first = world.outbox(SID, "").await.1;
    let last_seen = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["cursor"].as_u64())
        .max()
        .unwrap();

    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    let slots = json!([{"name": "name", "value": "Jane"}]);
    assert_eq!(world.end_slot(SID, slots).await.1, json!({"success": true}));
    let mut second = reply("second-1", "Second agent.", "2026-12-01T11:00:00Z");
    second["ConversationGuid"] = json!("second-conversation");
    world.msc_posts_message(second).await;

    let news = world.outbox(SID, &format!("after={last_seen}")).await.1;
    assert_eq!(texts(&news), ["Second agent."]);
    let all = texts(&world.outbox(SID, "").await.1);
    assert!(all.contains(&"First agent.".to_owned()), "{all:?}");
}
