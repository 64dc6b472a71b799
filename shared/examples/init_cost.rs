//! Where a cold start's time goes: each piece of the functions' init, timed on its own.
//! `cargo run --release -p handover-core --example init_cost`

use std::time::Instant;

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let value = f();
    println!("{label:<40} {:>10.3} ms", t.elapsed().as_secs_f64() * 1e3);
    value
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    timed("telemetry init", handover_core::telemetry::init);
    let provider = timed("aws-lc-rs provider (first use)", || {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::ClientConfig::builder_with_provider(provider.clone().into())
            .with_safe_default_protocol_versions()
            .map(|_| provider)
    });
    let native = timed(
        "load native root certs (files)",
        rustls_native_certs::load_native_certs,
    );
    timed("parse native roots into a RootCertStore", || {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(native.certs.clone())
    });
    timed("compiled-in roots (webpki-roots)", || {
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
    });
    drop(provider);
    let client = timed(
        "reqwest client (wiring::http_client)",
        handover_core::wiring::http_client,
    );
    assert!(client.is_ok());
    let t = Instant::now();
    let sdk = handover_core::wiring::sdk_config()
        .await
        .expect("sdk config");
    println!(
        "{:<40} {:>10.3} ms",
        "sdk config (wiring::sdk_config)",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Not timed a second time: sdk_config is built once per process and then handed out.
    timed("dynamodb client", || aws_sdk_dynamodb::Client::new(&sdk));
}
