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
    let unbound = mint(&world).await;
    admits_its_own_conversation_and_nothing_else(&world, unbound).await;
}

/// The same for a token the page minted itself.
#[tokio::test]
async fn a_token_a_page_minted_admits_its_own_conversation_and_nothing_else() {
    let world = World::with_env(dynamodb_harness().await, &[("ALLOWED_ORIGINS", SHOP)]).await;
    let (status, minted) = page_mints(&world, Some(SHOP), "198.51.100.30").await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    admits_its_own_conversation_and_nothing_else(&world, minted["token"].as_str().unwrap().into())
        .await;
}

async fn admits_its_own_conversation_and_nothing_else(world: &World, unbound: String) {
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    world
        .caic_answers("again", caic_reply(FIRST, "Still here.", json!({})))
        .await;

    let (status, _) = say(
        world,
        &unbound,
        json!({"sessionId": SECOND, "text": "hello"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an unbound token names no conversation yet"
    );
    let (status, first) = say(world, &unbound, json!({"text": "hello"})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["sessionId"], FIRST);
    let bound = first["token"]
        .as_str()
        .expect("the reply binds the token")
        .to_owned();

    let (status, again) = say(world, &bound, json!({"sessionId": FIRST, "text": "again"})).await;
    assert_eq!(
        (status, again["answers"].clone()),
        (StatusCode::OK, json!(["Still here."]))
    );
    assert!(again.get("token").is_none(), "nothing to move along");
    assert_eq!(outbox(world, &bound, FIRST).await, StatusCode::OK);

    let (status, refused) = say(world, &bound, json!({"sessionId": SECOND, "text": "hello"})).await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("other_conversation"))
    );
    assert_eq!(
        world.store.get(SECOND).await.unwrap(),
        None,
        "nothing changed"
    );
    assert_eq!(outbox(world, &bound, SECOND).await, StatusCode::FORBIDDEN);
    let (status, _) = say(world, &bound, json!({"text": "a new one"})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a bound token starts no other conversation"
    );

    // Presence names no conversation: any valid token may ask, as a widget does before it starts one.
    world
        .presence_says(wiremock::ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    for token in [&bound, &unbound] {
        let (status, presence) = read(
            send(
                &world.presence,
                event("GET", "/v1/presence", "channel=WebChat", Some(token), ""),
            )
            .await,
        );
        assert_eq!(status, StatusCode::OK, "{presence}");
    }
    let (status, _) = read(
        send(
            &world.presence,
            event("GET", "/v1/presence", "", Some("forged.token.here"), ""),
        )
        .await,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

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
        assert_eq!(outbox(world, key, FIRST).await, StatusCode::UNAUTHORIZED);
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
    let keys_of = |secret: &str| {
        TokenKeys::new(
            Keys {
                current: secret.into(),
                next: None,
            },
            3_600,
        )
    };
    let signed_with = |secret: &str| {
        keys_of(secret)
            .issue(None, world.now())
            .map(|(unbound, _)| keys_of(secret).verify(&unbound, world.now()).unwrap())
            .and_then(|unbound| keys_of(secret).follow(&unbound, Some(&session), world.now()))
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

const SHOP: &str = "https://shop.example";

/// `POST /v1/conversations` as a page sends it: no key (unless `bearer`), its `Origin`, from an address.
fn page_mint(origin: Option<&str>, address: &str, bearer: Option<&str>) -> lambda_http::Request {
    use lambda_http::request::RequestContext;
    let mut request = event("POST", "/v1/conversations", "", bearer, "");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
    }
    if let Some(RequestContext::ApiGatewayV2(context)) =
        request.extensions_mut().get_mut::<RequestContext>()
    {
        context.http.source_ip = Some(address.to_owned());
    }
    request
}

async fn page_mints(world: &World, origin: Option<&str>, address: &str) -> (StatusCode, Value) {
    read(send(&world.ingest, page_mint(origin, address, None)).await)
}

/// A page of `ALLOWED_ORIGINS` mints its own token with no secret, so many a minute per source address
/// (an IPv6 address counted by its /64); another origin, no origin, or a wrong key get nothing.
#[tokio::test]
async fn a_page_of_an_allowed_origin_mints_a_token_within_its_addresses_quota() {
    let world = World::with_env(
        dynamodb_harness().await,
        &[
            ("ALLOWED_ORIGINS", SHOP),
            ("CONVERSATION_MINTS_PER_MINUTE", "3"),
        ],
    )
    .await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    // Start at a window's beginning, so that the quota's minute is the test's.
    world.clock.advance(60 - world.now().rem_euclid(60));

    let (status, minted) = page_mints(&world, Some(SHOP), "198.51.100.7").await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let (status, first) = say(&world, token, json!({"text": "hello"})).await;
    assert_eq!(
        (status, first["sessionId"].clone()),
        (StatusCode::OK, json!(FIRST))
    );

    for _ in 0..2 {
        assert_eq!(
            page_mints(&world, Some(SHOP), "198.51.100.7").await.0,
            StatusCode::CREATED
        );
    }
    let response = send(&world.ingest, page_mint(Some(SHOP), "198.51.100.7", None)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(read(response).1["error"]["code"], "too_many_conversations");
    assert_eq!(
        page_mints(&world, Some(SHOP), "198.51.100.8").await.0,
        StatusCode::CREATED,
        "another address has its own quota"
    );
    let (status, _) = read(
        send(
            &world.ingest,
            page_mint(Some(SHOP), "198.51.100.7", Some(CHANNEL_KEY)),
        )
        .await,
    );
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the backend's key is not counted"
    );

    for address in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
        assert_eq!(
            page_mints(&world, Some(SHOP), address).await.0,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        page_mints(&world, Some(SHOP), "2001:db8:1:2::77").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "one /64, one quota"
    );
    assert_eq!(
        page_mints(&world, Some(SHOP), "2001:db8:1:3::1").await.0,
        StatusCode::CREATED
    );

    let (status, refused) = page_mints(&world, Some("https://evil.example"), "198.51.100.9").await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("origin_not_allowed"))
    );
    assert_eq!(
        page_mints(&world, None, "198.51.100.9").await.0,
        StatusCode::UNAUTHORIZED,
        "neither a key nor a page"
    );
    let (status, _) = read(
        send(
            &world.ingest,
            page_mint(Some(SHOP), "198.51.100.9", Some("not-the-channel-key")),
        )
        .await,
    );
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a wrong key is not a page"
    );

    world.clock.advance(60);
    assert_eq!(
        page_mints(&world, Some(SHOP), "198.51.100.7").await.0,
        StatusCode::CREATED,
        "a new minute"
    );
}

/// Without `ALLOWED_ORIGINS` no page mints: only the backend's key does.
#[tokio::test]
async fn without_allowed_origins_only_the_backend_mints() {
    let world = World::on(handover_tests::memory_harness().await).await;
    let (status, refused) = page_mints(&world, Some(SHOP), "198.51.100.7").await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("origin_not_allowed"))
    );
}

/// A token's holder may send so many messages a minute to its conversation; past it a 429 with
/// `Retry-After`, and CAIC is not asked. The channel key is not counted.
#[tokio::test]
async fn a_conversation_sends_only_so_many_messages_a_minute() {
    let world = World::with_env(
        dynamodb_harness().await,
        &[("CONVERSATION_MESSAGES_PER_MINUTE", "3")],
    )
    .await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    world.clock.advance(60 - world.now().rem_euclid(60));
    let unbound = mint(&world).await;
    let (_, first) = say(&world, &unbound, json!({"text": "hello"})).await;
    let bound = first["token"].as_str().unwrap().to_owned();
    let turn = json!({"sessionId": FIRST, "text": "hello"});
    for _ in 0..3 {
        assert_eq!(say(&world, &bound, turn.clone()).await.0, StatusCode::OK);
    }
    let asked = world.caic_requests("/ask").await.len();
    let response = send(
        &world.ingest,
        event("POST", "/v1/messages", "", Some(&bound), &turn.to_string()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(read(response).1["error"]["code"], "too_many_messages");
    assert_eq!(
        world.caic_requests("/ask").await.len(),
        asked,
        "CAIC not asked"
    );
    assert_eq!(
        say(&world, CHANNEL_KEY, turn.clone()).await.0,
        StatusCode::OK,
        "the channel's backend is not counted"
    );
    world.clock.advance(60);
    assert_eq!(
        say(&world, &bound, turn).await.0,
        StatusCode::OK,
        "a new minute"
    );
}

const IDENTITY_SECRET: &str = "the-sites-identity-secret";

/// What a site's backend signs for its page: a JWT over the customer.
fn signed_identity(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn mint_with(body: Value, origin: Option<&str>, bearer: Option<&str>) -> lambda_http::Request {
    let mut request = page_mint(origin, "198.51.100.20", bearer);
    *request.body_mut() = lambda_http::Body::Text(body.to_string());
    request
}

/// Hands over the conversation `bearer` speaks for (its first message started `FIRST`), the intake
/// naming someone else than the site did; returns MSC's handover message and the relayed one after.
async fn hand_over_with(world: &World, bearer: &str) -> (Value, Value) {
    world.handover_goes_through(FIRST, json!({})).await;
    let (status, first) = say(world, bearer, json!({"text": "hello"})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let bound = first["token"].as_str().unwrap().to_owned();
    say(world, &bound, json!({"sessionId": FIRST, "text": "agent"})).await;
    world
        .end_slot(
            FIRST,
            json!([{"name": "name", "value": "Typed Name"}, {"name": "email", "value": "typed@example.com"}]),
        )
        .await;
    let (status, relayed) = say(
        world,
        &bound,
        json!({"sessionId": FIRST, "text": "still there?"}),
    )
    .await;
    assert_eq!(
        (status, relayed["handledBy"].clone()),
        (StatusCode::OK, json!("agent"))
    );
    let posted = world.msc_messages().await;
    assert_eq!(posted.len(), 2, "the handover and the relay: {posted:?}");
    (posted[0].clone(), posted[1].clone())
}

/// The channel's backend vouches for the logged-in customer when it mints: MSC's relation is the
/// site's customer (by external id, with the verified name) on every message, and the agent reads which
/// fields the site verified and which the end user typed.
#[tokio::test]
async fn an_identity_from_the_backend_reaches_msc_as_the_customer() {
    let world = World::on(dynamodb_harness().await).await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    let identity = json!({"identity": {"externalId": "customer-42", "name": "Jane Doe", "email": "jane@example.com"}});
    let (status, minted) =
        read(send(&world.ingest, mint_with(identity, None, Some(CHANNEL_KEY))).await);
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let (handover, relay) = hand_over_with(&world, minted["token"].as_str().unwrap()).await;
    for message in [&handover, &relay] {
        assert_eq!(message["RelationExternalIdentifier"], "customer-42");
        assert_eq!(
            message["RelationName"], "Jane Doe",
            "the verified name, not the typed one"
        );
        assert_eq!(message["ConversationExternalIdentifier"], FIRST);
    }
    let content = handover["Content"].as_str().unwrap();
    assert!(
        content.contains(
            "Verified by the site:\nCustomer id: customer-42\nName: Jane Doe\nE-mail: jane@example.com"
        ),
        "{content}"
    );
    assert!(
        content.contains("Intake (typed by the end user, not verified):\nname: Typed Name"),
        "{content}"
    );
}

/// A page presents the identity its site's backend signed (`IDENTITY_SECRET`); a forged, expired,
/// too long-lived or unsigned one gets no token, and nothing is counted or stored.
#[tokio::test]
async fn a_page_presents_an_identity_its_site_signed() {
    let world = World::with_env(
        dynamodb_harness().await,
        &[
            ("ALLOWED_ORIGINS", SHOP),
            ("IDENTITY_SECRET", IDENTITY_SECRET),
        ],
    )
    .await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    let now = world.now();
    let page = |body: Value| mint_with(body, Some(SHOP), None);
    let refused = [
        (
            json!({"identityToken": signed_identity("not-the-sites-secret-at-all", json!({"sub": "customer-42", "exp": now + 600}))}),
            StatusCode::UNAUTHORIZED,
            "identity_not_verified",
        ),
        (
            json!({"identityToken": signed_identity(IDENTITY_SECRET, json!({"sub": "customer-42", "exp": now}))}),
            StatusCode::UNAUTHORIZED,
            "identity_not_verified",
        ),
        (
            json!({"identityToken": signed_identity(IDENTITY_SECRET, json!({"sub": "customer-42", "exp": now + 86_401}))}),
            StatusCode::UNAUTHORIZED,
            "identity_not_verified",
        ),
        (
            json!({"identityToken": signed_identity(IDENTITY_SECRET, json!({"sub": "customer 42", "exp": now + 600}))}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"identity": {"externalId": "customer-42"}}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (body, status, code) in refused {
        let (got, answer) = read(send(&world.ingest, page(body.clone())).await);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let signed = signed_identity(
        IDENTITY_SECRET,
        json!({"sub": "customer-42", "name": "Jane\u{202E} Doe", "exp": now + 600}),
    );
    let (status, minted) = read(send(&world.ingest, page(json!({"identityToken": signed}))).await);
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let (handover, _) = hand_over_with(&world, minted["token"].as_str().unwrap()).await;
    assert_eq!(handover["RelationExternalIdentifier"], "customer-42");
    assert_eq!(
        handover["RelationName"], "Jane Doe",
        "cleaned like every name"
    );
    let content = handover["Content"].as_str().unwrap();
    assert!(
        content.contains("Verified by the site:\nCustomer id: customer-42\nName: Jane Doe\n\n"),
        "{content}"
    );

    // Without IDENTITY_SECRET a signed identity cannot be checked: refused, not ignored.
    let unset = World::with_env(
        handover_tests::memory_harness().await,
        &[("ALLOWED_ORIGINS", SHOP)],
    )
    .await;
    let (status, answer) = read(send(&unset.ingest, page(json!({"identityToken": signed}))).await);
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("identity_not_verified"))
    );
}

/// A token's holder refreshes it before it expires: the same conversation and identity, a new
/// expiry; an expired token cannot, nor can the channel key.
#[tokio::test]
async fn a_token_is_refreshed_while_it_is_valid() {
    let world = World::with_env(
        dynamodb_harness().await,
        &[("CONVERSATION_TOKEN_SECS", "600")],
    )
    .await;
    world
        .caic_answers("hello", caic_reply(FIRST, "Hi!", json!({})))
        .await;
    let refresh = |bearer: &str| event("POST", "/v1/conversations/refresh", "", Some(bearer), "");
    let (_, first) = say(&world, &mint(&world).await, json!({"text": "hello"})).await;
    let bound = first["token"].as_str().unwrap().to_owned();
    world.clock.advance(500);
    let (status, fresh) = read(send(&world.ingest, refresh(&bound)).await);
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    world.clock.advance(200);
    assert_eq!(
        outbox(&world, &bound, FIRST).await,
        StatusCode::UNAUTHORIZED,
        "the old one expired"
    );
    assert_eq!(
        outbox(&world, &fresh, FIRST).await,
        StatusCode::OK,
        "the new one admits the same conversation"
    );
    assert_eq!(
        outbox(&world, &fresh, SECOND).await,
        StatusCode::FORBIDDEN,
        "and only it"
    );
    assert_eq!(
        read(send(&world.ingest, refresh(&bound)).await).0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = read(send(&world.ingest, refresh(CHANNEL_KEY)).await);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the channel key is no token to refresh"
    );
}
