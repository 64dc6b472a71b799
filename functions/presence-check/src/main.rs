//! Lambda entry point: build the dependencies once at cold start, then serve `handover_core::api::presence_check`.

use handover_core::api::presence_check;
use handover_core::{telemetry, wiring};
use lambda_http::{run, service_fn, Error, Request};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let deps = wiring::start(wiring::presence_check_deps).await?;
    run(service_fn(|req: Request| {
        let deps = &deps;
        async move { Ok::<_, Error>(presence_check::handle(deps, req).await) }
    }))
    .await
}
