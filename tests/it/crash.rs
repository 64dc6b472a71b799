//! A killed process: the local runner (DynamoDB store) is killed with SIGKILL while MSC has the
//! handover message, after the claim and before the lock. A second runner on the same table finishes
//! the handover with the next end-user turn once the claim's lease has run out: handed over once (the
//! handover message repeated under one `MessageExternalIdentifier`, which MSC deduplicates), the
//! message that waited behind the claim and the next one each posted once, nothing stuck.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handover_core::config::Env;
use handover_core::SessionState;
use handover_tests::world::caic_reply;
use handover_tests::{dynamodb_endpoint, dynamodb_harness_on_table, moto_outbound_queue};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CHILD: &str = "HANDOVER_CRASH_TEST_RUNNER";
const SID: &str = "crash-session-0001";
const CHANNEL_KEY: &str = "crash-channel-key-0123";
const WEBHOOK_KEY: &str = "crash-webhook-key-0123";
const LEASE_SECS: u64 = 5;
/// A message a killed drainer had received comes round again after this long.
const QUEUE_VISIBILITY_SECS: u32 = 3;

/// In the child process: the local runner, as `cargo run -p handover-local` starts it, until killed.
async fn serve_until_killed() {
    let env = Env::from_process();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = handover_local::start(listener, env)
        .await
        .expect("runner starts");
    let port_file = std::env::var("HANDOVER_LOCAL_PORT_FILE").unwrap();
    std::fs::write(port_file, running.addr.port().to_string()).unwrap();
    let _ = running.task.await;
}

struct Runner {
    child: Child,
    base: String,
}

impl Runner {
    /// `test` is the calling test's name: the child runs it again and finds itself a child.
    /// `queue`: the outbound queue (moto's SQS), which outlives the runner as SQS does.
    fn start(test: &str, table: &str, queue: &str, caic: &MockServer, msc: &MockServer) -> Runner {
        Self::start_with(test, table, queue, caic, msc, &[])
    }

    fn start_with(
        test: &str,
        table: &str,
        queue: &str,
        caic: &MockServer,
        msc: &MockServer,
        extra: &[(&str, String)],
    ) -> Runner {
        let port_file = std::env::temp_dir().join(format!("crash-port-{}", uuid::Uuid::new_v4()));
        let test = format!("crash::{test}");
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                test.as_str(),
                "--exact",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("HANDOVER_LOCAL_PORT_FILE", &port_file)
            .env("HANDOVER_STORE", "dynamodb")
            .env("HANDOVER_TABLE", table)
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
            .env("AWS_ENDPOINT_URL_SQS", dynamodb_endpoint())
            .env("MSC_OUTBOUND_QUEUE_URL", queue)
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CAIC_BASE_URL", caic.uri())
            .env("CAIC_CUSTOMER_KEY", "cust")
            .env("CAIC_PROJECT_KEY", "proj")
            .env("CAIC_API_KEY", "caic-api-key")
            .env("MSC_PRESENCE_URL", format!("{}/presence", msc.uri()))
            .env("MSC_PRESENCE_API_KEY", "presence-key")
            .env("MSC_API_URL", format!("{}/api", msc.uri()))
            .env("MSC_API_KEY", "msc-key")
            .env("MSC_API_SECRET", "msc-secret")
            .env("MSC_CHANNEL_ACCOUNT", "acct-1")
            .env("MSC_TIMEOUT_MS", "1500")
            .env("CHANNEL_API_KEY", CHANNEL_KEY)
            .env("CAIC_WEBHOOK_SECRET", WEBHOOK_KEY)
            .env("CLAIM_LEASE_SECS", LEASE_SECS.to_string())
            .envs(extra.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                if !port.is_empty() {
                    break port;
                }
            }
            assert!(Instant::now() < deadline, "the runner did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&port_file);
        Runner {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL on Unix: no destructor, no flush, as when Lambda's sandbox is torn down.
    fn kill(self) {}
}

impl Drop for Runner {
    // Also when an assertion fails: no runner outlives the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    handover_core::clients::new_http_client(None).unwrap()
}

async fn say(runner: &Runner, text: &str) -> Value {
    http()
        .post(format!("{}/v1/messages", runner.base))
        .bearer_auth(CHANNEL_KEY)
        .json(&json!({"sessionId": SID, "text": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn msc_posts(msc: &MockServer) -> Vec<Value> {
    msc.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/messages")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn msc_accepts_after(msc: &MockServer, delay: Duration) {
    Mock::given(method("POST"))
        .and(path("/api/messages"))
        .respond_with(ResponseTemplate::new(201).set_delay(delay))
        .mount(msc)
        .await;
    Mock::given(method("GET"))
        .and(path("/presence/api/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("Online"))
        .mount(msc)
        .await;
}

/// CAIC offers a handover for "agent" and opens the intake dialog.
async fn caic_offering_a_handover() -> MockServer {
    let caic = MockServer::start().await;
    let livechat = json!({"livechat": "true", "skill": "billing"});
    Mock::given(method("GET"))
        .and(path("/ask"))
        .and(query_param("q", "agent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(caic_reply(
            SID,
            "Let me connect you.",
            livechat,
        )))
        .mount(&caic)
        .await;
    Mock::given(method("GET"))
        .and(path("/event/prechat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(caic_reply(
            SID,
            "What is your name?",
            json!({}),
        )))
        .mount(&caic)
        .await;
    caic
}

fn end_slot(runner: &Runner) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = format!("{}/v1/prechat/complete", runner.base);
    tokio::spawn(async move {
        let body = json!({"culture": "en", "sessionId": SID, "session": {}, "name": "intake",
                          "slots": [{"name": "name", "value": "Jane"}]});
        http()
            .post(url)
            .bearer_auth(WEBHOOK_KEY)
            .json(&body)
            .send()
            .await
    })
}

async fn until_msc_has(msc: &MockServer, posts: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while msc_posts(msc).await.len() < posts {
        assert!(Instant::now() < deadline, "MSC never got {posts} messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fresh_table() -> String {
    format!("handover-crash-{}", uuid::Uuid::new_v4().simple())
}

const KILLED_BETWEEN_CLAIM_AND_LOCK: &str =
    "a_runner_killed_between_claim_and_lock_leaves_nothing_lost_or_stuck";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_between_claim_and_lock_leaves_nothing_lost_or_stuck() {
    if std::env::var_os(CHILD).is_some() {
        return serve_until_killed().await;
    }
    let table = fresh_table();
    let queue = moto_outbound_queue(QUEUE_VISIBILITY_SECS).await;
    let caic = caic_offering_a_handover().await;
    let msc = MockServer::start().await;
    // MSC takes the handover message and answers late: the runner dies holding the claim.
    msc_accepts_after(&msc, Duration::from_secs(30)).await;

    let first = Runner::start(KILLED_BETWEEN_CLAIM_AND_LOCK, &table, &queue, &caic, &msc);
    let started = say(&first, "agent").await;
    assert_eq!(started["handledBy"], "bot", "{started}");
    let webhook = end_slot(&first);
    until_msc_has(&msc, 1).await;
    first.kill();
    assert!(
        webhook.await.unwrap().is_err(),
        "CAIC's webhook saw the connection die"
    );
    let handover_id = msc_posts(&msc).await[0]["MessageExternalIdentifier"].clone();

    let store = dynamodb_harness_on_table(&table).store;
    let left = store
        .get(SID)
        .await
        .unwrap()
        .expect("the session survives the crash");
    assert_eq!(
        left.state,
        SessionState::HandingOver,
        "the claim outlived its holder"
    );

    msc.reset().await;
    msc_accepts_after(&msc, Duration::ZERO).await;
    let second = Runner::start(KILLED_BETWEEN_CLAIM_AND_LOCK, &table, &queue, &caic, &msc);
    let waiting = say(&second, "are you still there?").await;
    assert_eq!(
        (waiting["handledBy"].clone(), waiting["queued"].clone()),
        (json!("agent"), json!(true)),
        "within the lease the message waits behind the claim: {waiting}"
    );
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let next = say(&second, "hello?").await;
    assert_eq!(next["handledBy"], "agent", "{next}");
    until_msc_has(&msc, 3).await;

    let session = store.get(SID).await.unwrap().unwrap();
    assert_eq!(
        session.state,
        SessionState::HandedOver,
        "locked: nothing stuck"
    );
    let posts = msc_posts(&msc).await;
    let ids: Vec<&Value> = posts
        .iter()
        .map(|p| &p["MessageExternalIdentifier"])
        .collect();
    assert_eq!(
        ids[0], &handover_id,
        "the repeat carries the first post's id"
    );
    let texts: Vec<&str> = posts[1..]
        .iter()
        .map(|p| p["Content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["are you still there?", "hello?"],
        "each message once, in order"
    );
    second.kill();
}

const KILLED_WHILE_POSTING_THE_QUEUE: &str =
    "a_runner_killed_while_posting_waiting_messages_loses_none";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_while_posting_waiting_messages_loses_none() {
    if std::env::var_os(CHILD).is_some() {
        return serve_until_killed().await;
    }
    let table = fresh_table();
    let queue = moto_outbound_queue(QUEUE_VISIBILITY_SECS).await;
    let caic = caic_offering_a_handover().await;
    let msc = MockServer::start().await;
    // The handover message takes a moment (a message arrives meanwhile and waits behind the claim);
    // the waiting message is never answered: the runner dies delivering it from the queue, after the
    // lock.
    Mock::given(method("POST"))
        .and(path("/api/messages"))
        .and(body_string_contains("waiting behind"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(30)))
        .mount(&msc)
        .await;
    msc_accepts_after(&msc, Duration::from_secs(1)).await;

    let first = Runner::start(KILLED_WHILE_POSTING_THE_QUEUE, &table, &queue, &caic, &msc);
    say(&first, "agent").await;
    let webhook = end_slot(&first);
    until_msc_has(&msc, 1).await;
    let waiting = say(&first, "waiting behind the handover").await;
    assert_eq!(waiting["queued"], true, "{waiting}");
    assert!(
        webhook.await.unwrap().unwrap().status().is_success(),
        "the handover is made once MSC took its message"
    );
    until_msc_has(&msc, 2).await;
    first.kill();
    let queued_id = msc_posts(&msc).await[1]["MessageExternalIdentifier"].clone();
    let store = dynamodb_harness_on_table(&table).store;
    let left = store.get(SID).await.unwrap().unwrap();
    assert_eq!(
        (left.state, left.queued.len()),
        (SessionState::HandedOver, 0),
        "locked, the waiting message held in the queue rather than on the session"
    );

    msc.reset().await;
    msc_accepts_after(&msc, Duration::ZERO).await;
    let second = Runner::start(KILLED_WHILE_POSTING_THE_QUEUE, &table, &queue, &caic, &msc);
    let next = say(&second, "and one more").await;
    assert_eq!(next["handledBy"], "agent", "{next}");
    assert_eq!(next["delivery"], "on_its_way", "{next}");
    until_msc_has(&msc, 2).await;

    let posts = msc_posts(&msc).await;
    let texts: Vec<&str> = posts
        .iter()
        .map(|p| p["Content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["waiting behind the handover", "and one more"],
        "the message the killed drainer had is delivered again, before the next one"
    );
    assert_eq!(
        posts[0]["MessageExternalIdentifier"], queued_id,
        "delivered again under its id"
    );
    second.kill();
}

const KILLED_MID_BATCH: &str =
    "a_drainer_killed_mid_batch_loses_nothing_and_each_id_arrives_in_order";

/// The drainer (here the runner, polling the queue as Lambda does) dies while MSC is taking the third
/// of five messages: the batch it held comes round again after the visibility timeout, and a second
/// drainer delivers it. MSC sees some messages twice, always under their one id (which MSC drops); by
/// id, each message once, in the order written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drainer_killed_mid_batch_loses_nothing_and_each_id_arrives_in_order() {
    if std::env::var_os(CHILD).is_some() {
        return serve_until_killed().await;
    }
    let table = fresh_table();
    let queue = moto_outbound_queue(QUEUE_VISIBILITY_SECS).await;
    let caic = caic_offering_a_handover().await;
    let msc = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/messages"))
        .and(body_string_contains("message 3"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(30)))
        .mount(&msc)
        .await;
    msc_accepts_after(&msc, Duration::ZERO).await;

    let first = Runner::start(KILLED_MID_BATCH, &table, &queue, &caic, &msc);
    say(&first, "agent").await;
    let made = end_slot(&first).await.unwrap().unwrap();
    assert!(made.status().is_success());
    for n in 1..=5 {
        let sent = say(&first, &format!("message {n}")).await;
        assert_eq!(sent["delivery"], "on_its_way", "{sent}");
    }
    // The handover, messages 1 and 2, and 3 in flight.
    until_msc_has(&msc, 4).await;
    first.kill();
    let mut posts = msc_posts(&msc).await;

    msc.reset().await;
    msc_accepts_after(&msc, Duration::ZERO).await;
    let second = Runner::start(KILLED_MID_BATCH, &table, &queue, &caic, &msc);
    // Lambda deletes a batch's messages once the invocation returns: the killed one's whole batch
    // comes round again, 1 and 2 included.
    until_msc_has(&msc, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    posts.extend(msc_posts(&msc).await);

    let mut seen: Vec<(String, String)> = Vec::new();
    for post in &posts {
        let id = post["MessageExternalIdentifier"]
            .as_str()
            .unwrap()
            .to_owned();
        let text = post["Content"].as_str().unwrap().to_owned();
        match seen.iter().find(|(known, _)| *known == id) {
            Some((_, earlier)) => assert_eq!(*earlier, text, "one id, one message"),
            None => seen.push((id, text)),
        }
    }
    let texts: Vec<&str> = seen[1..].iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "message 5"
        ],
        "what the killed drainer had not delivered, by id once each, in order"
    );
    second.kill();
}

const KILLED_WHILE_PUSHING: &str = "a_runner_killed_while_pushing_an_agent_reply_keeps_it_once";
const MSC_WEBHOOK_KEY: &str = "crash-msc-webhook-key-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_while_pushing_an_agent_reply_keeps_it_once() {
    if std::env::var_os(CHILD).is_some() {
        return serve_until_killed().await;
    }
    let table = fresh_table();
    let queue = moto_outbound_queue(QUEUE_VISIBILITY_SECS).await;
    let caic = caic_offering_a_handover().await;
    let msc = MockServer::start().await;
    msc_accepts_after(&msc, Duration::ZERO).await;
    // The channel's webhook takes the push and never answers: the runner dies pushing.
    let channel = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&channel)
        .await;
    let extra = [
        ("MSC_WEBHOOK_SECRET", MSC_WEBHOOK_KEY.to_owned()),
        ("CHANNEL_WEBHOOK_URL", format!("{}/hook", channel.uri())),
        (
            "CHANNEL_WEBHOOK_SECRET",
            "crash-channel-webhook-0123".to_owned(),
        ),
        ("CHANNEL_WEBHOOK_TIMEOUT_MS", "60000".to_owned()),
    ];

    let first = Runner::start_with(KILLED_WHILE_PUSHING, &table, &queue, &caic, &msc, &extra);
    say(&first, "agent").await;
    let handed_over = end_slot(&first).await.unwrap().unwrap();
    let handed_over: Value = handed_over.json().await.unwrap();
    assert_eq!(handed_over["success"], true);
    let reply = json!({"ChannelAccountExternalIdentifier": "acct-1",
                       "ConversationGuid": "8e4f2a1c-0000-4000-8000-000000000001",
                       "ConversationExternalIdentifier": SID, "MessageExternalIdentifier": "agent-reply-1",
                       "RelationName": "Jane", "Content": "Hello Jane", "IsPrivate": false,
                       "SentDateTime": "2026-12-01T10:00:00Z", "Attachments": []});
    let post_reply = |runner: &Runner| {
        http()
            .post(format!("{}/v1/msc/messages", runner.base))
            .bearer_auth(MSC_WEBHOOK_KEY)
            .json(&reply)
            .send()
    };
    let delivery = tokio::spawn(post_reply(&first));
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the push never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    assert!(
        delivery.await.unwrap().is_err(),
        "MSC saw its delivery fail"
    );

    let second = Runner::start_with(KILLED_WHILE_PUSHING, &table, &queue, &caic, &msc, &extra);
    let outbox = |runner: &Runner| {
        http()
            .get(format!("{}/v1/sessions/{SID}/messages", runner.base))
            .bearer_auth(CHANNEL_KEY)
            .send()
    };
    let shown: Value = outbox(&second).await.unwrap().json().await.unwrap();
    let texts: Vec<&Value> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["text"])
        .collect();
    assert_eq!(
        texts,
        [&json!("Hello Jane")],
        "the reply survived the crash, once"
    );
    // MSC delivers again (its delivery failed): acknowledged, not stored twice.
    let again: Value = post_reply(&second).await.unwrap().json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    let shown: Value = outbox(&second).await.unwrap().json().await.unwrap();
    assert_eq!(shown["messages"].as_array().unwrap().len(), 1);
}
