//! Shared harness for the cross-crate tests: adapters built on a manual clock, and the DynamoDB
//! client pointed at the DynamoDB-compatible server the test command starts.

pub mod contract;
pub mod counting;
pub mod faulty;
pub mod live;
pub mod tls;
pub mod world;

use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use handover_core::store::dynamodb::{ensure_table, DynamoDbStore};
use handover_core::store::memory::MemoryStore;
use handover_core::{LockPolicy, ManualClock, SessionStore};

/// An arbitrary fixed instant (2025-06-15): tests move time explicitly from here.
pub const T0: i64 = 1_750_000_000;

pub fn policy() -> LockPolicy {
    LockPolicy {
        lock_secs: 86_400,
        slide_interval_secs: 300,
        claim_lease_secs: 30,
        prechat_window_secs: 1_800,
    }
}

/// One adapter under test, with the clock that drives it.
pub struct Harness {
    pub store: Arc<dyn SessionStore>,
    pub clock: Arc<ManualClock>,
    pub policy: LockPolicy,
    pub adapter: &'static str,
}

pub async fn memory_harness() -> Harness {
    let clock = Arc::new(ManualClock::starting_at(T0));
    Harness {
        store: Arc::new(MemoryStore::new(clock.clone(), policy())),
        clock,
        policy: policy(),
        adapter: "memory",
    }
}

/// A DynamoDB store on `client` and `table`, driven by a fresh manual clock.
fn dynamodb_harness_on(client: Client, table: String, adapter: &'static str) -> Harness {
    let clock = Arc::new(ManualClock::starting_at(T0));
    Harness {
        store: Arc::new(DynamoDbStore::new(client, table, clock.clone(), policy())),
        clock,
        policy: policy(),
        adapter,
    }
}

/// Creates a uniquely named table, so tests run in parallel against one server without seeing each
/// other.
async fn fresh_table(client: &Client, prefix: &str, endpoint: &str) -> String {
    let table = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    if let Err(err) = ensure_table(client, &table).await {
        panic!("cannot create test table {table} at {endpoint}: {err}");
    }
    table
}

pub async fn dynamodb_harness() -> Harness {
    let client = dynamodb_client();
    let table = fresh_table(&client, "handover-test", &dynamodb_endpoint()).await;
    dynamodb_harness_on(client, table, "dynamodb")
}

/// The start of an intake for `session_id`: skill billing, WebChat, agents online, nothing else.
pub fn online_intake(session_id: &str) -> handover_core::IntakeStart {
    handover_core::IntakeStart {
        session_id: session_id.into(),
        skill: Some("billing".into()),
        webstore: None,
        channel: Some("WebChat".into()),
        agent_status: handover_core::AgentStatus::Online,
        end_user_url: None,
        culture: None,
        transcript: Vec::new(),
        history: Vec::new(),
        outbox: Vec::new(),
        last_cursor: 0,
        verified: None,
    }
}

/// A handover made through the store alone (intake, claim, completion), for tests of what comes after.
pub async fn handed_over_in(store: &dyn SessionStore, session_id: &str) {
    use handover_core::{ClaimOutcome, Guarded, StartIntakeOutcome};
    let start = online_intake(session_id);
    assert!(matches!(
        store.start_intake(&start).await,
        Ok(StartIntakeOutcome::Started(_))
    ));
    let Ok(ClaimOutcome::Claimed(claim)) = store.claim(session_id, &[]).await else {
        panic!("claim {session_id}")
    };
    let Ok(Guarded::Applied(_)) = store.complete(session_id, &claim.token).await else {
        panic!("complete {session_id}")
    };
}

/// A DynamoDB store on an existing table of the test server (one another process writes, say).
pub fn dynamodb_harness_on_table(table: &str) -> Harness {
    dynamodb_harness_on(dynamodb_client(), table.to_owned(), "dynamodb")
}

/// A DynamoDB store whose endpoint refuses connections: the store is down.
pub fn unreachable_dynamodb_harness() -> Harness {
    dynamodb_harness_on(
        client_at(faulty::REFUSED_URL),
        "handover-down".into(),
        "dynamodb-down",
    )
}

/// A DynamoDB store on moto behind a request-counting proxy, its table created and the count reset.
pub async fn counted_dynamodb_harness() -> (Harness, counting::DynamoCounter) {
    let counter = counting::DynamoCounter::start(dynamodb_endpoint()).await;
    let client = client_at(&counter.url);
    let table = fresh_table(&client, "handover-costs", &counter.url).await;
    counter.reset();
    (
        dynamodb_harness_on(client, table, "dynamodb-counted"),
        counter,
    )
}

/// A DynamoDB store on any endpoint (a misbehaving peer, say), table not created.
pub fn dynamodb_harness_at(endpoint: &str) -> Harness {
    dynamodb_harness_on(
        client_at(endpoint),
        "handover-faulty".into(),
        "dynamodb-faulty",
    )
}

/// Where the DynamoDB-compatible test server listens. Missing → the test fails, loudly: a DynamoDB
/// test that silently skips would let the real adapter go untested.
pub fn dynamodb_endpoint() -> String {
    std::env::var("HANDOVER_TEST_DYNAMODB_ENDPOINT")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL_DYNAMODB"))
        .unwrap_or_else(|_| {
            panic!(
                "DynamoDB tests need a DynamoDB-compatible server. Run ./scripts/test (it starts \
                 moto_server), or set HANDOVER_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:<port>"
            )
        })
}

/// Static dummy credentials and an explicit region: the SDK never goes looking for cloud ones.
pub fn dynamodb_client() -> Client {
    client_at(&dynamodb_endpoint())
}

/// A client with its own attempt and operation timeouts, and no stalled-stream protection: that
/// protection fails a request whose answer has not begun within seconds, which is DynamoDB failing but
/// only moto's queue (one request at a time) under a load test.
pub fn client_with_timeouts(
    endpoint: &str,
    attempt: std::time::Duration,
    operation: std::time::Duration,
) -> Client {
    let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(attempt)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    let config = client_at(endpoint)
        .config()
        .to_builder()
        .timeout_config(timeouts)
        .stalled_stream_protection(
            aws_sdk_dynamodb::config::StalledStreamProtectionConfig::disabled(),
        )
        .build();
    Client::from_conf(config)
}

/// The AWS configuration of every test client: moto at `endpoint`, static dummy credentials, an
/// explicit region, and the functions' own HTTP path to AWS (`aws_http`), so every DynamoDB and Secrets
/// Manager test exercises it.
fn moto_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::SharedCredentialsProvider;
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "handover-tests",
        )))
        .endpoint_url(endpoint)
        .http_client(handover_core::aws_http::sdk_http_client(
            handover_core::clients::new_http_client(None).expect("HTTP client"),
        ))
        .timeout_config(handover_core::clients::sdk_timeouts())
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3))
        .build()
}

/// A Secrets Manager client for the moto server at `endpoint`.
pub fn secrets_client_at(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto_config(endpoint))
}

/// The file store on moto's S3 (the DynamoDB test server serves S3 too), in a bucket of its own made
/// now.
pub async fn moto_files(bucket: &str) -> Arc<handover_core::files::s3::S3Files> {
    let config = moto_config(&dynamodb_endpoint());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let made = s3
        .create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await;
    if let Err(err) = made {
        let owned = err
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you());
        assert!(owned, "bucket {bucket}: {err:?}");
    }
    Arc::new(handover_core::files::s3::S3Files::new(
        &config, bucket, true,
    ))
}

/// EventBridge Scheduler on moto: the timers of the waits for an agent, in a schedule group made for
/// the caller (`AGENT_WAIT_SCHEDULE_GROUP`), as deployed.
pub async fn moto_wait_timers(
    settings: &handover_core::config::SchedulerSettings,
) -> Arc<handover_core::waits::EventBridgeScheduler> {
    let made = scheduler_client()
        .create_schedule_group()
        .name(&settings.group)
        .send()
        .await;
    if let Err(err) = made {
        let exists = err
            .as_service_error()
            .is_some_and(|e| e.is_conflict_exception());
        assert!(exists, "schedule group {}: {err:?}", settings.group);
    }
    Arc::new(handover_core::waits::EventBridgeScheduler::new(
        &moto_config(&dynamodb_endpoint()),
        settings.clone(),
    ))
}

/// A client of moto's SQS: the outbound queue, as Lambda's SQS poller reads it.
pub fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&moto_config(&dynamodb_endpoint()))
}

/// A fresh FIFO queue on moto's SQS (as the template makes it: no content-based deduplication), its
/// messages invisible for `visibility_secs` once received, and its URL.
pub async fn moto_outbound_queue(visibility_secs: u32) -> String {
    let name = format!("handover-outbound-{}.fifo", uuid::Uuid::new_v4().simple());
    let made = sqs_client()
        .create_queue()
        .queue_name(&name)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|err| panic!("queue {name}: {err:?}"));
    made.queue_url().expect("a queue URL").to_owned()
}

/// The outbound adapter of the deployment, on a queue of moto's SQS.
pub fn moto_outbound(queue_url: &str) -> Arc<handover_core::outbound::SqsOutbound> {
    Arc::new(handover_core::outbound::SqsOutbound::new(
        &moto_config(&dynamodb_endpoint()),
        queue_url,
    ))
}

/// A client of moto's EventBridge Scheduler, to read what the functions scheduled.
pub fn scheduler_client() -> aws_sdk_scheduler::Client {
    aws_sdk_scheduler::Client::new(&moto_config(&dynamodb_endpoint()))
}

pub fn client_at(endpoint: &str) -> Client {
    Client::new(&moto_config(endpoint))
}

/// The EMF lines this process's invocations wrote for `session_id`, oldest first. Installs the
/// collector the first time (it then takes every line of the process).
pub fn emf_lines(session_id: &str) -> Vec<serde_json::Value> {
    static LINES: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<String>>>> =
        std::sync::OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        handover_core::metrics::set_sink(Box::new(move |line| {
            sink.lock().unwrap().push(line.to_owned());
        }));
        lines
    });
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["SessionId"] == session_id)
        .collect()
}

/// Stamps the whole contract suite out as `#[tokio::test]`s for one adapter, so every adapter runs
/// the very same test functions.
#[macro_export]
macro_rules! store_contract_suite {
    ($harness:path; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::contract::$test($harness().await).await;
            }
        )+
    };
}

/// The list of contract tests; adding one here runs it against every adapter.
#[macro_export]
macro_rules! for_every_contract_test {
    ($harness:path) => {
        $crate::store_contract_suite!($harness;
            unknown_session_is_absent,
            start_intake_saves_everything_as_prechat,
            start_intake_refreshes_a_live_prechat,
            start_intake_is_refused_while_claimed_or_handed_over,
            expired_prechat_is_absent_and_can_be_replaced,
            expiry_boundary_is_exclusive,
            expired_lock_is_absent_and_can_be_replaced,
            claim_takes_a_live_prechat_with_fresh_token_and_lease,
            second_claim_is_typed_already_claimed,
            claim_without_live_intake_is_no_intake,
            expired_lease_can_be_taken_over,
            complete_locks_the_session_and_drops_the_intake,
            claim_after_completion_is_typed_already_handed_over,
            complete_and_release_with_a_wrong_token_change_nothing,
            release_returns_the_session_to_the_bot,
            slide_writes_at_most_once_per_interval,
            the_lock_slides_past_its_first_expiry,
            sliding_does_not_revive_an_expired_lock,
            sliding_ignores_sessions_that_are_not_handed_over,
            abandon_intake_removes_only_the_intake_it_started,
            intake_answers_round_trip_in_order,
            idempotency_key_is_processed_once_then_replayed,
            idempotency_key_of_a_dead_request_is_freed,
            agent_replies_are_kept_once_in_order_and_slide_the_lock,
            an_ended_handover_answers_with_the_bot_and_may_start_again,
            only_a_lapsed_lock_ends_by_inactivity,
            msc_conversations_are_linked_to_their_sessions,
            messages_queue_only_behind_a_live_claim,
            a_released_claim_keeps_its_queue_for_the_bot,
            quotas_count_per_key_and_window_and_never_past_the_limit,
            msc_sends_are_spaced_by_the_pace_whoever_reserves,
            live_connections_are_registered_announced_to_and_forgotten,
        );
    };
}
