//! Lambda entry point of msc-outbound: start once (configuration, secret, clients), then deliver each
//! batch of held messages Lambda's SQS poller hands over, answering with the ones that must come round
//! again (`ReportBatchItemFailures`). Invoked with SQS events, not HTTP requests, so this main runs the
//! Lambda runtime directly rather than a router.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use handover_core::flow::outbound;
use handover_core::{startup, telemetry};
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};

// One invocation at a time per instance: one thread is all a function needs, and it starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let deps = Arc::new(startup::start_msc_outbound().await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deps = deps.clone();
        async move {
            let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
            Ok::<_, lambda_runtime::Error>(
                outbound::on_event(&deps, &event.context.request_id, event.payload, deadline_ms)
                    .await,
            )
        }
    }))
    .await
}
