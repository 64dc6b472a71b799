//! Lambda entry point of agent-wait: start once (configuration, secret, clients), then check each wait
//! for an agent that EventBridge Scheduler hands over. Scheduler invokes the function with the
//! schedule's input as a plain event, not an HTTP request, so this main runs the Lambda runtime
//! directly rather than a router.

use std::sync::Arc;

use handover_core::flow::waiting;
use handover_core::{startup, telemetry};
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let deps = Arc::new(startup::start_agent_wait().await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            waiting::on_event(&deps, &event.context.request_id, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
