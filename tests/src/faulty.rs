//! A peer that misbehaves on purpose, on 127.0.0.1: per path prefix it answers healthily, slowly, with
//! an error status, with a body that does not parse, with a body cut short, or by dropping the
//! connection. Raw TCP, so that truncation and resets are real, not simulated by a mock library.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listens: the connection is refused.
    Refused,
    /// Answers only after the given delay, longer than any client limit here.
    Timeout,
    ServerError,
    ClientError,
    /// 200 with a body that is not what the client expects.
    Unparseable,
    /// 200 announcing more body than it sends, then the connection closes.
    Truncated,
}

pub const ALL_FAULTS: [Fault; 6] = [
    Fault::Refused,
    Fault::Timeout,
    Fault::ServerError,
    Fault::ClientError,
    Fault::Unparseable,
    Fault::Truncated,
];

#[derive(Debug, Clone)]
pub enum Behaviour {
    Healthy { status: u16, body: String },
    Faulty(Fault),
}

/// A running peer; dropped with the test's runtime.
pub struct FaultyPeer {
    pub url: String,
}

/// A base URL that refuses connections (port 9, discard, is closed on these machines).
pub const REFUSED_URL: &str = "http://127.0.0.1:9";

impl FaultyPeer {
    /// `routes`: path prefix → behaviour, first match wins; unmatched paths get 404.
    /// A route whose behaviour is `Faulty(Refused)` drops the connection without answering (a reset):
    /// for a whole peer that refuses, use [`REFUSED_URL`].
    pub async fn start(routes: Vec<(&'static str, Behaviour)>) -> FaultyPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let routes = Arc::new(routes);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let routes = Arc::clone(&routes);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    let mut read = 0;
                    // Read the request head (and whatever body came with it): enough to route.
                    loop {
                        match stream.read(&mut buffer[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n")
                            || read == buffer.len()
                        {
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let behaviour = routes
                        .iter()
                        .find(|(prefix, _)| path.starts_with(prefix))
                        .map(|(_, b)| b.clone());
                    let response = match behaviour {
                        None => plain(404, "text/plain", "no route"),
                        Some(Behaviour::Healthy { status, body }) => plain(status, "application/json", &body),
                        Some(Behaviour::Faulty(Fault::Refused)) => return,
                        Some(Behaviour::Faulty(Fault::Timeout)) => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Some(Behaviour::Faulty(Fault::ServerError)) => {
                            plain(500, "application/json", r#"{"message":"internal"}"#)
                        }
                        Some(Behaviour::Faulty(Fault::ClientError)) => plain(
                            400,
                            "application/x-amz-json-1.0",
                            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}"#,
                        ),
                        Some(Behaviour::Faulty(Fault::Unparseable)) => {
                            plain(200, "application/json", "<html>surprise</html>")
                        }
                        Some(Behaviour::Faulty(Fault::Truncated)) => {
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"data\": {\"answer\": \"cut"
                                .to_owned()
                        }
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FaultyPeer { url }
    }
}

fn plain(status: u16, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The base URL a dependency should use to exhibit `fault` on every path.
pub async fn faulty_base_url(fault: Fault) -> String {
    if fault == Fault::Refused {
        return REFUSED_URL.to_owned();
    }
    FaultyPeer::start(vec![("/", Behaviour::Faulty(fault))])
        .await
        .url
}
