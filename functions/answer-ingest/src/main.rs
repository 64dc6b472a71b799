//! Lambda entry point: build the dependencies once at cold start, then serve `handover_core::api::answer_ingest`.

use handover_core::api::answer_ingest;
use handover_core::{telemetry, wiring};
use lambda_http::{run, service_fn, Error, Request};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let deps = wiring::start_with_store(wiring::answer_ingest_deps).await?;
    run(service_fn(|req: Request| {
        let deps = &deps;
        async move { Ok::<_, Error>(answer_ingest::handle(deps, req).await) }
    }))
    .await
}
