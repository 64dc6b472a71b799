//! Conversation tokens: what a page may do with one (its own conversation's turns and outbox), and
//! nothing more. Real handlers, wiremock CAIC, sessions on moto.

use handover_core::config::Keys;
use handover_core::domain::SessionId;
use handover_core::token::TokenKeys;
use handover_tests::dynamodb_harness;
use handover_tests::world::{
    caic_reply, event, read, send, World, CHANNEL_KEY, CONVERSATION_TOKEN_SECRET, MSC_WEBHOOK_KEY,
    OPERATOR_KEY, WEBHOOK_KEY,
};
use http::StatusCode;
use serde_json::{json, Value};

const FIRST: &str = "token-conversation-0001";
const SECOND: &str = "token-conversation-0002";

async fn mint(world: &World) -> String {
    let (status, body) = read(
        send(
            &world.ingest,
            event("POST", "/v1/conversations", "", Some(CHANNEL_KEY), ""),
        )
        .await,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["expiresAt"].is_string());
    body["token"].as_str().expect("a token").to_owned()
}

async fn say(world: &World, bearer: &str, body: Value) -> (StatusCode, Value) {
    read(
        send(
            &world.ingest,
            event("POST", "/v1/messages", "", Some(bearer), &body.to_string()),
        )
        .await,
    )
}

async fn outbox(world: &World, bearer: &str, session: &str) -> StatusCode {
    let path = format!("/v1/sessions/{session}/messages");
    read(send(&world.ingest, event("GET", &path, "", Some(bearer), "")).await).0
}

/// A token minted by the backend starts one conversation, is bound to it by the reply, and then admits
/// that conversation's turns and outbox only.
#[tokio::test]
async fn a_token_admits_its_own_conversation_and_nothing_else() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    world
        .caic_answers("again", caic_reply(FIRST, "Still here.", json!({})))
        .await;
    let unbound = mint(&world).await;

    let (status, _) = say(
        &world,
        &unbound,
        json!({"sessionId": SECOND, "text": "hello"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an unbound token names no conversation yet"
    );
    let (status, first) = say(&world, &unbound, json!({"text": "hello"})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["sessionId"], FIRST);
    let bound = first["token"]
        .as_str()
        .expect("the reply binds the token")
        .to_owned();

    let (status, again) = say(&world, &bound, json!({"sessionId": FIRST, "text": "again"})).await;
    assert_eq!(
        (status, again["answers"].clone()),
        (StatusCode::OK, json!(["Still here."]))
    );
    assert!(again.get("token").is_none(), "nothing to move along");
    assert_eq!(outbox(&world, &bound, FIRST).await, StatusCode::OK);

    let (status, refused) = say(
        &world,
        &bound,
        json!({"sessionId": SECOND, "text": "hello"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("other_conversation"))
    );
    assert_eq!(
        world.store.get(SECOND).await.unwrap(),
        None,
        "nothing changed"
    );
    assert_eq!(outbox(&world, &bound, SECOND).await, StatusCode::FORBIDDEN);
    let (status, _) = say(&world, &bound, json!({"text": "a new one"})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a bound token starts no other conversation"
    );

    // No other route takes a token: each has its own key.
    let other_routes = [
        (&world.ingest, "POST", "/v1/conversations".to_owned()),
        (&world.handover, "GET", format!("/v1/sessions/{FIRST}")),
        (
            &world.handover,
            "POST",
            format!("/v1/sessions/{FIRST}/release"),
        ),
        (
            &world.handover,
            "POST",
            format!("/v1/sessions/{FIRST}/handover"),
        ),
        (&world.prechat, "POST", "/v1/prechat/complete".to_owned()),
        (&world.agent, "POST", "/v1/msc/messages".to_owned()),
        (&world.agent, "POST", "/v1/msc/events".to_owned()),
        (&world.presence, "POST", "/v1/presence".to_owned()),
    ];
    for (router, method, path) in other_routes {
        let (status, _) = read(send(router, event(method, &path, "", Some(&bound), "{}")).await);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The keys of those routes are not conversation tokens either.
    for key in [WEBHOOK_KEY, OPERATOR_KEY, MSC_WEBHOOK_KEY] {
        assert_eq!(outbox(&world, key, FIRST).await, StatusCode::UNAUTHORIZED);
    }
}

/// Expired, forged, cut-short and retired-secret tokens are a 401; a token signed with the `_NEXT`
/// secret of a rotation is accepted.
#[tokio::test]
async fn only_a_valid_unexpired_token_is_accepted() {
    let world = World::with_env(
        dynamodb_harness().await,
        &[(
            "CONVERSATION_TOKEN_SECRET_NEXT",
            "next-conversation-token-secret",
        )],
    )
    .await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    let session = SessionId::parse(FIRST).unwrap();
    let signed_with = |secret: &str| {
        TokenKeys::new(
            Keys {
                current: secret.into(),
                next: None,
            },
            3_600,
        )
        .issue(Some(&session), world.now())
        .unwrap()
        .0
    };
    let current = signed_with(CONVERSATION_TOKEN_SECRET);
    let next = signed_with("next-conversation-token-secret");
    let retired = signed_with("a-retired-conversation-secret");
    assert_eq!(outbox(&world, &current, FIRST).await, StatusCode::OK);
    assert_eq!(
        outbox(&world, &next, FIRST).await,
        StatusCode::OK,
        "rotation"
    );
    assert_eq!(
        outbox(&world, &retired, FIRST).await,
        StatusCode::UNAUTHORIZED
    );
    let cut = &current[..current.len() - 4];
    assert_eq!(outbox(&world, cut, FIRST).await, StatusCode::UNAUTHORIZED);
    let mut forged: Vec<&str> = current.split('.').collect();
    // {"exp":9999999999,"iat":0,"jti":"x","sid":"token-conversation-0001"} under the real signature.
    forged[1] = "eyJleHAiOjk5OTk5OTk5OTksImlhdCI6MCwianRpIjoieCIsInNpZCI6InRva2VuLWNvbnZlcnNhdGlvbi0wMDAxIn0";
    assert_eq!(
        outbox(&world, &forged.join("."), FIRST).await,
        StatusCode::UNAUTHORIZED
    );

    world.clock.advance(3_600);
    assert_eq!(
        outbox(&world, &current, FIRST).await,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    let (status, _) = say(
        &world,
        &current,
        json!({"sessionId": FIRST, "text": "hello"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        world.store.get(FIRST).await.unwrap(),
        None,
        "nothing changed"
    );
}

/// CAIC replaces an expired session without notice: the reply carries a token for the new one.
#[tokio::test]
async fn a_token_follows_its_conversation_when_caic_starts_a_new_session() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    world
        .caic_answers("later", caic_reply(SECOND, "Hi again!", json!({})))
        .await;
    let unbound = mint(&world).await;
    let first = say(&world, &unbound, json!({"text": "hello"})).await.1;
    let bound = first["token"].as_str().unwrap().to_owned();
    let (status, moved) = say(&world, &bound, json!({"sessionId": FIRST, "text": "later"})).await;
    assert_eq!(
        (status, moved["sessionId"].clone()),
        (StatusCode::OK, json!(SECOND))
    );
    let moved_token = moved["token"]
        .as_str()
        .expect("a token for the new session");
    assert_eq!(outbox(&world, moved_token, SECOND).await, StatusCode::OK);
    assert_eq!(
        outbox(&world, moved_token, FIRST).await,
        StatusCode::FORBIDDEN
    );
}

/// Two pages' first messages with the same `Idempotency-Key` never share a reply (nor a conversation).
#[tokio::test]
async fn first_messages_of_two_tokens_never_share_an_idempotency_key() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    let mut replays = Vec::new();
    for _ in 0..2 {
        let token = mint(&world).await;
        let mut request = event(
            "POST",
            "/v1/messages",
            "",
            Some(&token),
            r#"{"text":"hello"}"#,
        );
        request
            .headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static("1"));
        let response = send(&world.ingest, request).await;
        replays.push(response.headers().contains_key("idempotent-replayed"));
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(replays, [false, false], "each token its own scope");
}
