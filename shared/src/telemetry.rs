//! Log setup: JSON lines in Lambda (CloudWatch reads fields from them), compact text elsewhere.

use tracing_subscriber::EnvFilter;

/// Crates that log whole requests and responses (DynamoDB items with intake answers, auth headers)
/// below `info`. Whatever `RUST_LOG` asks for, they never log below `info`.
const BODY_LOGGING_CRATES: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_sdk_dynamodb",
    "aws_sdk_secretsmanager",
    "aws_runtime",
    "aws_sigv4",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "lambda_runtime",
    "lambda_http",
];

/// `directives` (as in `RUST_LOG`, default `info`) with the body-logging crates capped at `info`.
pub fn filter(directives: &str) -> EnvFilter {
    let directives = if directives.trim().is_empty() {
        "info"
    } else {
        directives
    };
    let mut filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    for krate in BODY_LOGGING_CRATES {
        if let Ok(cap) = format!("{krate}=info").parse() {
            filter = filter.add_directive(cap);
        }
    }
    filter
}

pub fn init() {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&directives))
        .with_target(false);
    // try_init: a second call (tests, the local runner) keeps the first subscriber.
    let _ = if in_lambda {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
