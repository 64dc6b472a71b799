//! Arbitrary bytes and arbitrary JSON through every handler's request parsing: never a panic, never a
//! 5xx, always a JSON error body naming a code. The peers are unreachable on purpose: a request that
//! got through parsing to a peer would answer 502/503, which the test tells apart from a parsing answer.

use handover_tests::memory_harness;
use handover_tests::world::*;
use proptest::prelude::*;
use serde_json::Value;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        let key = prop_oneof![
            Just("sessionId".to_owned()),
            Just("text".to_owned()),
            Just("slots".to_owned()),
            Just("name".to_owned()),
            Just("value".to_owned()),
            Just("endUser".to_owned()),
            Just("data".to_owned()),
            Just("context".to_owned()),
            ".{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        arbitrary_json().prop_map(|v| v.to_string()),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

fn route() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        Just(("POST", "/v1/messages".to_owned())),
        Just(("POST", "/v1/presence".to_owned())),
        Just(("GET", "/v1/presence".to_owned())),
        Just(("POST", "/v1/prechat/complete".to_owned())),
        "[A-Za-z0-9_%-]{0,12}".prop_map(|id| ("POST", format!("/v1/sessions/{id}/handover"))),
        Just(("PUT", "/v1/messages".to_owned())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_request_makes_a_handler_panic_or_fail(
        (method, path) in route(),
        body in body(),
        key in prop_oneof![Just(None), Just(Some(CHANNEL_KEY)), Just(Some(WEBHOOK_KEY)), Just(Some(OPERATOR_KEY))],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let world = World::with_env(memory_harness().await, &[
                ("CAIC_BASE_URL", handover_tests::faulty::REFUSED_URL),
                ("MSC_API_URL", handover_tests::faulty::REFUSED_URL),
                ("MSC_PRESENCE_URL", handover_tests::faulty::REFUSED_URL),
            ]).await;
            let req = event(method, &path, "", key, &body);
            let router = match path.as_str() {
                "/v1/messages" => &world.ingest,
                "/v1/presence" => &world.presence,
                "/v1/prechat/complete" => &world.prechat,
                _ => &world.handover,
            };
            let response = send(router, req).await;
            let (status, reply) = read(response);
            // 502 is CAIC being unreachable for a well-formed message; 500 and 503 must not happen.
            assert!(status.as_u16() != 500 && status.as_u16() != 503, "{method} {path} {body:?} → {status} {reply}");
            if !status.is_success() {
                assert!(reply["error"]["code"].is_string(), "{status} {reply}");
            }
        });
    }
}
