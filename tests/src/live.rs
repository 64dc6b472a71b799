//! A stub of API Gateway's management API (`POST` and `DELETE /{stage}/@connections/{id}`), speaking
//! its wire protocol to the SDK: it records every frame posted, and answers 410 `GoneException` for
//! the connections a test marks stale, as API Gateway does for a connection that closed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

#[derive(Default)]
struct Seen {
    /// Frames posted, per connection, in the order they arrived.
    posts: BTreeMap<String, Vec<Value>>,
    deleted: Vec<String>,
    stale: BTreeSet<String>,
    /// 410s answered, per connection.
    gone: BTreeMap<String, usize>,
    /// Every post answered with this status (0: none).
    failing: u16,
    /// The SDK's `amz-sdk-invocation-id` of each post recorded: its retry of a post whose answer came
    /// too late (a loaded machine) is the same post, recorded once.
    invocations: BTreeSet<String>,
}

#[derive(Clone)]
pub struct ManagementStub {
    seen: Arc<Mutex<Seen>>,
    /// `http://127.0.0.1:<port>/live`: the stage's management endpoint.
    pub url: String,
}

impl ManagementStub {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/live", listener.local_addr().expect("addr"));
        let app = Router::new().fallback(answer).with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { seen, url }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// API Gateway answers 410 for this connection from now on.
    pub fn mark_stale(&self, connection: &str) {
        self.seen().stale.insert(connection.to_owned());
    }

    /// The frames posted to `connection`, in order.
    pub fn frames(&self, connection: &str) -> Vec<Value> {
        self.seen()
            .posts
            .get(connection)
            .cloned()
            .unwrap_or_default()
    }

    /// The `message` frames posted to `connection`: their messages' cursors, in order.
    pub fn cursors(&self, connection: &str) -> Vec<u64> {
        self.frames(connection)
            .iter()
            .filter(|frame| frame["type"] == "message")
            .filter_map(|frame| frame["message"]["cursor"].as_u64())
            .collect()
    }

    /// Every connection that was posted anything.
    pub fn connections(&self) -> Vec<String> {
        self.seen().posts.keys().cloned().collect()
    }

    /// How often a post to `connection` was answered 410.
    pub fn gone_answers(&self, connection: &str) -> usize {
        self.seen().gone.get(connection).copied().unwrap_or(0)
    }

    /// Every post is answered with `status` from now on (`0`: back to normal).
    pub fn fail_with(&self, status: u16) {
        self.seen().failing = status;
    }

    pub fn deleted(&self) -> Vec<String> {
        self.seen().deleted.clone()
    }

    pub fn forget(&self) {
        let mut seen = self.seen();
        seen.posts.clear();
        seen.deleted.clear();
    }
}

async fn answer(State(seen): State<Arc<Mutex<Seen>>>, request: Request) -> Response {
    let method = request.method().clone();
    let invocation = request
        .headers()
        .get("amz-sdk-invocation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = request.uri().path().to_owned();
    let Some(encoded) = path.strip_prefix("/live/@connections/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let connection = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if method == Method::POST && seen.failing != 0 {
        let status =
            StatusCode::from_u16(seen.failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            [("x-amzn-errortype", "InternalServerErrorException")],
            "{}",
        )
            .into_response();
    }
    if seen.stale.contains(&connection) {
        *seen.gone.entry(connection).or_default() += 1;
        return (
            StatusCode::GONE,
            [
                ("x-amzn-errortype", "GoneException"),
                ("content-type", "application/json"),
            ],
            r#"{"message":null}"#,
        )
            .into_response();
    }
    if method == Method::DELETE {
        seen.deleted.push(connection.clone());
        seen.stale.insert(connection);
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Some(id) = invocation {
        if !seen.invocations.insert(id) {
            return StatusCode::OK.into_response();
        }
    }
    let frame: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.posts.entry(connection).or_default().push(frame);
    StatusCode::OK.into_response()
}
