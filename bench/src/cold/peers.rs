//! The cold path's peers: Secrets Manager, DynamoDB, EventBridge Scheduler and SQS (moto, forwarded), CAIC and MSC (stubs), each
//! behind TLS with a certificate of the run's CA, at a round-trip time of its own. Each peer records
//! what it served and how long it took to answer, so the floor is computed from the same answers.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use handover_tests::tls::TestCa;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    SecretsManager,
    DynamoDb,
    Caic,
    Msc,
    /// The channel's webhook, where agent replies are pushed.
    Channel,
    /// API Gateway's management API, where pushes to the pages' live connections are posted.
    LiveConnections,
    /// EventBridge Scheduler (moto, forwarded): a handover's wait for an agent.
    Scheduler,
    /// SQS (moto, forwarded): the outbound queue, where a relayed turn holds its message for MSC.
    Sqs,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::SecretsManager => "Secrets Manager",
            Peer::DynamoDb => "DynamoDB",
            Peer::Caic => "CAIC",
            Peer::Msc => "MSC",
            Peer::Channel => "channel",
            Peer::LiveConnections => "management API",
            Peer::Scheduler => "Scheduler",
            Peer::Sqs => "SQS",
        }
    }
}

/// One request a peer answered: which peer, what (path or DynamoDB operation), and how long it took
/// between having the whole request and sending the whole answer.
#[derive(Debug, Clone)]
pub struct Served {
    pub peer: Peer,
    pub what: String,
    pub answer_time: Duration,
    /// When the connection was accepted and the request was in, for `BENCH_TIMELINE=1`.
    pub connected: Instant,
    pub received: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct RoundTrips {
    pub aws: Duration,
    pub cm: Duration,
    pub caic_answer: Duration,
}

impl RoundTrips {
    pub fn of(&self, peer: Peer) -> Duration {
        match peer {
            Peer::SecretsManager
            | Peer::DynamoDb
            | Peer::LiveConnections
            | Peer::Scheduler
            | Peer::Sqs => self.aws,
            Peer::Caic | Peer::Msc | Peer::Channel => self.cm,
        }
    }
}

pub struct Peers {
    pub urls: Vec<(Peer, String)>,
    served: Arc<Mutex<Vec<Served>>>,
}

impl Peers {
    pub fn url(&self, peer: Peer) -> &str {
        self.urls
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, url)| url.as_str())
            .unwrap_or_default()
    }

    /// What the peers served since the last call.
    pub fn take_served(&self) -> Vec<Served> {
        std::mem::take(&mut *self.served.lock().expect("served"))
    }
}

/// Starts the peers; `moto` is the plain-HTTP endpoint that answers Secrets Manager and DynamoDB.
pub async fn start(ca: &TestCa, moto: &str, round_trips: RoundTrips) -> Peers {
    let served: Arc<Mutex<Vec<Served>>> = Arc::default();
    let upstream = handover_core::clients::new_http_client(None).expect("HTTP client to moto");
    let mut urls = Vec::new();
    for peer in [
        Peer::SecretsManager,
        Peer::DynamoDb,
        Peer::Caic,
        Peer::Msc,
        Peer::Channel,
        Peer::LiveConnections,
        Peer::Scheduler,
        Peer::Sqs,
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
        urls.push((
            peer,
            format!("https://{}", listener.local_addr().expect("address")),
        ));
        let (acceptor, served, upstream, moto) = (
            ca.acceptor(),
            served.clone(),
            upstream.clone(),
            moto.to_owned(),
        );
        let rtt = round_trips.of(peer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connected = Instant::now();
                let _ = stream.set_nodelay(true);
                let (acceptor, served, upstream, moto) = (
                    acceptor.clone(),
                    served.clone(),
                    upstream.clone(),
                    moto.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(delayed(stream, rtt)).await else {
                        return;
                    };
                    let service = service_fn(move |request| {
                        answer(
                            peer,
                            connected,
                            request,
                            round_trips.caic_answer,
                            upstream.clone(),
                            moto.clone(),
                            served.clone(),
                        )
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }
    Peers { urls, served }
}

async fn answer(
    peer: Peer,
    connected: Instant,
    request: hyper::Request<hyper::body::Incoming>,
    caic_answer: Duration,
    upstream: reqwest::Client,
    moto: String,
    served: Arc<Mutex<Vec<Served>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let received = Instant::now();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let (response, what) = match peer {
        Peer::SecretsManager | Peer::DynamoDb | Peer::Sqs => {
            let operation = parts
                .headers
                .get("x-amz-target")
                .and_then(|t| t.to_str().ok())
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("?");
            // A conversation's live connections are an item of their own: told apart from the
            // session's.
            let live = body.windows(5).any(|w| w == b"live#");
            let what = if live {
                format!("{operation} live")
            } else {
                operation.to_owned()
            };
            (forward(&upstream, &moto, parts, body).await, what)
        }
        Peer::Scheduler => (
            forward(&upstream, &moto, parts, body).await,
            "CreateSchedule".to_owned(),
        ),
        Peer::Caic | Peer::Msc | Peer::Channel | Peer::LiveConnections => {
            if peer == Peer::Caic {
                wait_until(received + caic_answer).await;
            }
            let (status, body) = if matches!(peer, Peer::Channel | Peer::LiveConnections) {
                (200, String::new())
            } else {
                crate::stub_answer(&path, &query)
            };
            let response = hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("response");
            (response, path)
        }
    };
    served.lock().expect("served").push(Served {
        peer,
        what,
        answer_time: received.elapsed(),
        connected,
        received,
    });
    Ok(response)
}

/// The request as it came, to moto over plain HTTP, and moto's answer as it came.
async fn forward(
    upstream: &reqwest::Client,
    moto: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> hyper::Response<Full<Bytes>> {
    let url = format!(
        "{moto}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut request = upstream.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONNECTION {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.expect("moto answers");
    let mut answer = hyper::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
            answer = answer.header(name, value);
        }
    }
    let body = response.bytes().await.expect("moto's body");
    answer.body(Full::new(body)).expect("response")
}

/// The server's end of a connection whose packets take `rtt / 2` each way. The client's first bytes
/// (its TLS ClientHello, sent as soon as `connect` returns on loopback) wait one round trip more: the
/// TCP handshake the loopback did at once. The client's work between `connect` and sending overlaps
/// that wait here, where in a deployment it follows it; building a ClientHello is microseconds.
fn delayed(stream: TcpStream, rtt: Duration) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (from_client, to_client) = stream.into_split();
    let (from_server, to_server) = tokio::io::split(theirs);
    tokio::spawn(carry(from_client, to_server, rtt / 2, rtt));
    tokio::spawn(carry(from_server, to_client, rtt / 2, Duration::ZERO));
    ours
}

/// Copies `from` to `to`, each chunk `one_way` after it was read (the first `first_extra` later).
async fn carry(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
    one_way: Duration,
    first_extra: Duration,
) {
    let (chunks, mut due_chunks) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = due_chunks.recv().await {
            wait_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut extra = first_extra;
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        let due = Instant::now() + one_way + extra;
        extra = Duration::ZERO;
        if chunks
            .send((due, Bytes::copy_from_slice(&buffer[..read])))
            .is_err()
        {
            break;
        }
    }
    drop(chunks);
    let _ = writer.await;
}

/// tokio's timer ticks in whole milliseconds, too coarse for a 1 ms one-way delay: sleep to just
/// before `due`, then yield until it.
async fn wait_until(due: Instant) {
    let margin = Duration::from_micros(1_500);
    if let Some(early) = due.checked_sub(margin) {
        if early > Instant::now() {
            tokio::time::sleep_until(early).await;
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}
