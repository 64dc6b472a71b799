//! CORS for the pages of `ALLOWED_ORIGINS`: a preflight from an allowed origin is answered (no key, no
//! credentials), one from any other origin gets no CORS headers; on the Lambda router and on the local
//! runner alike. Without the setting there is no CORS at all.

use handover_core::config::Env;
use handover_tests::memory_harness;
use handover_tests::world::{caic_reply, event, send, World, CHANNEL_KEY};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

const SHOP: &str = "https://shop.example";

fn preflight(origin: &str, path: &str) -> lambda_http::Request {
    let mut request = event("OPTIONS", path, "", None, "");
    let headers = request.headers_mut();
    headers.insert("origin", HeaderValue::from_str(origin).unwrap());
    headers.insert(
        "access-control-request-method",
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        "access-control-request-headers",
        HeaderValue::from_static("authorization,content-type,idempotency-key"),
    );
    request
}

fn allowed_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_lambda_router_answers_the_preflight_of_an_allowed_origin_only() {
    let world = World::with_env(memory_harness().await, &[("ALLOWED_ORIGINS", SHOP)]).await;
    for path in [
        "/v1/messages",
        "/v1/sessions/s-1/messages",
        "/v1/conversations",
    ] {
        let response = send(&world.ingest, preflight(SHOP, path)).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(allowed_origin(headers), Some(SHOP), "{path}");
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(
            methods.contains("POST") && methods.contains("GET"),
            "{methods}"
        );
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"));
        assert!(headers.get("access-control-allow-credentials").is_none());

        let refused = send(&world.ingest, preflight("https://evil.example", path)).await;
        assert_eq!(allowed_origin(refused.headers()), None, "{path}");
    }
    let presence = send(&world.presence, preflight(SHOP, "/v1/presence")).await;
    assert!(presence.status().is_success(), "{}", presence.status());
    assert_eq!(allowed_origin(presence.headers()), Some(SHOP));
    let refused = send(
        &world.presence,
        preflight("https://evil.example", "/v1/presence"),
    )
    .await;
    assert_eq!(allowed_origin(refused.headers()), None);
    // The answer itself carries the header for the allowed origin.
    world
        .caic_answers("hello", caic_reply("cors-session-1", "Hi!", json!({})))
        .await;
    let mut turn = event(
        "POST",
        "/v1/messages",
        "",
        Some(CHANNEL_KEY),
        r#"{"text":"hello"}"#,
    );
    turn.headers_mut()
        .insert("origin", HeaderValue::from_static(SHOP));
    let answered = send(&world.ingest, turn).await;
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(allowed_origin(answered.headers()), Some(SHOP));
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors() {
    let world = World::on(memory_harness().await).await;
    let response = send(&world.ingest, preflight(SHOP, "/v1/messages")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allowed_origin(response.headers()), None);
}

#[tokio::test]
async fn the_local_runner_answers_the_preflight_of_an_allowed_origin_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let env = Env::from_pairs([
        ("ALLOWED_ORIGINS", SHOP),
        ("CONVERSATION_MINTS_PER_MINUTE", "2"),
    ]);
    let running = handover_local::start_with(listener, env, None)
        .await
        .expect("runner");
    handover_core::clients::install_crypto_provider();
    let http = reqwest::Client::new();
    let ask = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/messages", running.addr),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };
    let allowed = ask(SHOP).await.expect("runner answers");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(SHOP)
    );
    let refused = ask("https://evil.example").await.expect("runner answers");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // The page then mints its token, counted by the peer's address as API Gateway's sourceIp would be.
    let mint = || {
        http.post(format!("http://{}/v1/conversations", running.addr))
            .header("origin", SHOP)
            .send()
    };
    // The runner's clock is the system's: five mints may straddle a minute, never two.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(mint().await.unwrap().status());
    }
    assert_eq!(statuses[0], StatusCode::CREATED);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    running.task.abort();
}
