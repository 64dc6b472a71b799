//! Log setup: JSON lines in Lambda (CloudWatch reads fields from them), compact text elsewhere.

use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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

/// `directives` (as in `RUST_LOG`: `level` and `target=level` pairs, comma-separated; default and
/// fallback `info`) with the body-logging crates capped at `info`.
///
/// A target filter rather than tracing-subscriber's `EnvFilter`: span and field directives are not
/// needed here, and leaving out `EnvFilter` leaves its regular-expression engine out of every binary
/// (smaller code to load at each cold start; see docs/performance.md).
pub fn filter(directives: &str) -> Targets {
    let asked = match directives.trim() {
        "" => None,
        directives => directives.parse::<Targets>().ok(),
    }
    .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let logs_bodies = |target: &str| {
        BODY_LOGGING_CRATES.iter().any(|krate| {
            target
                .strip_prefix(krate)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
    };
    let mut filter = Targets::new();
    if let Some(default) = asked.default_level() {
        filter = filter.with_default(default);
    }
    for (target, level) in asked.iter() {
        let level = if logs_bodies(target) {
            level.min(LevelFilter::INFO)
        } else {
            level
        };
        filter = filter.with_target(target, level);
    }
    for krate in BODY_LOGGING_CRATES {
        filter = filter.with_target(
            *krate,
            effective_level(&asked, krate).min(LevelFilter::INFO),
        );
    }
    filter
}

/// The most verbose level `filter` lets through for `target`.
fn effective_level(filter: &Targets, target: &str) -> LevelFilter {
    [
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ]
    .into_iter()
    .find(|level| filter.would_enable(target, level))
    .map(LevelFilter::from_level)
    .unwrap_or(LevelFilter::OFF)
}

/// An error with its sources, `outer: inner: innermost`, for one log field.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub fn init() {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let format = tracing_subscriber::fmt::layer().with_target(false);
    let format = if in_lambda {
        format
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .boxed()
    } else {
        format.compact().boxed()
    };
    // try_init: a second call (tests, the local runner) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(format.with_filter(filter(&directives)))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(filter: &Targets, target: &str, level: Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn directives_are_honoured_and_body_logging_crates_never_go_below_info() {
        let trace = filter("trace");
        assert!(enabled(&trace, "handover_core::flow", Level::TRACE));
        assert!(!enabled(&trace, "aws_smithy_runtime::client", Level::DEBUG));
        assert!(enabled(&trace, "aws_smithy_runtime::client", Level::INFO));
        assert!(!enabled(&trace, "hyper_util", Level::TRACE));

        let explicit = filter(
            "warn,aws_sdk_dynamodb=trace,aws_smithy_runtime::client=trace,handover_core=debug",
        );
        assert!(!enabled(&explicit, "aws_sdk_dynamodb", Level::DEBUG));
        assert!(enabled(&explicit, "aws_sdk_dynamodb", Level::INFO));
        assert!(!enabled(
            &explicit,
            "aws_smithy_runtime::client::http",
            Level::DEBUG
        ));
        assert!(
            !enabled(&explicit, "hyper", Level::INFO),
            "capped crates stay at the default when it is quieter"
        );
        assert!(enabled(&explicit, "handover_core::store", Level::DEBUG));
        assert!(!enabled(&explicit, "tokio", Level::INFO));

        // A crate asked to be quieter than info stays quieter.
        let quiet = filter("info,reqwest=error");
        assert!(!enabled(&quiet, "reqwest::connect", Level::WARN));
        assert!(enabled(&quiet, "reqwest::connect", Level::ERROR));
    }

    #[test]
    fn empty_or_malformed_directives_mean_info() {
        for directives in ["", "  ", "handover_core=loud"] {
            let filter = filter(directives);
            assert!(
                enabled(&filter, "handover_core", Level::INFO),
                "{directives:?}"
            );
            assert!(
                !enabled(&filter, "handover_core", Level::DEBUG),
                "{directives:?}"
            );
        }
    }
}
