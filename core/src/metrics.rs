//! CloudWatch metrics as Embedded Metric Format: what one invocation counted and timed, written as one
//! JSON line on stdout when its response is ready. CloudWatch Logs turns the line into metrics
//! (namespace `Handover`, dimension `Function`, and an outcome where one applies); no API call, no
//! extra latency.
//!
//! Written here rather than with the `metrics` crate and `metrics_cloudwatch_embedded`: those keep a
//! process-wide registry and flush it on their own schedule, while the rule here is one line per
//! invocation, flushed before the response returns, and tied to the request's session for the tests
//! and the logs. An EMF line is one small JSON object.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Handover";

/// A metric, and the outcome dimension it carries (name, value), if any.
type Figure = (&'static str, Option<(&'static str, String)>);

/// One invocation's figures.
#[derive(Debug, Default)]
struct Invocation {
    function: &'static str,
    session_id: Option<String>,
    /// Each figure's value and unit.
    values: BTreeMap<Figure, (f64, &'static str)>,
}

tokio::task_local! {
    static INVOCATION: Mutex<Invocation>;
}

fn record(
    metric: &'static str,
    outcome: Option<(&'static str, &str)>,
    value: f64,
    unit: &'static str,
) {
    // Outside an invocation (a test calling the flow directly, start-up) there is nothing to report.
    let _ = INVOCATION.try_with(|invocation| {
        let mut invocation = invocation.lock().unwrap_or_else(|p| p.into_inner());
        let key = (
            metric,
            outcome.map(|(name, value)| (name, value.to_owned())),
        );
        let entry = invocation.values.entry(key).or_insert((0.0, unit));
        entry.0 += value;
    });
}

/// One more of `metric`.
pub fn count(metric: &'static str) {
    record(metric, None, 1.0, "Count");
}

/// One more of `metric`, with its outcome as the dimension `dimension` (e.g. `Reason`).
pub fn count_outcome(metric: &'static str, dimension: &'static str, outcome: &str) {
    record(metric, Some((dimension, outcome)), 1.0, "Count");
}

/// A duration, in milliseconds.
pub fn milliseconds(metric: &'static str, millis: f64) {
    record(metric, None, millis, "Milliseconds");
}

/// Names the session the invocation served, as a property of its line (not a dimension).
pub fn session(session_id: &str) {
    let _ = INVOCATION.try_with(|invocation| {
        invocation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .session_id = Some(session_id.to_owned());
    });
}

/// Where lines go: stdout, where Lambda hands them to CloudWatch Logs; tests put a collector here.
type Sink = Box<dyn Fn(&str) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends every line to `sink` instead of stdout (once per process; later calls change nothing).
#[cfg(any(test, feature = "test-util"))]
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

fn emit(line: &str) {
    match SINK.get() {
        Some(sink) => sink(line),
        None => println!("{line}"),
    }
}

/// A count a response asks for ([`per_invocation`] records it): the conversion of an error into its
/// response stays free of effects.
#[derive(Clone)]
pub struct Counted {
    metric: &'static str,
    dimension: &'static str,
    outcome: &'static str,
}

impl Counted {
    pub fn outcome(metric: &'static str, dimension: &'static str, outcome: &'static str) -> Self {
        Self {
            metric,
            dimension,
            outcome,
        }
    }
}

/// The layer that gives each request of `function` its figures and writes them when the response is
/// ready (nothing when nothing was counted).
pub async fn per_invocation(
    State(function): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    per_event(function, async {
        let response = next.run(request).await;
        if let Some(counted) = response.extensions().get::<Counted>() {
            count_outcome(counted.metric, counted.dimension, counted.outcome);
        }
        response
    })
    .await
}

/// [`per_invocation`] for any invocation's `work`, also one with an event rather than a request
/// (agent-wait, invoked by EventBridge Scheduler): its figures are written when it is done.
pub async fn per_event<T>(function: &'static str, work: impl std::future::Future<Output = T>) -> T {
    let invocation = Mutex::new(Invocation {
        function,
        ..Invocation::default()
    });
    let (output, invocation) = INVOCATION
        .scope(invocation, async {
            let output = work.await;
            let figures = INVOCATION
                .with(|i| std::mem::take(&mut *i.lock().unwrap_or_else(|p| p.into_inner())));
            (output, figures)
        })
        .await;
    if let Some(line) = line(&invocation, now_millis()) {
        emit(&line);
    }
    output
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The EMF line: one directive per set of dimensions, the values at the top level.
fn line(invocation: &Invocation, timestamp: i64) -> Option<String> {
    if invocation.values.is_empty() {
        return None;
    }
    let mut fields = Map::new();
    fields.insert("Function".into(), json!(invocation.function));
    if let Some(session_id) = &invocation.session_id {
        fields.insert("SessionId".into(), json!(session_id));
    }
    // Each metric by function, and those with an outcome also by function and outcome (alarms add up
    // the first, dashboards split by the second).
    let mut directives: BTreeMap<Vec<Vec<&str>>, Vec<Value>> = BTreeMap::new();
    for ((metric, outcome), (value, unit)) in &invocation.values {
        let mut dimensions = vec![vec!["Function"]];
        if let Some((dimension, outcome)) = outcome {
            // One line holds one value per dimension: a second outcome of the same kind in the same
            // invocation (which the flow does not produce) is counted without its outcome.
            match fields.get(*dimension) {
                Some(taken) if taken != outcome.as_str() => {}
                _ => {
                    fields.insert((*dimension).into(), json!(outcome));
                    dimensions.push(vec!["Function", dimension]);
                }
            }
        }
        let total = fields
            .get(*metric)
            .and_then(Value::as_f64)
            .unwrap_or_default()
            + value;
        fields.insert((*metric).into(), json!(total));
        directives
            .entry(dimensions)
            .or_default()
            .push(json!({"Name": metric, "Unit": unit}));
    }
    let metrics: Vec<Value> = directives
        .into_iter()
        .map(|(dimensions, metrics)| {
            json!({"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics})
        })
        .collect();
    fields.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp, "CloudWatchMetrics": metrics}),
    );
    Some(Value::Object(fields).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_holds_every_figure_with_its_dimensions() {
        let mut invocation = Invocation {
            function: "answer-ingest",
            session_id: Some("s-1".into()),
            ..Invocation::default()
        };
        invocation
            .values
            .insert(("HandoversStarted", None), (1.0, "Count"));
        invocation.values.insert(
            ("Presence", Some(("Result", "online".to_owned()))),
            (1.0, "Count"),
        );
        invocation
            .values
            .insert(("TimeToAgent", None), (1500.0, "Milliseconds"));
        let emitted: Value = serde_json::from_str(&line(&invocation, 7).unwrap()).unwrap();
        assert_eq!(emitted["Function"], "answer-ingest");
        assert_eq!(emitted["SessionId"], "s-1");
        assert_eq!(emitted["HandoversStarted"], 1.0);
        assert_eq!(emitted["Presence"], 1.0);
        assert_eq!(emitted["Result"], "online");
        assert_eq!(emitted["TimeToAgent"], 1500.0);
        assert_eq!(emitted["_aws"]["Timestamp"], 7);
        let directives = emitted["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert!(directives.iter().all(|d| d["Namespace"] == "Handover"));
        assert!(directives.iter().any(|d| d["Dimensions"]
            == json!([["Function"], ["Function", "Result"]])
            && d["Metrics"][0]["Name"] == "Presence"));
        assert_eq!(
            line(&Invocation::default(), 7),
            None,
            "nothing counted, no line"
        );
    }
}
