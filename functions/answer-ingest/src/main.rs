//! Lambda entry point: build the dependencies once at cold start, then serve `handover_core::api::answer_ingest`.

use handover_core::api::answer_ingest;
use handover_core::{telemetry, wiring};
use lambda_http::{run, service_fn, Error, Request};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = wiring::environment()
        .await
        .inspect_err(|err| tracing::error!(error = %err, "cannot start"))?;
    let clock = wiring::system_clock();
    let deps = async {
        let store = wiring::session_store(&env, clock.clone(), false).await?;
        wiring::answer_ingest_deps(&env, store, clock, wiring::http_client()?)
    }
    .await
    .inspect_err(|err| tracing::error!(error = %err, "cannot start"))?;
    run(service_fn(|req: Request| {
        let deps = &deps;
        async move { Ok::<_, Error>(answer_ingest::handle(deps, req).await) }
    }))
    .await
}
