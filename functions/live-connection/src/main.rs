//! Lambda entry point of live-connection: start once (configuration, secret, clients), then serve its router.

use handover_core::{startup, telemetry};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    lambda_http::run(startup::start_live_connection().await?).await
}
