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

    let sink: Value = http
        .get(format!("{base}/sandbox/msc/api/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
