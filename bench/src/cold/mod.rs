//! The cold path as deployed: each function started the way Lambda starts it, at the CPU share of its
//! memory size, talking TLS to every peer at a realistic round-trip time, its secret fetched at init.
//! Measures the cold first turn (process start to the first response) and warm turns, and compares
//! them with the floor: what the round trips alone take when everything that can overlap does.

mod cpu_share;
mod peers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use cpu_share::CpuShare;
use peers::{Peer, Peers, RoundTrips, Served};

use crate::{apigw_event, lambda_command, ms, prices, start_runtime_api, status_of, KEY};

pub struct Options {
    pub samples: usize,
    pub warm: usize,
    pub memory_sizes: Vec<u64>,
    pub round_trips: RoundTrips,
    pub python: Option<PathBuf>,
}

impl Options {
    pub fn from_args(args: &[String]) -> Self {
        let value = |name: &str| {
            args.iter()
                .skip_while(|a| *a != name)
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        };
        let millis =
            |name: &str, default: u64| Duration::from_millis(value(name).unwrap_or(default));
        Self {
            samples: value("--cold-samples").unwrap_or(11) as usize,
            warm: value("--cold-warm").unwrap_or(100) as usize,
            memory_sizes: args
                .iter()
                .skip_while(|a| *a != "--memory-sizes")
                .nth(1)
                .map(|sizes| sizes.split(',').filter_map(|mb| mb.parse().ok()).collect())
                .unwrap_or_else(|| vec![128, 256, 512, 1024]),
            round_trips: RoundTrips {
                aws: millis("--rtt-aws-ms", 2),
                cm: millis("--rtt-cm-ms", 20),
                caic_answer: millis("--caic-answer-ms", 100),
            },
            python: std::env::var_os("BENCH_PYTHON").map(PathBuf::from),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Bot,
    Relayed,
    Livechat,
    WidgetQuery,
    EndSlot,
    AgentReply,
    /// An agent reply to a conversation whose page holds a live connection: to the page.
    AgentReplyLive,
    /// A page polling the outbox instead.
    OutboxPoll,
    /// A page's live connection resuming (nothing missed).
    LiveResume,
    /// msc-outbound delivering one held message (Lambda's SQS poller's event) to MSC.
    Delivery,
}

impl Scenario {
    const ALL: [Scenario; 10] = [
        Scenario::Bot,
        Scenario::Relayed,
        Scenario::Livechat,
        Scenario::WidgetQuery,
        Scenario::EndSlot,
        Scenario::AgentReply,
        Scenario::AgentReplyLive,
        Scenario::OutboxPoll,
        Scenario::LiveResume,
        Scenario::Delivery,
    ];

    fn function(self) -> &'static str {
        match self {
            Scenario::Bot | Scenario::Relayed | Scenario::Livechat | Scenario::OutboxPoll => {
                "answer-ingest"
            }
            Scenario::WidgetQuery => "presence-check",
            Scenario::EndSlot => "prechat-complete",
            Scenario::AgentReply | Scenario::AgentReplyLive => "agent-events",
            Scenario::LiveResume => "live-connection",
            Scenario::Delivery => "msc-outbound",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Bot => "bot turn",
            Scenario::Relayed => "relayed turn",
            Scenario::Livechat => "livechat turn",
            Scenario::WidgetQuery => "widget query",
            Scenario::EndSlot => "end slot (handover)",
            Scenario::AgentReply => "agent reply",
            Scenario::AgentReplyLive => "agent reply, page connected",
            Scenario::OutboxPoll => "outbox poll",
            Scenario::LiveResume => "live resume",
            Scenario::Delivery => "held message to MSC",
        }
    }

    /// The requests the turn cannot do without, in the order each needs the one before: the secret
    /// (the caller's key is checked against it), then the turn's own.
    fn required(self) -> &'static [Peer] {
        use Peer::*;
        match self {
            Scenario::Bot => &[SecretsManager, DynamoDb, Caic],
            // Read the session, hold the message in the outbound queue.
            Scenario::Relayed => &[SecretsManager, DynamoDb, Sqs],
            // Read the session, ask CAIC (livechat), ask MSC for an agent, claim the intake, ask CAIC
            // for the intake's first question.
            Scenario::Livechat => &[SecretsManager, DynamoDb, Caic, Msc, DynamoDb, Caic],
            Scenario::WidgetQuery => &[SecretsManager, Msc],
            // Claim the handover, take a slot of MSC's pace, post the conversation to MSC, record it
            // as handed over.
            Scenario::EndSlot => &[SecretsManager, DynamoDb, DynamoDb, Msc, DynamoDb],
            // Read the session's version, store the reply in its outbox on that version, push it to
            // the channel. (Every reply names one conversation that an earlier session holds: the
            // link is refused beside the push, and nothing is adopted.)
            Scenario::AgentReply => &[SecretsManager, DynamoDb, DynamoDb, Channel],
            // The same, the push going to the page: its connection looked up beside the read, and
            // announced beside the push.
            Scenario::AgentReplyLive => &[SecretsManager, DynamoDb, DynamoDb, LiveConnections],
            Scenario::OutboxPoll => &[SecretsManager, DynamoDb],
            // Read the outbox, register the connection, say it is caught up.
            Scenario::LiveResume => &[SecretsManager, DynamoDb, DynamoDb, LiveConnections],
            // A slot of MSC's pace, the post; then the receipt: the session's read, its amendment,
            // the push to the channel.
            Scenario::Delivery => &[SecretsManager, DynamoDb, Msc, DynamoDb, DynamoDb, Channel],
        }
    }

    /// The deployment's environment as this scenario's function has it.
    fn env(self, base: &[(String, String)], peers: &Peers) -> Vec<(String, String)> {
        let mut env = base.to_vec();
        if matches!(self, Scenario::AgentReplyLive | Scenario::LiveResume) {
            // The push to the page alone: without the channel's webhook beside it.
            env.retain(|(name, _)| name != "CHANNEL_WEBHOOK_URL");
            env.push((
                "LIVE_CONNECTIONS_URL".into(),
                format!("{}/live", peers.url(Peer::LiveConnections)),
            ));
        }
        env
    }

    /// Requests the turn makes beside its chain, which nothing waits for: not in the floor.
    fn beside_the_chain(self, request: &Served) -> bool {
        // An agent reply links MSC's conversation to its session while the reply is pushed.
        let link = matches!(self, Scenario::AgentReply | Scenario::AgentReplyLive)
            && request.peer == Peer::DynamoDb
            && request.what == "PutItem";
        // Looking up and announcing to the page's connections, beside the reply's read and its push.
        let live = self == Scenario::AgentReplyLive
            && matches!(request.what.as_str(), "GetItem live" | "UpdateItem live");
        // The handover's wait for an agent is scheduled beside the post of the handover message.
        let wait = self == Scenario::EndSlot && request.peer == Peer::Scheduler;
        link || live || wait
    }

    /// The scenario's event, with the session it needs put in place by `helper`. `cold`: an agent
    /// reply goes to a conversation of its own.
    async fn prepare(self, helper: &Helper, relayed_session: &str, cold: bool) -> Value {
        let fresh = || format!("cold-{}", uuid::Uuid::new_v4().simple());
        let message = |session: &str, text: &str| {
            apigw_event(
                "POST",
                "/v1/messages",
                "",
                &json!({"sessionId": session, "text": text}),
            )
        };
        match self {
            Scenario::Bot => message(&fresh(), "hello"),
            Scenario::Relayed => message(relayed_session, "to the agent"),
            Scenario::Delivery => held_event(relayed_session),
            Scenario::Livechat => message(&fresh(), "agent"),
            Scenario::WidgetQuery => apigw_event(
                "GET",
                "/v1/presence",
                "channel=WebChat&referrer=NL-shop",
                &Value::Null,
            ),
            Scenario::EndSlot => {
                let session = fresh();
                helper.turn(&session, "agent").await;
                apigw_event(
                    "POST",
                    "/v1/prechat/complete",
                    "",
                    &json!({"sessionId": session, "slots": [{"name": "name", "value": "Jane"}]}),
                )
            }
            Scenario::AgentReply | Scenario::AgentReplyLive => apigw_event(
                "POST",
                "/v1/msc/messages",
                "",
                &json!({"ChannelAccountExternalIdentifier": "bench",
                        "ConversationGuid": AGENT_GUID,
                        "ConversationExternalIdentifier":
                            helper.agent_conversation(cold, self == Scenario::AgentReplyLive).await,
                        "MessageExternalIdentifier": fresh(), "RelationName": "Sam",
                        "Content": "Hello, how can I help?", "IsPrivate": false,
                        "SentDateTime": "2026-12-01T10:00:00Z", "Attachments": []}),
            ),
            Scenario::OutboxPoll => apigw_event(
                "GET",
                &format!("/v1/sessions/{relayed_session}/messages"),
                "after=0",
                &Value::Null,
            ),
            // A conversation of its own each time: a conversation keeps at most 10 connections.
            Scenario::LiveResume => live_resume_event(&fresh()),
        }
    }
}

/// MSC's conversation of every agent reply.
const AGENT_GUID: &str = "c0ffee00-0000-4000-8000-000000000001";

/// The WebSocket API's event for a page's `resume` frame (nothing missed) on a new connection.
fn live_resume_event(session: &str) -> Value {
    let keys = handover_core::token::TokenKeys::new(
        handover_core::config::Keys {
            current: KEY.into(),
            next: None,
        },
        86_400,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (unbound, _) = keys.issue(None, now).expect("a token");
    let session_id = handover_core::SessionId::parse(session).expect("a session id");
    let token = keys
        .verify(&unbound, now)
        .and_then(|token| keys.follow(&token, Some(&session_id), now))
        .expect("a bound token")
        .0;
    let connection = format!("bench{}=", &uuid::Uuid::new_v4().simple().to_string()[..11]);
    json!({
        "requestContext": {"routeKey": "resume", "eventType": "MESSAGE", "messageId": "bench",
            "extendedRequestId": "bench", "requestTime": "03/Dec/2026:17:00:00 +0000",
            "messageDirection": "IN", "stage": "live", "connectedAt": 0, "requestTimeEpoch": 0,
            "identity": {"sourceIp": "127.0.0.1"}, "requestId": "bench",
            "domainName": "bench.local", "connectionId": connection, "apiId": "bench"},
        "body": json!({"type": "resume", "token": token, "after": 1_000_000}).to_string(),
        "isBase64Encoded": false
    })
}

/// answer-ingest at full speed, outside the cgroup: puts sessions where a scenario starts.
struct Helper {
    function: crate::Function,
    /// The session agent replies go to, and how many it has had.
    agent_session: tokio::sync::Mutex<(String, usize)>,
    /// The sessions table, directly: where a page's live connection is registered.
    store: handover_core::store::dynamodb::DynamoDbStore,
}

/// Agent replies per conversation before the next: a conversation's outbox keeps its last 50, so a
/// conversation that had hundreds would measure a full outbox on every reply.
const REPLIES_PER_CONVERSATION: usize = 10;

impl Helper {
    fn new(function: crate::Function, moto: &str, table: &str) -> Self {
        Self {
            function,
            agent_session: tokio::sync::Mutex::new((String::new(), REPLIES_PER_CONVERSATION)),
            store: handover_core::store::dynamodb::DynamoDbStore::new(
                handover_tests::client_at(moto),
                table,
                std::sync::Arc::new(handover_core::SystemClock),
                handover_core::LockPolicy::default(),
            ),
        }
    }

    /// A handed-over session for the next agent reply: a new one for a cold start, or every
    /// `REPLIES_PER_CONVERSATION` replies; with a page's live connection registered if `page`.
    async fn agent_conversation(&self, new: bool, page: bool) -> String {
        use handover_core::store::LiveStore;
        let mut current = self.agent_session.lock().await;
        if new || current.1 >= REPLIES_PER_CONVERSATION || page != current.0.contains("-page-") {
            let kind = if page { "page" } else { "hook" };
            let session = format!("cold-agent-{kind}-{}", uuid::Uuid::new_v4().simple());
            self.handed_over(&session).await;
            if page {
                let connection = handover_core::domain::ConnectionId::parse("benchPage0Conn=")
                    .expect("a connection id");
                self.store
                    .register_connection(&session, &connection, 0)
                    .await
                    .expect("the page's connection registered");
            }
            *current = (session, 0);
        }
        current.1 += 1;
        current.0.clone()
    }

    async fn handed_over(&self, session: &str) {
        for text in ["agent", "done"] {
            self.turn(session, text).await;
        }
    }

    async fn turn(&self, session: &str, text: &str) {
        let event = apigw_event(
            "POST",
            "/v1/messages",
            "",
            &json!({"sessionId": session, "text": text}),
        );
        check_answer(&self.function.api.invoke(event).await, "setup turn");
    }
}

/// The floor of a cold first turn: every peer's connection (TCP, then TLS 1.3: two round trips)
/// opened at process start, all at once; each request after the one it depends on and after its
/// connection, taking a round trip plus the peer's answer time as measured.
fn cold_floor(served: &[Served], round_trips: &RoundTrips) -> Duration {
    let mut done = Duration::ZERO;
    for request in served {
        let rtt = round_trips.of(request.peer);
        done = done.max(2 * rtt) + rtt + request.answer_time;
    }
    done
}

/// The floor of a warm turn: connections open, one round trip plus the answer time per request.
fn warm_floor(served: &[Served], round_trips: &RoundTrips) -> Duration {
    served
        .iter()
        .map(|request| round_trips.of(request.peer) + request.answer_time)
        .sum()
}

struct Row {
    memory_mb: u64,
    function: &'static str,
    scenario: &'static str,
    cold: Duration,
    cold_floor: Duration,
    /// CPU time of the cold first turn, from process start to the response.
    cpu: Duration,
    warm: Option<Warm>,
    /// An agent reply with a page connected: when the push reached the management API.
    to_page: Option<ToPage>,
    /// A held message's delivery: from the drainer's invocation to MSC having the request.
    to_msc: Option<(Vec<Duration>, Vec<Duration>)>,
}

/// From MSC posting an agent reply to the management API receiving the push for the page (API
/// Gateway's own hop from there to the socket is inside AWS, the same for any design, and not here).
#[derive(Default)]
struct ToPage {
    cold: Vec<Duration>,
    cold_floors: Vec<Duration>,
    warm: Vec<Duration>,
    warm_floors: Vec<Duration>,
    /// When the reply was stored in the outbox (the write answered): where a polling page's wait
    /// starts.
    stored: Vec<Duration>,
}

/// When the push for the page arrived at the management API.
/// One relayed message, per million, at low load (a batch of one): the turn (HTTP API, Lambda, the
/// session's read, the SQS send) and its delivery (the poller's receive and delete, Lambda for the
/// whole invocation, the pace's write and the receipt's read, amendment and announcement).
fn relayed_cost(memory_mb: u64, turn: Duration, delivery: Duration) -> f64 {
    let gb = memory_mb as f64 / 1024.0;
    let lambda = |d: Duration| {
        prices::LAMBDA_REQUESTS_PER_MILLION
            + 1e6 * ms(d).ceil().max(1.0) / 1_000.0 * gb * prices::LAMBDA_ARM_GB_SECOND
    };
    let turn = prices::HTTP_API_PER_MILLION
        + lambda(turn)
        + prices::DYNAMODB_RRU_PER_MILLION
        + prices::SQS_FIFO_PER_MILLION;
    let delivery = lambda(delivery)
        + 2.0 * prices::SQS_FIFO_PER_MILLION
        + 3.0 * prices::DYNAMODB_WRU_PER_MILLION
        + prices::DYNAMODB_RRU_PER_MILLION;
    turn + delivery
}

/// When MSC had the delivery's post.
fn msc_at(served: &[Served]) -> Instant {
    served
        .iter()
        .find(|s| s.peer == Peer::Msc)
        .map(|s| s.received)
        .expect("the held message was posted to MSC")
}

fn pushed_at(served: &[Served]) -> Instant {
    served
        .iter()
        .find(|s| s.peer == Peer::LiveConnections)
        .map(|s| s.received)
        .expect("the reply was pushed to the page")
}

/// When the amendment that stored the reply was answered back at the function: the received time
/// of the second DynamoDB request, its answer time and the way back.
fn stored_at(served: &[Served], round_trips: &RoundTrips) -> Instant {
    served
        .iter()
        .filter(|s| s.peer == Peer::DynamoDb)
        .nth(1)
        .map(|s| s.received + s.answer_time + round_trips.aws / 2)
        .expect("the reply was stored")
}

/// The chain the floor of a push to a page counts: the reply's own store requests (the read and the
/// write that stores it), then one way to the management API. Not the live item's: the floor is what
/// any push after the write must take.
fn chain_to_page(served: &[Served]) -> Vec<Served> {
    served
        .iter()
        .filter(|s| s.peer != Peer::LiveConnections && !s.what.ends_with(" live"))
        .cloned()
        .collect()
}

fn warm_floor_to_page(served: &[Served], round_trips: &RoundTrips) -> Duration {
    warm_floor(&chain_to_page(served), round_trips) + round_trips.aws / 2
}

fn cold_floor_to_page(served: &[Served], round_trips: &RoundTrips) -> Duration {
    // The management API's connection, too, opened at process start (two round trips).
    cold_floor(&chain_to_page(served), round_trips).max(2 * round_trips.aws) + round_trips.aws / 2
}

struct Warm {
    /// CPU time per warm turn.
    cpu_per_turn: Duration,
    p50: Duration,
    p99: Duration,
    floor_p50: Duration,
    /// The 99th percentile of each turn's time over its own floor.
    overhead_p99: Duration,
}

/// The pause between warm turns (see where it is used).
const WARM_GAP: Duration = Duration::from_millis(50);

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn percentile(mut values: Vec<Duration>, p: usize) -> Duration {
    values.sort();
    values
        .get((values.len() * p / 100).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// One cold start: `program` spawned at the share with `event` waiting, until its response.
async fn cold_turn(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    share: &CpuShare,
    event: Value,
) -> (Duration, Value, tokio::process::Child, crate::RuntimeApi) {
    let api = start_runtime_api().await;
    let (reply, answer) = oneshot::channel();
    api.events
        .send((event, reply))
        .await
        .expect("runtime api alive");
    let mut command = lambda_command(program, &api.addr, share.memory_mb, env);
    command.args(args);
    let joined = share.confine(&mut command).expect("a pipe");
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let started = joined.at().await;
    let response = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .unwrap_or_else(|_| panic!("{} answered within 60 s", program.display()))
        .expect("answer");
    (started.elapsed(), response, child, api)
}

/// CPU time a process has used so far (`/proc/<pid>/schedstat`: nanoseconds on a CPU).
fn cpu_time(child: &tokio::process::Child) -> Duration {
    child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn check_answer(response: &Value, what: &str) {
    if response.get("batchItemFailures").is_some() {
        assert_eq!(
            response["batchItemFailures"],
            json!([]),
            "{what}: {response}"
        );
        return;
    }
    assert_eq!(status_of(response), 200, "{what}: {response}");
}

/// What Lambda's SQS poller hands msc-outbound: one message held for `session`, as a relayed turn
/// holds it, each time under a new id.
fn held_event(session: &str) -> Value {
    let message = handover_core::msc::OutgoingMessage {
        conversation_id: session.to_owned(),
        message_id: format!("{session}-message-{}", uuid::Uuid::new_v4().simple()),
        relation_id: session.to_owned(),
        relation_name: "Website visitor".to_owned(),
        content: "to the agent".to_owned(),
        referrer: None,
        routing_skill: None,
        subject: None,
        conversation_guid: None,
        sent_at: 0,
        attachments: Vec::new(),
        is_private: false,
    };
    let held = handover_core::outbound::Held::now(message, None);
    json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(),
        "receiptHandle": "bench-receipt",
        "body": serde_json::to_string(&held).expect("a held message"),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }]})
}

fn check_requests(served: &[Served], scenario: Scenario) {
    let made: Vec<Peer> = served.iter().map(|s| s.peer).collect();
    assert_eq!(
        made,
        scenario.required(),
        "{}: the cold first turn made other requests than the floor counts: {}",
        scenario.name(),
        served
            .iter()
            .map(|s| format!("{} {}", s.peer.name(), s.what))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

pub async fn run(release: &Path, moto: &str, options: &Options) {
    println!("\n## The cold path as deployed: TLS peers, round trips, a Lambda's CPU share\n");
    let shares: Vec<CpuShare> = match options
        .memory_sizes
        .iter()
        .map(|&mb| CpuShare::create(mb))
        .collect::<Result<_, _>>()
    {
        Ok(shares) => shares,
        Err(reason) => {
            println!("Not measured: {reason}. Run ./scripts/bench as root on Linux with cgroup v1 to measure it; no figures are printed rather than figures at the wrong CPU share.");
            return;
        }
    };
    let round_trips = options.round_trips;
    let ca = handover_tests::tls::TestCa::generate();
    let peers = peers::start(&ca, moto, round_trips).await;

    let secret_arn = handover_tests::secrets_client_at(moto)
        .create_secret()
        .name(format!("handover-cold-{}", uuid::Uuid::new_v4().simple()))
        .secret_string(
            json!({"CHANNEL_API_KEY": KEY, "CAIC_WEBHOOK_SECRET": KEY, "MSC_WEBHOOK_SECRET": KEY,
                   "CHANNEL_WEBHOOK_SECRET": KEY, "CAIC_API_KEY": "bench",
                   "MSC_PRESENCE_API_KEY": "bench", "MSC_API_KEY": "bench", "MSC_API_SECRET": "bench",
                   "CONVERSATION_TOKEN_SECRET": KEY})
            .to_string(),
        )
        .send()
        .await
        .expect("cold path secret")
        .arn()
        .expect("secret ARN")
        .to_owned();
    let table = format!("handover-cold-{}", uuid::Uuid::new_v4().simple());
    handover_core::store::dynamodb::ensure_table(&handover_tests::client_at(moto), &table)
        .await
        .expect("cold path table");
    let queue = handover_tests::moto_outbound_queue(30).await;
    let env = deployed_env(&peers, &ca, &secret_arn, &table, &queue);

    // The relayed turns' session: handed over once, by a function at full speed.
    let helper = Helper::new(
        crate::launch(&release.join("answer-ingest"), &env).await,
        moto,
        &table,
    );
    let relayed_session = format!("cold-relayed-{}", uuid::Uuid::new_v4().simple());
    helper.handed_over(&relayed_session).await;
    // The conversation every agent reply names belongs to another session from the start, so that
    // each reply's link is refused beside the push (and nothing is adopted), from the first sample on.
    handover_core::AgentStore::link_msc_conversation(&helper.store, AGENT_GUID, "cold-guid-holder")
        .await
        .expect("the conversation linked");
    peers.take_served();

    let mut rows = Vec::new();
    for share in &shares {
        for scenario in Scenario::ALL {
            let binary = release.join(scenario.function());
            let env = scenario.env(&env, &peers);
            let mut to_page = ToPage::default();
            let (mut msc_cold, mut msc_warm) = (Vec::new(), Vec::new());
            let mut colds = Vec::new();
            let mut floors = Vec::new();
            let mut cpus = Vec::new();
            let mut last = None;
            for _ in 0..options.samples {
                drop(last.take());
                let event = scenario.prepare(&helper, &relayed_session, true).await;
                peers.take_served();
                let (elapsed, response, child, api) =
                    cold_turn(&binary, &[], &env, share, event).await;
                check_answer(&response, scenario.name());
                let served = peers.take_served();
                let (beside, served): (Vec<Served>, Vec<Served>) = served
                    .into_iter()
                    .partition(|s| scenario.beside_the_chain(s));
                if std::env::var_os("BENCH_TIMELINE").is_some() {
                    let started = Instant::now() - elapsed;
                    eprintln!(
                        "{} at {} MB: answered at {:.1} ms",
                        scenario.name(),
                        share.memory_mb,
                        ms(elapsed)
                    );
                    for s in served.iter().chain(&beside) {
                        eprintln!(
                            "  {} {}: connected {:.1}, request in {:.1}, answered in {:.1}",
                            s.peer.name(),
                            s.what,
                            ms(s.connected - started),
                            ms(s.received - started),
                            ms(s.answer_time)
                        );
                    }
                }
                check_requests(&served, scenario);
                if scenario == Scenario::Delivery {
                    msc_cold.push(msc_at(&served) - (Instant::now() - elapsed));
                }
                if scenario == Scenario::AgentReplyLive {
                    let started = Instant::now() - elapsed;
                    to_page.cold.push(pushed_at(&served) - started);
                    to_page
                        .cold_floors
                        .push(cold_floor_to_page(&served, &round_trips));
                }
                colds.push(elapsed);
                floors.push(cold_floor(&served, &round_trips));
                cpus.push(cpu_time(&child));
                last = Some((child, api));
            }
            let (child, api) = last.expect("at least one sample");
            let mut turns = Vec::new();
            let mut warm_floors = Vec::new();
            let mut overheads = Vec::new();
            let cpu_before = cpu_time(&child);
            for _ in 0..options.warm {
                let event = scenario.prepare(&helper, &relayed_session, false).await;
                // Turns of one instance come apart, not as one burst: a back-to-back loop would
                // spend a 128 MB share's CPU per period and measure its throttling instead.
                tokio::time::sleep(WARM_GAP).await;
                peers.take_served();
                let started = Instant::now();
                let response = api.invoke(event).await;
                let elapsed = started.elapsed();
                check_answer(&response, scenario.name());
                let (_, chain): (Vec<Served>, Vec<Served>) = peers
                    .take_served()
                    .into_iter()
                    .partition(|s| scenario.beside_the_chain(s));
                let floor = warm_floor(&chain, &round_trips);
                if scenario == Scenario::Delivery {
                    msc_warm.push(msc_at(&chain) - started);
                }
                if scenario == Scenario::AgentReplyLive {
                    to_page.warm.push(pushed_at(&chain) - started);
                    to_page
                        .warm_floors
                        .push(warm_floor_to_page(&chain, &round_trips));
                    to_page
                        .stored
                        .push(stored_at(&chain, &round_trips) - started);
                }
                turns.push(elapsed);
                warm_floors.push(floor);
                overheads.push(elapsed.saturating_sub(floor));
            }
            let cpu_per_turn = (cpu_time(&child).saturating_sub(cpu_before))
                .checked_div(options.warm.max(1) as u32)
                .unwrap_or_default();
            rows.push(Row {
                memory_mb: share.memory_mb,
                function: scenario.function(),
                scenario: scenario.name(),
                cold: median(colds),
                cold_floor: median(floors),
                cpu: median(cpus),
                to_page: (scenario == Scenario::AgentReplyLive).then_some(to_page),
                to_msc: (scenario == Scenario::Delivery).then_some((msc_cold, msc_warm)),
                warm: (!turns.is_empty()).then(|| Warm {
                    cpu_per_turn,
                    p50: percentile(turns.clone(), 50),
                    p99: percentile(turns, 99),
                    floor_p50: percentile(warm_floors, 50),
                    overhead_p99: percentile(overheads, 99),
                }),
            });
        }
    }

    if let Some(python) = &options.python {
        let script = Path::new("bench/python/bot_turn.py")
            .canonicalize()
            .expect("bench/python/bot_turn.py");
        let script = script.to_string_lossy();
        for share in shares.iter().filter(|s| s.memory_mb == 128) {
            let mut colds = Vec::new();
            let mut floors = Vec::new();
            let mut cpus = Vec::new();
            for _ in 0..options.samples.min(5) {
                let (elapsed, response, child, _api) = cold_turn(
                    python,
                    &[&script],
                    &env,
                    share,
                    Scenario::Bot.prepare(&helper, "", true).await,
                )
                .await;
                check_answer(&response, "Python bot turn");
                let served = peers.take_served();
                check_requests(&served, Scenario::Bot);
                colds.push(elapsed);
                floors.push(cold_floor(&served, &round_trips));
                cpus.push(cpu_time(&child));
            }
            rows.push(Row {
                memory_mb: share.memory_mb,
                function: "Python/boto3",
                scenario: "bot turn",
                cold: median(colds),
                cold_floor: median(floors),
                cpu: median(cpus),
                to_page: None,
                to_msc: None,
                warm: None,
            });
        }
    }
    print_report(&rows, options);
}

fn deployed_env(
    peers: &Peers,
    ca: &handover_tests::tls::TestCa,
    secret_arn: &str,
    table: &str,
    queue: &str,
) -> Vec<(String, String)> {
    let msc = peers.url(Peer::Msc);
    [
        ("AWS_CA_BUNDLE", ca.bundle().display().to_string()),
        ("HANDOVER_SECRET_ARN", secret_arn.to_owned()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            peers.url(Peer::SecretsManager).to_owned(),
        ),
        (
            "AWS_ENDPOINT_URL_DYNAMODB",
            peers.url(Peer::DynamoDb).to_owned(),
        ),
        ("HANDOVER_STORE", "dynamodb".to_owned()),
        ("HANDOVER_TABLE", table.to_owned()),
        ("CAIC_BASE_URL", peers.url(Peer::Caic).to_owned()),
        ("CAIC_CUSTOMER_KEY", "bench".to_owned()),
        ("CAIC_PROJECT_KEY", "bench".to_owned()),
        ("MSC_PRESENCE_URL", format!("{msc}/presence")),
        ("MSC_API_URL", format!("{msc}/api")),
        ("MSC_CHANNEL_ACCOUNT", "bench".to_owned()),
        ("CHANNEL_WEBHOOK_URL", peers.url(Peer::Channel).to_owned()),
        // The handover's wait for an agent, scheduled as deployed (a group made on moto).
        (
            "AWS_ENDPOINT_URL_SCHEDULER",
            peers.url(Peer::Scheduler).to_owned(),
        ),
        (
            "AGENT_WAIT_SCHEDULE_GROUP",
            crate::BENCH_WAIT_GROUP.to_owned(),
        ),
        (
            "AGENT_WAIT_FUNCTION_ARN",
            crate::BENCH_WAIT_FUNCTION.to_owned(),
        ),
        (
            "AGENT_WAIT_SCHEDULER_ROLE_ARN",
            crate::BENCH_WAIT_ROLE.to_owned(),
        ),
        // The outbound queue (moto, forwarded): a relayed turn holds its message there.
        ("AWS_ENDPOINT_URL_SQS", peers.url(Peer::Sqs).to_owned()),
        ("MSC_OUTBOUND_QUEUE_URL", queue.to_owned()),
        // MSC's pace is not what this measures: a slot is free whenever a sample posts.
        ("MSC_REQUESTS_PER_SECOND", "100".to_owned()),
        // A relayed turn slides the lock with one more write once per this many seconds; the run
        // lasts longer than the default's 300 and measures the turn without it.
        ("LOCK_REFRESH_SECS", "3600".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

fn print_report(rows: &[Row], options: &Options) {
    let rt = &options.round_trips;
    println!(
        "Round trips: {} ms to Secrets Manager and DynamoDB, {} ms to CAIC and MSC; CAIC answers in {} ms. Every peer speaks TLS 1.3 with a certificate of a CA made for the run (AWS_CA_BUNDLE). Cold: median of {} cold starts, process start to the first response, secret fetched at init; the process runs in a cgroup with the CPU quota of its memory size (of {} µs per 100 ms at 128 MB). Floor: the same requests with every connection (TCP and TLS: 2 round trips) opened at once at process start and each request taking its round trip plus the peer's measured answer time. Warm: {} turns on the last cold process, {} ms apart; overhead p99 is the 99th percentile of each turn's time over its own floor; warm CPU is per turn.\n",
        ms(rt.aws),
        ms(rt.cm),
        ms(rt.caic_answer),
        options.samples,
        CpuShare::quota_us(128),
        options.warm,
        WARM_GAP.as_millis(),
    );
    println!("| memory MB | function | scenario | cold first turn ms | floor ms | × floor | cold CPU ms | warm p50 ms | warm floor p50 ms | warm p99 ms | overhead p99 ms | warm CPU ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let warm = row.warm.as_ref().map_or_else(
            || "| | | | | ".to_owned(),
            |w| {
                format!(
                    "| {:.1} | {:.1} | {:.1} | {:.1} | {:.2} ",
                    ms(w.p50),
                    ms(w.floor_p50),
                    ms(w.p99),
                    ms(w.overhead_p99),
                    ms(w.cpu_per_turn)
                )
            },
        );
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.1} {warm}|",
            row.memory_mb,
            row.function,
            row.scenario,
            ms(row.cold),
            ms(row.cold_floor),
            ms(row.cold) / ms(row.cold_floor).max(0.001),
            ms(row.cpu),
        );
    }

    println!("\nCost per million bot turns, the waiting billed (Lambda arm64, billed per 1 ms at the warm p50; HTTP API, one DynamoDB read):\n");
    println!("| memory MB | warm bot turn p50 ms | USD per million bot turns |");
    println!("|---|---|---|");
    for row in rows
        .iter()
        .filter(|r| r.function == "answer-ingest" && r.scenario == "bot turn")
    {
        let Some(warm) = &row.warm else { continue };
        let gb = row.memory_mb as f64 / 1024.0;
        let lambda = prices::LAMBDA_REQUESTS_PER_MILLION
            + 1e6 * ms(warm.p50).ceil() / 1_000.0 * gb * prices::LAMBDA_ARM_GB_SECOND;
        let total = prices::HTTP_API_PER_MILLION + lambda + prices::DYNAMODB_RRU_PER_MILLION;
        println!("| {} | {:.1} | {total:.2} |", row.memory_mb, ms(warm.p50));
    }
    let rust = rows
        .iter()
        .find(|r| r.memory_mb == 128 && r.function == "answer-ingest" && r.scenario == "bot turn");
    let python = rows.iter().find(|r| r.function == "Python/boto3");
    if let (Some(rust), Some(python)) = (rust, python) {
        println!(
            "\nCold first bot turn at 128 MB: Python/boto3 {:.0} ms, answer-ingest {:.0} ms: {:.1} × faster.",
            ms(python.cold),
            ms(rust.cold),
            ms(python.cold) / ms(rust.cold).max(0.001)
        );
    }
    print_live(rows);
    print_to_msc(rows);
}

/// An end user's message on its way to MSC: the relayed turn (read, hold in the queue) and the
/// drainer's delivery (a slot of MSC's pace, the post), beside the relay as it was before the queue
/// (read, post to MSC). Lambda's poller between the queue and the drainer is not here.
fn print_to_msc(rows: &[Row]) {
    println!("\n### An end user's message to MSC: the turn, then the drainer\n");
    println!("The relayed turn answers once the message is held (its warm p50 above); msc-outbound then takes a slot of MSC's pace and posts: below, from its invocation to MSC having the request. The way before the queue (read, then post to MSC in the turn) is one AWS and one CM round trip plus the function: the turn's p50 then. Lambda's SQS poller, between the two, is not measured here.\n");
    println!("| memory MB | relayed turn warm p50 ms | delivery to MSC cold ms | delivery to MSC warm p50 ms | warm p99 ms | turn + delivery p50 ms | USD per million relayed messages |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows.iter() {
        let Some((cold, warm)) = &row.to_msc else {
            continue;
        };
        let turn = rows
            .iter()
            .find(|r| r.memory_mb == row.memory_mb && r.scenario == Scenario::Relayed.name())
            .and_then(|r| r.warm.as_ref())
            .map_or(Duration::ZERO, |w| w.p50);
        let p50 = percentile(warm.clone(), 50);
        let whole_delivery = row.warm.as_ref().map_or(Duration::ZERO, |w| w.p50);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            row.memory_mb,
            ms(turn),
            ms(median(cold.clone())),
            ms(p50),
            ms(percentile(warm.clone(), 99)),
            ms(turn + p50),
            relayed_cost(row.memory_mb, turn, whole_delivery)
        );
    }
}

/// A page polling every `POLL_EVERY` waits for the next poll after the reply is stored.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// The agent's reply to the page: pushed on the live connection, against the floor and a page that
/// polls; then what a conversation costs.
fn print_live(rows: &[Row]) {
    println!(
        "\n### An agent's reply to the page: pushed, or polled every {} s\n",
        POLL_EVERY.as_secs()
    );
    println!("From MSC's post reaching agent-events to the push reaching API Gateway's management API (its hop on to the socket is inside AWS and not here). Floor: the reply's own store requests (the read and the write that stores it) and one way to the management API, as above. Polling: each warm sample's time to the stored reply, plus a wait for the next poll spread evenly over {} s, plus the warm outbox poll's p50.\n", POLL_EVERY.as_secs());
    println!("| memory MB | cold to page ms | cold floor ms | × floor | warm p50 ms | warm p99 ms | warm floor p50 ms | × floor (p50) | polling p50 ms | polling p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows.iter().filter(|r| r.to_page.is_some()) {
        let Some(live) = &row.to_page else { continue };
        let poll = rows
            .iter()
            .find(|r| r.memory_mb == row.memory_mb && r.scenario == Scenario::OutboxPoll.name())
            .and_then(|r| r.warm.as_ref())
            .map_or(Duration::ZERO, |w| w.p50);
        // Evenly spread phases (the golden ratio's multiples), the same every run.
        let polled: Vec<Duration> = live
            .stored
            .iter()
            .enumerate()
            .map(|(i, stored)| {
                let phase = (i as f64 * 0.618_033_988_75).fract();
                *stored + POLL_EVERY.mul_f64(phase) + poll
            })
            .collect();
        let (cold, cold_floor) = (median(live.cold.clone()), median(live.cold_floors.clone()));
        let (p50, floor) = (
            percentile(live.warm.clone(), 50),
            percentile(live.warm_floors.clone(), 50),
        );
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.0} |",
            row.memory_mb,
            ms(cold),
            ms(cold_floor),
            ms(cold) / ms(cold_floor).max(0.001),
            ms(p50),
            ms(percentile(live.warm.clone(), 99)),
            ms(floor),
            ms(p50) / ms(floor).max(0.001),
            ms(percentile(polled.clone(), 50)),
            ms(percentile(polled, 99)),
        );
    }
    print_conversation_costs(rows);
}

/// What one conversation costs at 128 MB, from the warm p50 durations measured above (billed per
/// 1 ms) and the DynamoDB requests the tests count (tests/it/costs.rs, tests/it/live.rs), each at one
/// request unit.
fn print_conversation_costs(rows: &[Row]) {
    let warm = |scenario: Scenario| {
        rows.iter()
            .find(|r| r.memory_mb == 128 && r.scenario == scenario.name())
            .and_then(|r| r.warm.as_ref())
            .map(|w| w.p50)
    };
    let (
        Some(bot),
        Some(livechat),
        Some(end_slot),
        Some(relayed),
        Some(reply),
        Some(poll),
        Some(resume),
        Some(delivery),
    ) = (
        warm(Scenario::Bot),
        warm(Scenario::Livechat),
        warm(Scenario::EndSlot),
        warm(Scenario::Relayed),
        warm(Scenario::AgentReplyLive),
        warm(Scenario::OutboxPoll),
        warm(Scenario::LiveResume),
        warm(Scenario::Delivery),
    )
    else {
        println!("\n(No conversation costs: they need every scenario at 128 MB.)");
        return;
    };
    let gb = 128.0 / 1024.0;
    let lambda = |d: Duration| {
        prices::LAMBDA_REQUESTS_PER_MILLION / 1e6
            + ms(d).ceil().max(1.0) / 1_000.0 * gb * prices::LAMBDA_ARM_GB_SECOND
    };
    let http = |d: Duration| prices::HTTP_API_PER_MILLION / 1e6 + lambda(d);
    let dynamo = |reads: f64, writes: f64| {
        reads * prices::DYNAMODB_RRU_PER_MILLION / 1e6
            + writes * prices::DYNAMODB_WRU_PER_MILLION / 1e6
    };
    let minutes = 15.0;
    // A page's turn with its token: the turn's own requests and one write of its quota.
    let bot_only = 10.0 * (http(bot) + dynamo(1.0, 1.0));
    // 5 page turns with the bot: 3 plain, the livechat turn and the intake's answer; the end slot;
    // the handover's requests as counted (1 read, 4 writes with its slot of MSC's pace) and the
    // turns' quota writes.
    let handover = 3.0 * (http(bot) + dynamo(1.0, 1.0))
        + http(livechat)
        + http(bot)
        + http(end_slot)
        + dynamo(1.0, 4.0 + 2.0);
    // 10 relayed turns: a read and the quota's write each, the SQS send, and the lock's slide every
    // 5 minutes; each delivered by msc-outbound (a batch of one: the poller's receive and delete, the
    // pace's write, the receipt's read, amendment and announcement, and its push to the page).
    let sqs = prices::SQS_FIFO_PER_MILLION / 1e6;
    let relays = 10.0 * (http(relayed) + dynamo(1.0, 1.0) + sqs) + dynamo(0.0, minutes / 5.0);
    let deliveries = 10.0
        * (lambda(delivery)
            + 2.0 * sqs
            + dynamo(1.0, 3.0)
            + prices::WEBSOCKET_MESSAGES_PER_MILLION / 1e6);
    let relays = relays + deliveries;
    // 10 agent replies: a read, the reply's write and its announcement; the first also links MSC's
    // conversation (a read and two writes more).
    let replies = 10.0 * (http(reply) + dynamo(1.0, 2.0)) + dynamo(1.0, 2.0);
    // The page connected for 15 minutes: $connect and the resume (one read, one write), the resume
    // frame, `resumed`, 10 pushes and a ping every 5 minutes.
    let messages = 1.0 + 1.0 + 10.0 + minutes / 5.0;
    let live = lambda(Duration::from_millis(1))
        + lambda(resume)
        + dynamo(1.0, 1.0)
        + messages * prices::WEBSOCKET_MESSAGES_PER_MILLION / 1e6
        + minutes * prices::WEBSOCKET_CONNECTION_MINUTES_PER_MILLION / 1e6;
    let polls = minutes * 60.0 / POLL_EVERY.as_secs_f64();
    let polling = polls * (http(poll) + dynamo(1.0, 0.0));
    let connect = |messages: f64| messages * prices::CONNECT_CHAT_PER_MESSAGE;
    println!(
        "\n### What a conversation costs (128 MB, {})\n",
        prices::AS_OF
    );
    println!(
        "| conversation | USD | on Amazon Connect chat (USD {} a message) |",
        prices::CONNECT_CHAT_PER_MESSAGE
    );
    println!("|---|---|---|");
    println!(
        "| bot only: 10 turns of a page with its token | {bot_only:.6} | {:.2} (20 messages) |",
        connect(20.0)
    );
    let handed_over = handover + relays + replies + live;
    println!(
        "| handed over: 5 bot turns, 10 relayed, 10 agent replies, the page connected for 15 minutes | {handed_over:.6} | {:.2} (30 messages) |",
        connect(30.0)
    );
    println!(
        "| the same, the page polling every {} s instead of connected ({polls:.0} polls) | {:.6} | |",
        POLL_EVERY.as_secs(),
        handover + relays + replies + polling
    );
    println!(
        "\nOf the handed-over conversation: the live connection {live:.6}, its announcements {:.6}; polling would cost {polling:.6}.",
        dynamo(0.0, 10.0)
    );
}
