//! The benchmark behind `./scripts/bench`: runs each release function binary under a local stand-in for
//! the Lambda Runtime API, with instant local CAIC and MSC stubs, and compares it with the empty
//! function. Measures init time, warm invocation p50/p99, peak RSS and zip size; counts DynamoDB
//! requests per scenario against moto behind a counting proxy; turns it all into cost. Then the cold
//! path as deployed (`cold`).
//!
//! Usage (scripts/bench sets the environment and lists the options): bench [--invocations N] ...

mod cold;
mod outbound;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex, Notify};

/// AWS list prices (us-east-1) as published by AWS; one place, one date. Not fetched: this benchmark
/// runs offline. Update both the figures and the date together.
mod prices {
    pub const AS_OF: &str = "AWS list prices, us-east-1, as published 2024-11 (DynamoDB on-demand after the 2024-11-01 cut)";
    /// API Gateway HTTP API, first 300 million requests a month, per million.
    pub const HTTP_API_PER_MILLION: f64 = 1.00;
    /// Lambda requests, per million.
    pub const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;
    /// Lambda arm64 duration, per GB-second.
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    /// DynamoDB on-demand, per million write request units (1 KB) and read request units (4 KB,
    /// strongly consistent).
    pub const DYNAMODB_WRU_PER_MILLION: f64 = 0.625;
    pub const DYNAMODB_RRU_PER_MILLION: f64 = 0.125;
    pub const MEMORY_MB: f64 = 128.0;
    /// API Gateway WebSocket API, first billion messages a month (each up to 32 KB), per million.
    pub const WEBSOCKET_MESSAGES_PER_MILLION: f64 = 1.00;
    /// API Gateway WebSocket API, per million connection minutes.
    pub const WEBSOCKET_CONNECTION_MINUTES_PER_MILLION: f64 = 0.25;
    /// Amazon Connect chat, per message sent or received.
    pub const CONNECT_CHAT_PER_MESSAGE: f64 = 0.004;
    /// SQS FIFO requests (each up to 64 KB), past the first million a month, per million.
    pub const SQS_FIFO_PER_MILLION: f64 = 0.50;
}

const KEY: &str = "bench-key-0123456789";
// A cold start here takes 1-2 ms and single ones move by 0.5 ms with what else the machine does: with 9
// samples the medians of one binary's two scenarios differed by up to 0.5 ms, so more of them.
const INIT_SAMPLES: usize = 31;
const SESSION: &str = "bench-session-0001";

// ---------------------------------------------------------------------------------------------------
// Stubs

/// CAIC and MSC answering at once: "agent" is a livechat answer, "done" completes the intake.
async fn start_peers() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peers");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let query = req.uri().query().unwrap_or_default().to_owned();
                    let _ = req.into_body().collect().await;
                    let (status, body) = stub_answer(&path, &query);
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// CAIC's and MSC's answers, by path: "agent" is a livechat answer, "done" completes the intake.
pub(crate) fn stub_answer(path: &str, query: &str) -> (u16, String) {
    let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let session = query
        .get("session")
        .cloned()
        .unwrap_or_else(|| SESSION.into());
    let reply = |answer: &str, additions: Value| {
        json!({"data": {"answer": answer, "outputAdditions": additions},
               "metadata": {"sessionId": session}})
        .to_string()
    };
    match path {
        "/ask" => match query.get("q").map(String::as_str) {
            Some("agent") => (
                200,
                reply("Connecting.", json!({"livechat": true, "skill": "billing"})),
            ),
            Some("done") => (200, reply("Thanks.", json!({"prechat": true}))),
            _ => (200, reply("Hi!", json!({}))),
        },
        "/event/prechat" => (200, reply("Your name?", json!({}))),
        "/presence/api/v1" => (200, "Online".to_owned()),
        "/api/messages" => (201, String::new()),
        _ => (404, String::new()),
    }
}

// ---------------------------------------------------------------------------------------------------
// Runtime API stand-in (the documented paths under /2018-06-01/runtime)

struct RuntimeApi {
    addr: String,
    events: mpsc::Sender<(Value, oneshot::Sender<Value>)>,
    first_poll: Arc<Notify>,
    first_poll_at: Arc<Mutex<Option<Instant>>>,
}

async fn start_runtime_api() -> RuntimeApi {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind runtime api");
    let addr = listener.local_addr().expect("addr").to_string();
    let (events, receiver) = mpsc::channel::<(Value, oneshot::Sender<Value>)>(1);
    let receiver = Arc::new(AsyncMutex::new(receiver));
    let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>> = Arc::default();
    let first_poll = Arc::new(Notify::new());
    let first_poll_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (notify, polled_at) = (first_poll.clone(), first_poll_at.clone());
    tokio::spawn(async move {
        let ids = Arc::new(Mutex::new(0u64));
        while let Ok((stream, _)) = listener.accept().await {
            let (receiver, pending, notify, polled_at, ids) = (
                receiver.clone(),
                pending.clone(),
                notify.clone(),
                polled_at.clone(),
                ids.clone(),
            );
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (receiver, pending, notify, polled_at, ids) = (
                        receiver.clone(),
                        pending.clone(),
                        notify.clone(),
                        polled_at.clone(),
                        ids.clone(),
                    );
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if path.ends_with("/runtime/invocation/next") {
                            {
                                let mut at = polled_at.lock().expect("lock");
                                if at.is_none() {
                                    *at = Some(Instant::now());
                                    notify.notify_one();
                                }
                            }
                            let Some((event, reply)) = receiver.lock().await.recv().await else {
                                return Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                    Bytes::new(),
                                )));
                            };
                            let id = {
                                let mut ids = ids.lock().expect("lock");
                                *ids += 1;
                                format!("bench-{ids}")
                            };
                            pending.lock().expect("lock").insert(id.clone(), reply);
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_millis() + 30_000)
                                .unwrap_or_default();
                            return Ok(hyper::Response::builder()
                                .header("Lambda-Runtime-Aws-Request-Id", id)
                                .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                                .header(
                                    "Lambda-Runtime-Invoked-Function-Arn",
                                    "arn:aws:lambda:us-east-1:123456789012:function:bench",
                                )
                                .header(
                                    "Lambda-Runtime-Trace-Id",
                                    "Root=1-00000000-000000000000000000000000",
                                )
                                .body(Full::new(Bytes::from(event.to_string())))
                                .expect("response"));
                        }
                        // .../invocation/{id}/response or /error
                        let id = path.split('/').rev().nth(1).unwrap_or_default().to_owned();
                        if let Some(reply) = pending.lock().expect("lock").remove(&id) {
                            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let value = if path.ends_with("/error") {
                                json!({"error": value})
                            } else {
                                value
                            };
                            let _ = reply.send(value);
                        } else if path.ends_with("/init/error") {
                            eprintln!("init error: {}", String::from_utf8_lossy(&body));
                        }
                        Ok(hyper::Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::new()))
                            .expect("response"))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    RuntimeApi {
        addr,
        events,
        first_poll,
        first_poll_at,
    }
}

impl RuntimeApi {
    async fn invoke(&self, event: Value) -> Value {
        let (reply, answer) = oneshot::channel();
        self.events
            .send((event, reply))
            .await
            .expect("runtime api alive");
        tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .expect("function answered within 30 s")
            .expect("answer")
    }
}

// ---------------------------------------------------------------------------------------------------
// Events

fn apigw_event(method: &str, path: &str, query: &str, body: &Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"authorization": format!("Bearer {KEY}"), "content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "bench", "domainName": "bench.local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "$default", "stage": "$default", "timeEpoch": 0},
        "body": if body.is_null() { String::new() } else { body.to_string() },
        "isBase64Encoded": false
    })
}

fn message(text: &str) -> Value {
    apigw_event(
        "POST",
        "/v1/messages",
        "",
        &json!({"sessionId": SESSION, "text": text}),
    )
}

fn status_of(response: &Value) -> u64 {
    response["statusCode"].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------
// Running one function

struct Function {
    child: tokio::process::Child,
    api: RuntimeApi,
    init: Duration,
}

/// `program` as Lambda starts a function: a clean environment with the Runtime API's address, the
/// function's memory size, region and credentials, and `env`.
fn lambda_command(
    program: &Path,
    runtime_api: &str,
    memory_mb: u64,
    env: &[(String, String)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

async fn launch(binary: &Path, env: &[(String, String)]) -> Function {
    let api = start_runtime_api().await;
    let started = Instant::now();
    let child = lambda_command(binary, &api.addr, 128, env)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    tokio::time::timeout(Duration::from_secs(20), api.first_poll.notified())
        .await
        .unwrap_or_else(|_| panic!("{} never polled the Runtime API", binary.display()));
    let polled = api
        .first_poll_at
        .lock()
        .expect("lock")
        .expect("first poll recorded");
    Function {
        child,
        api,
        init: polled - started,
    }
}

impl Function {
    fn peak_rss_kb(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Where a process's resident memory is, from `/proc/<pid>/smaps`, in KB: the function's own
/// executable (code, and everything else it maps from the file), the shared libraries (libc, the
/// loader), and anonymous memory (heap, stacks).
#[derive(Default)]
struct Resident {
    own_code: u64,
    own_other: u64,
    libraries: u64,
    anonymous: u64,
}

fn resident(pid: u32, binary: &Path) -> Resident {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let own = binary
        .canonicalize()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut totals = Resident::default();
    let (mut mapping, mut executable) = (String::new(), false);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_header = fields.first().is_some_and(|f| {
            f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        });
        if is_header {
            executable = fields.get(1).is_some_and(|perms| perms.contains('x'));
            mapping = fields.get(5).copied().unwrap_or_default().to_owned();
        } else if fields.first() == Some(&"Rss:") {
            let kb: u64 = fields.get(1).and_then(|kb| kb.parse().ok()).unwrap_or(0);
            let slot = if mapping == own && executable {
                &mut totals.own_code
            } else if mapping == own {
                &mut totals.own_other
            } else if mapping.starts_with('/') {
                &mut totals.libraries
            } else {
                &mut totals.anonymous
            };
            *slot += kb;
        }
    }
    totals
}

struct Timing {
    p50: Duration,
    p99: Duration,
}

async fn time_invocations(function: &Function, event: &Value, count: usize, expect: u64) -> Timing {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = function.api.invoke(event.clone()).await;
        samples.push(started.elapsed());
        if expect != 0 {
            assert_eq!(
                status_of(&response),
                expect,
                "unexpected response {response}"
            );
        }
    }
    samples.sort();
    Timing {
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    }
}

fn zip_size(binary: &Path) -> u64 {
    use flate2::write::DeflateEncoder;
    let bytes = std::fs::read(binary).unwrap_or_default();
    let mut encoder = DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes).expect("compress");
    // Deflated data plus the zip's local header and central directory entry for one "bootstrap".
    encoder.finish().map(|d| d.len() as u64).unwrap_or(0) + 2 * 46 + 2 * 9 + 22
}

// ---------------------------------------------------------------------------------------------------

/// Runs a scenario's setup events (each must succeed) and checks the relay scenario really relays.
async fn prepare(function: &Function, name: &str, scenario: &str, setup: &[Value], event: &Value) {
    for step in setup {
        let response = function.api.invoke(step.clone()).await;
        assert_eq!(status_of(&response), 200, "{name} setup: {response}");
    }
    if scenario == "relayed turn" {
        let check = function.api.invoke(event.clone()).await;
        let body: Value =
            serde_json::from_str(check["body"].as_str().unwrap_or("{}")).unwrap_or_default();
        assert_eq!(
            body["handledBy"], "agent",
            "relay scenario is handed over: {check}"
        );
    }
}

struct Row {
    name: &'static str,
    scenario: &'static str,
    init: Duration,
    /// The empty function's median over the cold starts interleaved with this row's.
    floor_init: Duration,
    timing: Timing,
    rss_kb: u64,
    resident: Resident,
    zip: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let invocations: usize = args
        .iter()
        .skip_while(|a| *a != "--invocations")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let release = PathBuf::from(
        std::env::var("BENCH_TARGET_DIR").unwrap_or_else(|_| "target/release".into()),
    );
    let dynamodb = std::env::var("HANDOVER_TEST_DYNAMODB_ENDPOINT")
        .expect("HANDOVER_TEST_DYNAMODB_ENDPOINT: run ./scripts/bench, which starts moto");
    // The functions that hand over schedule each handover's wait for an agent in this group.
    handover_tests::moto_wait_timers(&handover_core::config::SchedulerSettings {
        group: BENCH_WAIT_GROUP.into(),
        target_arn: BENCH_WAIT_FUNCTION.into(),
        role_arn: BENCH_WAIT_ROLE.into(),
    })
    .await;
    if args.iter().any(|a| a == "--outbound") {
        outbound::run().await;
        return;
    }
    if !args.iter().any(|a| a == "--cold-only") {
        functions_at_full_speed(&release, &dynamodb, invocations).await;
    }
    if !args.iter().any(|a| a == "--no-cold") {
        cold::run(&release, &dynamodb, &cold::Options::from_args(&args)).await;
    }
}

/// The schedule group (on moto) the functions schedule their waits for an agent in, as deployed.
pub const BENCH_WAIT_GROUP: &str = "handover-bench-waits";
pub const BENCH_WAIT_FUNCTION: &str = "arn:aws:lambda:eu-west-1:123456789012:function:agent-wait";
pub const BENCH_WAIT_ROLE: &str = "arn:aws:iam::123456789012:role/scheduler-invokes-agent-wait";

/// Init, warm latency, memory and zip size of every function against the empty one, on a full core
/// with peers that answer at once; DynamoDB requests per scenario; cost.
async fn functions_at_full_speed(release: &Path, dynamodb: &str, invocations: usize) {
    let peers = start_peers().await;
    // A relayed turn holds its message in the outbound queue (moto's SQS), as deployed.
    let queue = handover_tests::moto_outbound_queue(30).await;
    let base_env = |store: &str, endpoint: Option<&str>| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("CAIC_BASE_URL", peers.clone()),
            ("CAIC_CUSTOMER_KEY", "bench".into()),
            ("CAIC_PROJECT_KEY", "bench".into()),
            ("CAIC_API_KEY", "bench".into()),
            ("MSC_PRESENCE_URL", format!("{peers}/presence")),
            ("MSC_PRESENCE_API_KEY", "bench".into()),
            ("MSC_API_URL", format!("{peers}/api")),
            ("MSC_API_KEY", "bench".into()),
            ("MSC_API_SECRET", "bench".into()),
            ("MSC_CHANNEL_ACCOUNT", "bench".into()),
            ("CHANNEL_API_KEY", KEY.into()),
            ("CAIC_WEBHOOK_SECRET", KEY.into()),
            ("OPERATOR_API_KEY", KEY.into()),
            ("HANDOVER_STORE", store.into()),
            // Each handover's wait for an agent, scheduled on moto as deployed.
            ("AWS_ENDPOINT_URL_SCHEDULER", dynamodb.into()),
            ("AGENT_WAIT_SCHEDULE_GROUP", BENCH_WAIT_GROUP.into()),
            ("AGENT_WAIT_FUNCTION_ARN", BENCH_WAIT_FUNCTION.into()),
            ("AGENT_WAIT_SCHEDULER_ROLE_ARN", BENCH_WAIT_ROLE.into()),
            ("AWS_ENDPOINT_URL_SQS", dynamodb.into()),
            ("MSC_OUTBOUND_QUEUE_URL", queue.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(endpoint) = endpoint {
            env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), endpoint.into()));
        }
        env
    };

    // Timing: every function on the in-memory store, so the only peers are the instant local stubs.
    let memory_env = base_env("memory", None);
    let mut rows = Vec::new();
    let scenarios: Vec<(&'static str, &'static str, Vec<Value>, Value, u64)> = vec![
        ("empty", "fixed response", vec![], message("hello"), 200),
        ("answer-ingest", "bot turn", vec![], message("hello"), 200),
        (
            "answer-ingest",
            "relayed turn",
            vec![message("agent"), message("done")],
            message("to the agent"),
            200,
        ),
        (
            "presence-check",
            "widget query",
            vec![],
            apigw_event(
                "GET",
                "/v1/presence",
                "channel=WebChat&referrer=NL-shop",
                &Value::Null,
            ),
            200,
        ),
        (
            "prechat-complete",
            "end slot, no intake",
            vec![],
            apigw_event(
                "POST",
                "/v1/prechat/complete",
                "",
                &json!({"sessionId": SESSION, "slots": []}),
            ),
            200,
        ),
        (
            "operator-handover",
            "operator, no intake",
            vec![],
            apigw_event(
                "POST",
                &format!("/v1/sessions/{SESSION}/handover"),
                "",
                &Value::Null,
            ),
            404,
        ),
    ];
    let tables = handover_tests::client_at(dynamodb);
    // As deployed, the caller keys come from a Secrets Manager secret read at cold start (moto here).
    // Peak memory is measured with it; init without it, since its round trip to moto would measure
    // moto (in a deployment it is one HTTPS call inside the region, see docs/performance.md).
    let secret_arn = handover_tests::secrets_client_at(dynamodb)
        .create_secret()
        .name(format!("handover-bench-{}", uuid::Uuid::new_v4().simple()))
        .secret_string(
            json!({"CHANNEL_API_KEY": KEY, "CAIC_WEBHOOK_SECRET": KEY, "OPERATOR_API_KEY": KEY})
                .to_string(),
        )
        .send()
        .await
        .expect("bench secret")
        .arn()
        .expect("secret ARN")
        .to_owned();
    let empty = release.join("empty");
    for (name, scenario, setup, event, expect) in scenarios {
        let binary = release.join(name);
        // Cold starts and memory in the deployed configuration: the DynamoDB store (its SDK client
        // built at init), on a table of its own at moto over plain http.
        let table = format!("handover-bench-{}", uuid::Uuid::new_v4().simple());
        handover_core::store::dynamodb::ensure_table(&tables, &table)
            .await
            .expect("bench table");
        let mut deployed_env = base_env("dynamodb", Some(dynamodb));
        deployed_env.push(("HANDOVER_TABLE".into(), table));
        // Init varies with what else the machine does: the median of many cold starts, each next to
        // one of the empty function, so that the ratio compares the two under the same conditions.
        let mut inits = Vec::new();
        let mut floor_inits = Vec::new();
        for _ in 0..INIT_SAMPLES {
            for (binary, samples) in [(&binary, &mut inits), (&empty, &mut floor_inits)] {
                let mut cold = launch(binary, &deployed_env).await;
                samples.push(cold.init);
                let _ = cold.child.kill().await;
            }
        }
        inits.sort();
        floor_inits.sort();
        // Warm timing on the in-memory store, so that only our own code and the instant stubs count.
        let function = launch(&binary, &memory_env).await;
        prepare(&function, name, scenario, &setup, &event).await;
        let timing = time_invocations(&function, &event, invocations, expect).await;
        drop(function);
        // Peak memory after the same invocations against DynamoDB (moto), the secret read at start:
        // the SDK's request path is resident too, as in a deployment.
        let mut with_secret = deployed_env.clone();
        with_secret.push(("HANDOVER_SECRET_ARN".into(), secret_arn.clone()));
        with_secret.push((
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            dynamodb.to_owned(),
        ));
        let deployed = launch(&binary, &with_secret).await;
        prepare(&deployed, name, scenario, &setup, &event).await;
        time_invocations(&deployed, &event, invocations, expect).await;
        rows.push(Row {
            name,
            scenario,
            init: inits[inits.len() / 2],
            floor_init: floor_inits[floor_inits.len() / 2],
            rss_kb: deployed.peak_rss_kb(),
            resident: deployed
                .child
                .id()
                .map(|pid| resident(pid, &binary))
                .unwrap_or_default(),
            zip: zip_size(&binary),
            timing,
        });
    }

    // DynamoDB requests per scenario: the real adapter against moto, counted on the wire.
    let counter = handover_tests::counting::DynamoCounter::start(dynamodb.to_owned()).await;
    let table = format!("handover-bench-{}", uuid::Uuid::new_v4().simple());
    handover_core::store::dynamodb::ensure_table(&handover_tests::client_at(dynamodb), &table)
        .await
        .expect("bench table");
    let mut dynamo_env = base_env("dynamodb", Some(&counter.url));
    dynamo_env.push(("HANDOVER_TABLE".into(), table));
    dynamo_env.push(("PRESENCE_CACHE_MS".into(), "0".into()));
    let ingest = launch(&release.join("answer-ingest"), &dynamo_env).await;
    let prechat = launch(&release.join("prechat-complete"), &dynamo_env).await;
    let mut counts = Vec::new();
    let mut count = |label: &'static str, counter: &handover_tests::counting::DynamoCounter| {
        counts.push((label, counter.reads(), counter.writes()));
        counter.reset();
    };
    counter.reset();
    ingest.api.invoke(message("hello")).await;
    count("bot turn", &counter);
    ingest.api.invoke(message("agent")).await;
    ingest.api.invoke(message("Jane Doe")).await;
    let done = prechat
        .api
        .invoke(apigw_event(
            "POST",
            "/v1/prechat/complete",
            "",
            &json!({"sessionId": SESSION, "slots": [{"name": "name", "value": "Jane"}]}),
        ))
        .await;
    assert!(
        done["body"].as_str().unwrap_or_default().contains("true"),
        "handover in the count run: {done}"
    );
    count(
        "handover story (livechat turn, 1 intake turn, end slot)",
        &counter,
    );
    ingest.api.invoke(message("to the agent")).await;
    count("relayed turn", &counter);

    print_report(&rows, &counts, invocations);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn print_report(rows: &[Row], counts: &[(&str, usize, usize)], invocations: usize) {
    let floor = &rows[0];
    println!("\n## Functions ({invocations} warm invocations per scenario)\n");
    println!("Init: median of {INIT_SAMPLES} cold starts (process start to the first GET /runtime/invocation/next), deployed configuration (DynamoDB store, its client built at init); × empty against the median of the empty function's cold starts interleaved with them.");
    println!("Warm: in-memory store and instant local CAIC/MSC stubs, so the times are our code's. Peak RSS: after the same invocations against DynamoDB (moto), caller keys read from a Secrets Manager secret at start, as deployed.\n");
    println!("| function | scenario | init ms | × empty | warm p50 ms | warm p99 ms | p99 over empty ms | peak RSS MB | × empty | zip MB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.3} | {:.3} | {:.3} | {:.1} | {:.2} | {:.2} |",
            row.name,
            row.scenario,
            ms(row.init),
            ms(row.init) / ms(row.floor_init).max(0.001),
            ms(row.timing.p50),
            ms(row.timing.p99),
            ms(row.timing.p99) - ms(floor.timing.p99),
            row.rss_kb as f64 / 1024.0,
            row.rss_kb as f64 / (floor.rss_kb.max(1) as f64),
            row.zip as f64 / 1_048_576.0,
        );
    }
    println!("\n## Where the resident memory is (MB, after the invocations against DynamoDB, from /proc/<pid>/smaps)\n");
    println!("| function | own code | own data and read-only | shared libraries | anonymous (heap, stacks) |");
    println!("|---|---|---|---|---|");
    for row in rows.iter().filter(|r| r.scenario != "relayed turn") {
        let mb = |kb: u64| kb as f64 / 1024.0;
        let r = &row.resident;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row.name,
            mb(r.own_code),
            mb(r.own_other),
            mb(r.libraries),
            mb(r.anonymous)
        );
    }
    println!("\n## DynamoDB requests (real adapter on moto, counted on the wire)\n");
    println!("| scenario | reads | writes |");
    println!("|---|---|---|");
    for (label, reads, writes) in counts {
        println!("| {label} | {reads} | {writes} |");
    }

    // Cost: compute time as measured here (peers answer instantly: add your CAIC and MSC latency).
    let billed_ms = |d: Duration| ms(d).ceil().max(1.0);
    let gb = prices::MEMORY_MB / 1024.0;
    let lambda = |d: Duration| {
        prices::LAMBDA_REQUESTS_PER_MILLION / 1e6
            + billed_ms(d) / 1_000.0 * gb * prices::LAMBDA_ARM_GB_SECOND
    };
    let request = |d: Duration| prices::HTTP_API_PER_MILLION / 1e6 + lambda(d);
    let dynamo = |reads: usize, writes: usize| {
        reads as f64 * prices::DYNAMODB_RRU_PER_MILLION / 1e6
            + writes as f64 * prices::DYNAMODB_WRU_PER_MILLION / 1e6
    };
    let bot = rows
        .iter()
        .find(|r| r.scenario == "bot turn")
        .map(|r| r.timing.p50)
        .unwrap_or_default();
    let (_, bot_reads, bot_writes) = counts[0];
    let (_, story_reads, story_writes) = counts[1];
    let per_million_bot_turns = 1e6 * (request(bot) + dynamo(bot_reads, bot_writes));
    // The story: the livechat turn, one intake turn (answer-ingest) and the end slot (prechat-complete).
    let end_slot = rows
        .iter()
        .find(|r| r.name == "prechat-complete")
        .map(|r| r.timing.p50)
        .unwrap_or_default();
    let per_thousand_handovers =
        1e3 * (2.0 * request(bot) + request(end_slot) + dynamo(story_reads, story_writes));
    println!(
        "\n## Cost ({}; Lambda arm64 at {} MB, billed per 1 ms; compute as measured here)\n",
        prices::AS_OF,
        prices::MEMORY_MB
    );
    println!("| unit | USD |");
    println!("|---|---|");
    println!("| per million bot turns | {per_million_bot_turns:.2} |");
    println!("| per thousand handovers | {per_thousand_handovers:.4} |");
}
