//! Every log line of the whole story, captured at the most verbose level, carries no key, secret,
//! intake answer, end-user name or e-mail address, while it does carry session ids.

use std::io::Write;
use std::sync::{Arc, Mutex};

use handover_tests::dynamodb_harness;
use handover_tests::world::*;
use serde_json::json;
use wiremock::ResponseTemplate;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SID: &str = "log-session-0001";
const NAME: &str = "Johanna Verhoeven";
const EMAIL: &str = "johanna.verhoeven@example.org";
const PHONE: &str = "+31612345678";
const HISTORY: &str = "my parcel 4711 never arrived at Keizersgracht";

/// Runs in a process of its own (this test binary, started again for this one test): the log
/// subscriber is process-wide, and other tests' log lines and callsites must not mix with these.
#[test]
fn the_whole_story_logs_no_secret_and_no_personal_data() {
    const CHILD: &str = "HANDOVER_LOGS_TEST_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let test = "logs::the_whole_story_logs_no_secret_and_no_personal_data";
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([test, "--exact", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .expect("the test binary runs again");
        let report = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success() && report.contains("1 passed"),
            "the logs test failed in its own process:\n{}{}",
            report,
            String::from_utf8_lossy(&child.stderr)
        );
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(whole_story());
}

async fn whole_story() {
    let captured = Captured::default();
    let writer = captured.clone();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || writer.clone())
                // What a deployment with RUST_LOG=trace would log.
                .with_filter(handover_core::telemetry::filter("trace")),
        )
        .init();

    let world = World::on(dynamodb_harness().await).await;
    world.handover_goes_through(SID, json!({})).await;
    world
        .caic_answers(NAME, caic_reply(SID, "Your e-mail?", json!({})))
        .await;

    let say = |text: &str| {
        json!({"sessionId": SID, "text": text, "endUser": {"name": NAME, "email": EMAIL},
               "endUserUrl": "https://shop.example/"})
    };
    let mut livechat_turn = say("agent");
    livechat_turn["history"] = json!([{"from": "user", "text": HISTORY}]);
    world.message(livechat_turn).await;
    world.message(say(NAME)).await;
    let slots = json!([{"name": "name", "value": NAME}, {"name": "email", "value": EMAIL},
                       {"name": "phone", "value": PHONE}]);
    assert_eq!(world.end_slot(SID, slots).await.1, json!({"success": true}));
    world.message(say(&format!("my e-mail is {EMAIL}"))).await;
    // The agent answers, by name and with the e-mail address, and the channel's webhook gets it.
    world.channel_answers(ResponseTemplate::new(200)).await;
    let agent_reply = json!({"ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "m-1",
                             "ConversationGuid": "guid-1", "Content": format!("Hi {NAME}, I wrote to {EMAIL}"),
                             "SentDateTime": "2026-12-01T09:00:00Z"});
    assert_eq!(
        world.msc_posts_message(agent_reply).await.1["status"],
        "delivered"
    );
    world.outbox(SID, "").await;
    // An event name with a line break would forge a line in a text log: only known names are logged.
    let forged = "Hello\n2026-12-01T09:00:00Z ERROR FORGED-LINE handover ended";
    world
        .msc_posts_event(json!({"Name": forged, "Payload": {"ConversationId": "guid-1"}}))
        .await;
    // Bad input that carries personal data must not be echoed into a log line either.
    world
        .message(json!({"sessionId": SID, "text": "hi", "endUser": EMAIL}))
        .await;
    world
        .message(json!({"sessionId": NAME, "text": EMAIL}))
        .await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for event in [
        "handover flow started",
        "session handed over and locked",
        "invalid_body",
        "invalid_session_id",
        "agent reply handled",
        "message pushed to the channel",
    ] {
        assert!(logs.contains(event), "no log line for {event:?}");
    }
    assert!(logs.contains(SID), "log lines carry the session id");
    let refusal = logs
        .lines()
        .find(|line| line.contains("\"invalid_body\""))
        .expect("the refusal's line");
    assert!(
        refusal.contains("WARN") && refusal.contains("request_id"),
        "one warning in the request's span: {refusal}"
    );
    for forbidden in [
        CAIC_API_KEY,
        PRESENCE_API_KEY,
        MSC_KEY,
        MSC_SECRET,
        CHANNEL_KEY,
        WEBHOOK_KEY,
        OPERATOR_KEY,
        MSC_WEBHOOK_KEY,
        CHANNEL_WEBHOOK_KEY,
        "bXNjLWtleTptc2Mtc2VjcmV0", // HTTP Basic of msc-key:msc-secret
        NAME,
        "Johanna",
        EMAIL,
        PHONE,
        HISTORY,
        "Keizersgracht",
        "FORGED-LINE",
    ] {
        if let Some(line) = logs.lines().find(|line| line.contains(forbidden)) {
            panic!("a log line carries {forbidden:?}: {line}");
        }
    }
}
