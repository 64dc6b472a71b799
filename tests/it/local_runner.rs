//! The README's quickstart, as a test: the local runner with no configuration at all serves every
//! route on one port, with the embedded store and the sandbox CAIC and MSC, and a handover goes through.

use handover_core::config::Env;
use handover_local::{start, LOCAL_CHANNEL_KEY, LOCAL_OPERATOR_KEY};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_walks_through_the_sandbox_on_one_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = start(listener, Env::from_pairs([]))
        .await
        .expect("runner starts");
    assert!(running.sandbox, "no CAIC_BASE_URL → sandbox");
    let base = format!("http://{}", running.addr);
    let http = handover_core::clients::new_http_client(None).expect("http client");
    let say = |session: Option<String>, text: &str| {
        let mut body = json!({"text": text, "endUserUrl": "https://shop.example/"});
        if let Some(s) = session {
            body["sessionId"] = json!(s);
        }
        http.post(format!("{base}/v1/messages"))
            .bearer_auth(LOCAL_CHANNEL_KEY)
            .json(&body)
            .send()
    };

    let first: Value = say(None, "hello").await.unwrap().json().await.unwrap();
    assert_eq!(first["handledBy"], "bot");
    let session = first["sessionId"].as_str().unwrap().to_owned();
    let started: Value = say(Some(session.clone()), "agent please")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(started["answers"].as_array().unwrap().len(), 2, "{started}");
    say(Some(session.clone()), "Jane Doe").await.unwrap();
    say(Some(session.clone()), "jane@example.com")
        .await
        .unwrap();
    let relayed: Value = say(Some(session.clone()), "hello agent")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(relayed["handledBy"], "agent", "{relayed}");

    assert_eq!(relayed["delivery"], "on_its_way", "{relayed}");

    // The runner's own queue delivers it, at MSC's pace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let sink = loop {
        let sink: Value = http
            .get(format!("{base}/sandbox/msc/api/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if sink["messages"].as_array().unwrap().len() >= 2 {
            break sink;
        }
        assert!(std::time::Instant::now() < deadline, "delivered: {sink}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let messages = sink["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["RoutingKeywords"], "support");
    assert_eq!(messages[0]["Referrer"], "https://shop.example/");
    assert_eq!(messages[1]["Content"], "hello agent");

    let again = http
        .post(format!("{base}/v1/sessions/{session}/handover"))
        .bearer_auth(LOCAL_OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["status"],
        "already_handed_over"
    );

    let unknown = http.get(format!("{base}/v1/nothing")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let unauthorized = http
        .post(format!("{base}/v1/messages"))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    running.task.abort();
}

/// The playground's end user sees the agent without polling: a real WebSocket client on the runner's
/// one port gets an agent's reply as it is sent; closed and reopened with its cursor, it gets what it
/// missed, once, then the next reply live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_socket_carries_agent_replies_and_resumes_from_a_cursor() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = start(listener, Env::from_pairs([]))
        .await
        .expect("runner starts");
    let base = format!("http://{}", running.addr);
    let http = handover_core::clients::new_http_client(None).expect("http client");
    let minted: Value = http
        .post(format!("{base}/v1/conversations"))
        .bearer_auth(LOCAL_CHANNEL_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut token = minted["token"].as_str().unwrap().to_owned();
    let mut session = None::<String>;
    for text in ["agent please", "Jane Doe", "jane@example.com"] {
        let mut body = json!({"text": text});
        if let Some(s) = &session {
            body["sessionId"] = json!(s);
        }
        let reply: Value = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(bound) = reply["token"].as_str() {
            token = bound.to_owned();
        }
        session = reply["sessionId"].as_str().map(str::to_owned);
    }
    let session = session.expect("a session");
    let agent_says = |text: &'static str| {
        http.post(format!("{base}/sandbox/msc/agent/reply"))
            .json(&json!({"sessionId": session, "text": text}))
            .send()
    };
    let ws = format!("ws://{}/v1/live", running.addr);

    let refused = tokio_tungstenite::connect_async(format!("{ws}?token=forged")).await;
    assert!(
        refused.is_err(),
        "a forged token is refused at the handshake"
    );

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}?token={token}"))
        .await
        .expect("connects");
    let resume = |after: u64| {
        Message::Text(
            json!({"type": "resume", "token": token, "after": after})
                .to_string()
                .into(),
        )
    };
    socket.send(resume(0)).await.unwrap();
    let resumed = next_frame(&mut socket).await;
    assert_eq!(
        resumed,
        json!({"type": "resumed", "cursor": 0, "handledBy": "agent"})
    );
    agent_says("Hello Jane, Sam here.").await.unwrap();
    let first = next_frame(&mut socket).await;
    assert_eq!(first["type"], "message");
    assert_eq!(first["message"]["text"], "Hello Jane, Sam here.");
    assert_eq!(first["message"]["cursor"], 1);
    // The sandbox MSC says who took the conversation after its first reply, as MSC does.
    let joined = next_frame(&mut socket).await;
    assert_eq!(joined["message"]["event"], "agent_joined", "{joined}");
    assert_eq!(joined["message"]["cursor"], 2);
    socket.close(None).await.unwrap();

    agent_says("Are you still there?").await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}?token={token}"))
        .await
        .expect("reconnects");
    socket.send(resume(2)).await.unwrap();
    let missed = next_frame(&mut socket).await;
    assert_eq!(missed["message"]["text"], "Are you still there?");
    assert_eq!(
        next_frame(&mut socket).await,
        json!({"type": "resumed", "cursor": 3, "handledBy": "agent"})
    );
    socket
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    agent_says("Here is the answer.").await.unwrap();
    let live = next_frame(&mut socket).await;
    assert_eq!(live["message"]["cursor"], 4, "nothing twice: {live}");
    running.task.abort();
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, as JSON, within five seconds (a push, not a poll).
async fn next_frame(socket: &mut Socket) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let read = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str::<Value>(&text).expect("JSON frame")
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("a frame within 5 s")
}

/// The runner times the waits for an agent itself: with a one-second wait, the end user of a handover
/// no agent answers is asked, and going back to the bot leaves a private note in the sandbox's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_asks_when_nobody_came_on_its_own_timer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = start(listener, Env::from_pairs([("AGENT_WAIT_SECS", "1")]))
        .await
        .expect("runner starts");
    let base = format!("http://{}", running.addr);
    let http = handover_core::clients::new_http_client(None).expect("http client");
    let post = |body: Value| {
        http.post(format!("{base}/v1/messages"))
            .bearer_auth(LOCAL_CHANNEL_KEY)
            .json(&body)
            .send()
    };
    let first: Value = post(json!({"text": "agent"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = first["sessionId"].as_str().unwrap().to_owned();
    for text in ["Jane Doe", "jane@example.com"] {
        post(json!({"sessionId": session, "text": text}))
            .await
            .unwrap();
    }
    let mut asked = None;
    for _ in 0..50 {
        let outbox: Value = http
            .get(format!("{base}/v1/sessions/{session}/messages"))
            .bearer_auth(LOCAL_CHANNEL_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        asked = outbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["event"] == "no_agent_yet")
            .cloned();
        if asked.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let asked = asked.expect("asked within 5 s of a 1 s wait");
    assert_eq!(asked["round"], 1);
    let chosen: Value =
        post(json!({"sessionId": session, "text": "Back", "choice": "back_to_bot"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(chosen["choice"], "back_to_bot", "{chosen}");
    let sink: Value = http
        .get(format!("{base}/sandbox/msc/api/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let notes = sink["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["IsPrivate"] == true)
        .count();
    assert_eq!(notes, 1, "{sink}");
}
