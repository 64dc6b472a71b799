//! `AWS_CA_BUNDLE`: outbound TLS trusts a deployment's extra certificate authorities besides the
//! compiled-in roots, and a bundle that cannot be used stops the start with a message naming it.

use handover_core::clients::new_http_client;
use handover_tests::tls::{serve_ok, TestCa};

#[tokio::test]
async fn a_peer_signed_by_the_bundled_ca_is_trusted() {
    let ca = TestCa::generate();
    let url = serve_ok(&ca).await;
    let client = new_http_client(Some(ca.bundle())).expect("client");
    let response = client.get(&url).send().await.expect("TLS request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn without_the_bundle_the_same_peer_is_refused() {
    let ca = TestCa::generate();
    let url = serve_ok(&ca).await;
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
