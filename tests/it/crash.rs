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
use handover_tests::{dynamodb_endpoint, dynamodb_harness_on_table};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CHILD: &str = "HANDOVER_CRASH_TEST_RUNNER";
const SID: &str = "crash-session-0001";
const CHANNEL_KEY: &str = "crash-channel-key-0123";
const WEBHOOK_KEY: &str = "crash-webhook-key-0123";
const LEASE_SECS: u64 = 5;

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
    fn start(table: &str, caic: &MockServer, msc: &MockServer) -> Runner {
        let port_file = std::env::temp_dir().join(format!("crash-port-{}", uuid::Uuid::new_v4()));
        let test = "crash::a_runner_killed_between_claim_and_lock_leaves_nothing_lost_or_stuck";
        let child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--test-threads", "1", "--nocapture"])
            .env(CHILD, "1")
            .env("HANDOVER_LOCAL_PORT_FILE", &port_file)
            .env("HANDOVER_STORE", "dynamodb")
            .env("HANDOVER_TABLE", table)
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
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
            .env("MSC_TIMEOUT_MS", "8000")
            .env("CHANNEL_API_KEY", CHANNEL_KEY)
            .env("CAIC_WEBHOOK_SECRET", WEBHOOK_KEY)
            .env("CLAIM_LEASE_SECS", LEASE_SECS.to_string())
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
    handover_core::clients::new_http_client().unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_between_claim_and_lock_leaves_nothing_lost_or_stuck() {
    if std::env::var_os(CHILD).is_some() {
        return serve_until_killed().await;
    }
    let table = format!("handover-crash-{}", uuid::Uuid::new_v4().simple());
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
    let msc = MockServer::start().await;
    // MSC takes the handover message and answers late: the runner dies holding the claim.
    msc_accepts_after(&msc, Duration::from_secs(30)).await;

    let first = Runner::start(&table, &caic, &msc);
    let started = say(&first, "agent").await;
    assert_eq!(started["handledBy"], "bot", "{started}");
    let webhook = {
        let url = format!("{}/v1/prechat/complete", first.base);
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
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while msc_posts(&msc).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "MSC never got the handover message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let second = Runner::start(&table, &caic, &msc);
    let waiting = say(&second, "are you still there?").await;
    assert_eq!(
        (waiting["handledBy"].clone(), waiting["queued"].clone()),
        (json!("agent"), json!(true)),
        "within the lease the message waits behind the claim: {waiting}"
    );
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let next = say(&second, "hello?").await;
    assert_eq!(next["handledBy"], "agent", "{next}");

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
