//! The wait for an agent: once MSC has accepted a handover, a timer per handover says when to check
//! whether an agent came (see [`crate::flow::waiting`]). The timer is an existing engine's, behind the
//! [`WaitTimers`] port: deployed, an EventBridge Scheduler one-time schedule ([`EventBridgeScheduler`])
//! that invokes the agent-wait function with the [`AgentWait`] as its event; locally, a tokio timer of
//! the runner's own ([`LocalTimers`]) that hands the wait to the same use case when it runs out.
//!
//! A schedule is never deleted by us: when an agent came or the handover ended meanwhile, it fires into
//! a check that changes nothing (one invocation and one read), and Scheduler deletes it after it ran
//! (`ActionAfterCompletion: DELETE`). Deleting it instead would put a Scheduler call on every agent's
//! first reply and an end, where the end user is waiting.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::SchedulerSettings;

/// One wait: for the handover `handover` (its intake id) of `session_id`, the `round`th time, ending
/// at `at` (epoch seconds). What a schedule carries as its target's input, and the agent-wait
/// function's event. The handover's MSC channel and skill ride along (routing data, no personal data)
/// so that the check can say when business hours open without reading the session twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentWait {
    pub session_id: String,
    pub handover: String,
    pub round: u32,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
}

impl AgentWait {
    /// The schedule's name: the same for the same wait (a repeat is refused as a conflict, so a retried
    /// completion starts no second timer), at most 64 characters of `[0-9A-Za-z_.-]` whatever the
    /// session id.
    pub fn schedule_name(&self) -> String {
        let digest = sha2::Sha256::digest(format!("{}\n{}", self.session_id, self.handover));
        format!("wait-{}-{}", hex::encode(&digest[..16]), self.round)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the wait for an agent could not be scheduled: {0}")]
pub struct TimerError(String);

/// Starts timers that end waits for an agent.
#[async_trait]
pub trait WaitTimers: Send + Sync {
    /// Starts the timer of `wait`; a timer for the same wait already there is as good as started.
    async fn start(&self, wait: &AgentWait) -> Result<(), TimerError>;
}

/// EventBridge Scheduler: a one-time schedule (`at(...)`, UTC, no flexible window) in the stack's
/// schedule group, invoking the agent-wait function with the wait as its input, deleted after it ran.
pub struct EventBridgeScheduler {
    client: aws_sdk_scheduler::Client,
    settings: SchedulerSettings,
}

impl EventBridgeScheduler {
    pub fn new(sdk: &aws_config::SdkConfig, settings: SchedulerSettings) -> Self {
        Self {
            client: aws_sdk_scheduler::Client::new(sdk),
            settings,
        }
    }
}

/// Scheduler's `at()` takes a local date and time without a zone; the zone is UTC.
fn at_expression(at: i64) -> Option<String> {
    jiff::Timestamp::from_second(at)
        .ok()
        .map(|at| format!("at({})", at.strftime("%Y-%m-%dT%H:%M:%S")))
}

#[async_trait]
impl WaitTimers for EventBridgeScheduler {
    async fn start(&self, wait: &AgentWait) -> Result<(), TimerError> {
        use aws_sdk_scheduler::types::{
            ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target,
        };
        let failed = |err: &dyn std::fmt::Display| TimerError(err.to_string());
        let expression = at_expression(wait.at).ok_or_else(|| failed(&"a time out of range"))?;
        let input = serde_json::to_string(wait).map_err(|err| failed(&err))?;
        let target = Target::builder()
            .arn(&self.settings.target_arn)
            .role_arn(&self.settings.role_arn)
            .input(input)
            // A missed check leaves the end user without the message; a late one is still worth it.
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(3)
                    .maximum_event_age_in_seconds(3_600)
                    .build(),
            )
            .build()
            .map_err(|err| failed(&err))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|err| failed(&err))?;
        let created = self
            .client
            .create_schedule()
            .name(wait.schedule_name())
            .group_name(&self.settings.group)
            .schedule_expression(expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conflict_exception()) =>
            {
                tracing::info!("the wait's schedule exists already");
                Ok(())
            }
            Err(err) => Err(TimerError(crate::telemetry::ErrorChain(&err).to_string())),
        }
    }
}

/// The local runner's timers: each wait is handed to the runner's receiver, which sleeps until it ends
/// and then runs the same check the agent-wait function runs.
pub struct LocalTimers(tokio::sync::mpsc::UnboundedSender<AgentWait>);

impl LocalTimers {
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<AgentWait>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        (Self(sender), receiver)
    }
}

#[async_trait]
impl WaitTimers for LocalTimers {
    async fn start(&self, wait: &AgentWait) -> Result<(), TimerError> {
        self.0
            .send(wait.clone())
            .map_err(|_| TimerError("the local timers stopped".into()))
    }
}

/// The timers and the settings of the wait, as the functions that hand over (and take the end user's
/// choice to keep waiting) carry them.
#[derive(Clone)]
pub struct Waits {
    /// Where waits are timed, and `AGENT_WAIT_SECS`: how long after MSC accepted (or the end user
    /// chose to keep waiting) the end user is told that nobody came. `None`: never (waits are off).
    pub timers: Option<(std::sync::Arc<dyn WaitTimers>, i64)>,
    /// `AGENT_WAIT_ASKS`: at most this many times per handover.
    pub asks: u32,
}

impl Waits {
    pub fn off() -> Self {
        Self {
            timers: None,
            asks: 0,
        }
    }

    /// Starts the wait of `round` for the handover `session` is in, from `now`, unless waits are off
    /// or `round` is past the asks. A timer that cannot be started is logged and counted: the handover
    /// stands, and the end user waits as before this feature.
    pub async fn start(&self, session: &crate::domain::Session, round: u32, now: i64) {
        let Some((timers, wait_secs)) = &self.timers else {
            return;
        };
        if round > self.asks {
            return;
        }
        let wait = AgentWait {
            session_id: session.session_id.clone(),
            handover: session.intake_id.clone(),
            round,
            at: now.saturating_add(*wait_secs),
            channel: session.channel.clone(),
            skill: session.skill.clone(),
        };
        match timers.start(&wait).await {
            Ok(()) => tracing::info!(round, at = wait.at, "waiting for an agent"),
            Err(err) => {
                tracing::error!(error = %err, "the wait for an agent was not scheduled");
                crate::metrics::count("AgentWaitsNotScheduled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_named_by_its_wait_within_schedulers_limits() {
        let wait = AgentWait {
            session_id: "s".repeat(128),
            handover: "intake".into(),
            round: 3,
            at: 0,
            channel: None,
            skill: None,
        };
        let name = wait.schedule_name();
        assert!(name.len() <= 64, "{name}");
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert!(name.ends_with("-3"));
        let other = AgentWait {
            handover: "another".into(),
            ..wait.clone()
        };
        assert_ne!(name, other.schedule_name());
        assert_eq!(name, wait.clone().schedule_name());
    }

    #[test]
    fn at_is_a_utc_time_without_a_zone() {
        assert_eq!(
            at_expression(1_796_630_400).as_deref(),
            Some("at(2026-12-07T08:00:00)")
        );
    }

    #[test]
    fn a_wait_travels_as_camel_case_json() {
        let wait = AgentWait {
            session_id: "s-1".into(),
            handover: "i-1".into(),
            round: 1,
            at: 60,
            channel: None,
            skill: Some("billing".into()),
        };
        assert_eq!(
            serde_json::to_value(&wait).unwrap(),
            serde_json::json!(
                {"sessionId": "s-1", "handover": "i-1", "round": 1, "at": 60, "skill": "billing"}
            )
        );
    }
}
