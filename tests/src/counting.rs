//! A proxy in front of the DynamoDB-compatible test server that counts requests by operation
//! (`X-Amz-Target`), so tests can assert what each flow step costs in DynamoDB requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct DynamoCounter {
    pub url: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Each request's operation and the SDK's `amz-sdk-invocation-id` (the same on its retries).
    invocations: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    /// The operation (and a text its body holds) whose next response is lost (see
    /// [`DynamoCounter::lose_next_response`]).
    lose: Arc<Mutex<Option<(String, String)>>>,
    /// Requests of an operation whose body has a text, refused with a 500 so many times.
    fail: Arc<Mutex<Option<(String, String, usize)>>>,
}

const READS: &[&str] = &[
    "GetItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "TransactGetItems",
];
const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

impl DynamoCounter {
    pub async fn start(upstream: String) -> DynamoCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let invocations: Arc<Mutex<std::collections::HashSet<(String, String)>>> = Arc::default();
        let lose: Arc<Mutex<Option<(String, String)>>> = Arc::default();
        let fail: Arc<Mutex<Option<(String, String, usize)>>> = Arc::default();
        let client = handover_core::clients::new_http_client(None).expect("http client");
        let counter = DynamoCounter {
            url,
            counts: counts.clone(),
            invocations: invocations.clone(),
            lose: lose.clone(),
            fail: fail.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = counts.clone();
                let invocations = invocations.clone();
                let lose = lose.clone();
                let fail = fail.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let counts = counts.clone();
                        let invocations = invocations.clone();
                        let lose = lose.clone();
                        let fail = fail.clone();
                        let client = client.clone();
                        let upstream = upstream.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut lost = false;
                            if let Some(target) = parts
                                .headers
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                            {
                                let operation =
                                    target.rsplit('.').next().unwrap_or(target).to_owned();
                                let mut lose = lose.lock().unwrap();
                                if lose.as_ref().is_some_and(|(op, text)| {
                                    *op == operation
                                        && String::from_utf8_lossy(&body).contains(text.as_str())
                                }) {
                                    *lose = None;
                                    lost = true;
                                }
                                let mut fail = fail.lock().unwrap();
                                let refuse = match fail.as_mut() {
                                    Some((op, text, left))
                                        if *op == operation
                                            && *left > 0
                                            && String::from_utf8_lossy(&body)
                                                .contains(text.as_str()) =>
                                    {
                                        *left -= 1;
                                        true
                                    }
                                    _ => false,
                                };
                                if let Some(id) = parts
                                    .headers
                                    .get("amz-sdk-invocation-id")
                                    .and_then(|v| v.to_str().ok())
                                {
                                    invocations
                                        .lock()
                                        .unwrap()
                                        .insert((operation.clone(), id.to_owned()));
                                }
                                *counts.lock().unwrap().entry(operation).or_default() += 1;
                                if refuse {
                                    let refusal = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}"#;
                                    return Ok::<_, Infallible>(
                                        hyper::Response::builder()
                                            .status(500)
                                            .header("content-type", "application/x-amz-json-1.0")
                                            .body(Full::new(bytes::Bytes::from_static(
                                                refusal.as_bytes(),
                                            )))
                                            .expect("response"),
                                    );
                                }
                            }
                            let mut forward = client
                                .request(parts.method.clone(), format!("{upstream}{}", parts.uri));
                            for (name, value) in &parts.headers {
                                if name != http::header::HOST {
                                    forward = forward.header(name, value);
                                }
                            }
                            let answer = forward.body(body).send().await.expect("upstream answers");
                            let mut response = hyper::Response::builder().status(answer.status());
                            for (name, value) in answer.headers() {
                                response = response.header(name, value);
                            }
                            let bytes = answer.bytes().await.unwrap_or_default();
                            if lost {
                                // The request landed; its answer arrives after the SDK's attempt
                                // timeout (1 s), so the SDK retries it.
                                tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
                            }
                            Ok::<_, Infallible>(response.body(Full::new(bytes)).expect("response"))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        counter
    }

    /// The next `times` requests of `operation` whose body contains `text` are refused with a 500, as
    /// DynamoDB does when it fails internally.
    pub fn fail_next(&self, operation: &str, text: &str, times: usize) {
        *self.fail.lock().unwrap() = Some((operation.to_owned(), text.to_owned(), times));
    }

    /// The next request of `operation` reaches the server, but its response comes too late.
    pub fn lose_next_response(&self, operation: &str) {
        self.lose_next_response_containing(operation, "");
    }

    /// The next request of `operation` whose body contains `text` reaches the server, but its
    /// response comes too late.
    pub fn lose_next_response_containing(&self, operation: &str, text: &str) {
        *self.lose.lock().unwrap() = Some((operation.to_owned(), text.to_owned()));
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap().clear();
        self.invocations.lock().unwrap().clear();
    }

    /// Reads and writes as operations the code called: an SDK's retry of one (after an attempt
    /// timed out under load) is the same operation, as its `amz-sdk-invocation-id` says.
    pub fn operations(&self) -> (usize, usize) {
        let invocations = self.invocations.lock().unwrap();
        let of = |kinds: &[&str]| {
            invocations
                .iter()
                .filter(|(op, _)| kinds.contains(&op.as_str()))
                .count()
        };
        (of(READS), of(WRITES))
    }

    pub fn count(&self, operation: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    pub fn reads(&self) -> usize {
        READS.iter().map(|op| self.count(op)).sum()
    }

    pub fn writes(&self) -> usize {
        WRITES.iter().map(|op| self.count(op)).sum()
    }

    pub fn snapshot(&self) -> HashMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }
}
