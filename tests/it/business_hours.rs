//! Business hours: outside them agents are offline without asking MSC, on every way presence is asked.

use handover_core::config::{AnswerIngestConfig, Env};
use handover_tests::memory_harness;
use handover_tests::world::{caic_reply, query_of, World};
use http::StatusCode;
use serde_json::json;
use wiremock::ResponseTemplate;

const SID: &str = "business-hours-session-01";
/// The world's clock starts on Sunday 2025-06-15, 17:06 in Amsterdam.
const HOURS: &str = "* = Europe/Amsterdam: mon-fri 09:00-17:30; closed 2025-06-17";

#[tokio::test]
async fn outside_business_hours_agents_are_offline_and_msc_is_not_asked() {
    let world = World::with_env(memory_harness().await, &[("BUSINESS_HOURS", HOURS)]).await;
    world
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    world
        .caic_answers(
            "agent",
            caic_reply(SID, "Connecting.", json!({"livechat": true})),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(SID, "Leave your details.", json!({})))
        .await;

    let (status, body) = world.presence_get("channel=WebChat").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"agentStatus": "offline", "reason": "closed", "opensAt": "2025-06-16T07:00:00Z"})
        )
    );
    let (_, body) = world
        .presence_webhook(json!({"url": "https://shop.example/", "channel": "WebChat", "data": {"context": "NL-shop"}}))
        .await;
    assert_eq!(body, json!({"agentAvailable": false}));
    world
        .message(json!({"sessionId": SID, "text": "agent"}))
        .await;
    let events = world.caic_requests("/event/prechat").await;
    assert_eq!(
        query_of(&events[0], "agentStatus").as_deref(),
        Some("offline")
    );
    assert!(
        world.presence_requests().await.is_empty(),
        "MSC never asked"
    );

    // Monday 10:00 in Amsterdam: open, MSC is asked as before.
    world.clock.set(1_750_060_800); // 2025-06-16T08:00:00Z
    let (_, body) = world.presence_get("channel=WebChat").await;
    assert_eq!(body, json!({"agentStatus": "online"}));
    assert_eq!(world.presence_requests().await.len(), 1);
    // Tuesday is a holiday: closed, opening on Wednesday.
    world.clock.set(1_750_147_200); // 2025-06-17T08:00:00Z
    let (_, body) = world.presence_get("channel=WebChat").await;
    assert_eq!(body["opensAt"], "2025-06-18T07:00:00Z");
}

#[test]
fn malformed_business_hours_stop_the_start_naming_the_problem() {
    let env = Env::from_pairs([
        ("CAIC_BASE_URL", "http://127.0.0.1:1"),
        ("CAIC_CUSTOMER_KEY", "c"),
        ("CAIC_PROJECT_KEY", "p"),
        ("CAIC_API_KEY", "k"),
        ("MSC_PRESENCE_URL", "http://127.0.0.1:1"),
        ("MSC_PRESENCE_API_KEY", "k"),
        ("MSC_API_URL", "http://127.0.0.1:1"),
        ("MSC_API_KEY", "k"),
        ("MSC_API_SECRET", "s"),
        ("MSC_CHANNEL_ACCOUNT", "a"),
        ("CHANNEL_API_KEY", "channel-key-0123456789"),
        ("BUSINESS_HOURS", "* = Europe/Amsterdam: mon-fri 09:00-17:30 | WhatsApp = Mars/Olympus: daily 00:00-24:00"),
    ]);
    let error = AnswerIngestConfig::from_env(&env)
        .err()
        .map(|e| e.to_string());
    let error = error.expect("refused");
    assert!(
        error.starts_with("BUSINESS_HOURS is invalid: rule 2"),
        "{error}"
    );
    assert!(
        error.contains("unknown time zone \"Mars/Olympus\""),
        "{error}"
    );
}
