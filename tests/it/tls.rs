//! `AWS_CA_BUNDLE`: outbound TLS trusts a deployment's extra certificate authorities besides the
//! compiled-in roots, and a bundle that cannot be used stops the start with a message naming it.
//! A peer's client opens its connection ahead of the first request and sends nothing until then.

use std::time::Duration;

use handover_core::clients::{new_http_client, peer_client};
use handover_core::open_ahead::open_ahead;
use handover_tests::tls::{serve_ok, TestCa};

#[tokio::test]
async fn a_peer_signed_by_the_bundled_ca_is_trusted() {
    let ca = TestCa::generate();
    let url = serve_ok(&ca).await.url;
    let client = new_http_client(Some(ca.bundle())).expect("client");
    let response = client.get(&url).send().await.expect("TLS request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn without_the_bundle_the_same_peer_is_refused() {
    let ca = TestCa::generate();
    let url = serve_ok(&ca).await.url;
    let client = new_http_client(None).expect("client");
    let err = client
        .get(&url)
        .send()
        .await
        .expect_err("an unknown CA is not trusted");
    assert!(err.is_connect(), "{err:?}");
    assert!(
        format!("{err:?}").contains("UnknownIssuer"),
        "refused for its issuer: {err:?}"
    );
}

#[test]
fn an_unusable_bundle_stops_the_start_and_names_the_setting() {
    let missing = std::env::temp_dir().join("handover-no-such-bundle.pem");
    let err = new_http_client(Some(&missing)).expect_err("a missing file");
    assert!(err.to_string().contains("AWS_CA_BUNDLE"), "{err}");

    let empty = std::env::temp_dir().join(format!(
        "handover-empty-bundle-{}.pem",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let err = new_http_client(Some(&empty)).expect_err("a file without certificates");
    let _ = std::fs::remove_file(&empty);
    assert!(err.to_string().contains("no usable certificate"), "{err}");
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} within 2 s");
}

#[tokio::test]
async fn a_connection_opened_ahead_carries_the_first_request_and_nothing_goes_before_it() {
    let ca = TestCa::generate();
    let server = serve_ok(&ca).await;
    let client = peer_client(Some(ca.bundle())).expect("client");

    open_ahead(&client, &server.url);
    until("the connection opened ahead", || server.connections() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests(), 0, "opening ahead sends no request");

    for _ in 0..3 {
        let response = client.get(&server.url).send().await.expect("request");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(
        server.connections(),
        1,
        "the requests went over the connection opened ahead"
    );
}

#[tokio::test]
async fn a_peer_down_while_opening_ahead_fails_the_first_request_as_it_would_have() {
    let ca = TestCa::generate();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let url = format!("https://{address}");
    let client = peer_client(Some(ca.bundle())).expect("client");

    open_ahead(&client, &url);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = client.get(&url).send().await.expect_err("nobody listens");
    assert!(err.is_connect(), "{err:?}");

    // Nothing of the failed opening is left: the client's next request connects as usual.
    let server = serve_ok(&ca).await;
    let response = client.get(&server.url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(server.connections(), 1);
}
