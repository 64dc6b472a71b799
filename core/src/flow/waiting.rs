//! Nobody came: after MSC accepted a handover, an end user whom no agent has joined or answered within
//! `AGENT_WAIT_SECS` is told so, once per wait, and may keep waiting (then asked again after another
//! wait, at most `AGENT_WAIT_ASKS` times) or go back to the bot (the handover ends, `no_agent`, and
//! MSC's conversation gets a private note saying the end user left). The timers are
//! [`crate::waits`]'; every decision is one conditional amendment of the session, so a timer firing
//! twice tells the end user once, and an agent coming at the moment the end user leaves gives one
//! outcome or the other, never both.

use std::sync::Arc;

use super::{for_msc, relation_of, Routed};
use crate::channel::ChannelPush;
use crate::clock::Clock;
use crate::domain::{EndReason, HandoverChange, Session, SessionId, WaitChoice};
use crate::hours::{BusinessHours, Hours};
use crate::outbound::{Held, Outbound};
use crate::store::{Amended, SessionStore, StoreError};
use crate::telemetry::ErrorChain;
use crate::waits::AgentWait;

/// What the end of a wait touches (the agent-wait function, and the local runner's timers).
#[derive(Clone)]
pub struct WaitDeps {
    pub store: Arc<dyn SessionStore>,
    pub channel: Arc<dyn ChannelPush>,
    pub clock: Arc<dyn Clock>,
    pub hours: Arc<BusinessHours>,
    pub default_channel: String,
}

/// What the end of a wait did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The end user was told that nobody came, and offered the choice.
    Told,
    /// Nothing, for the reason given: an agent came, the handover ended or is another's, or this
    /// round was told already (the timer fired twice).
    Nothing(&'static str),
}

/// A wait ran out: unless an agent came meanwhile (or the handover ended, or this very wait was acted
/// on already), the end user gets one system message with the choice, pushed as every message is.
pub async fn wait_over(deps: &WaitDeps, wait: &AgentWait) -> Result<WaitOutcome, StoreError> {
    let Ok(session_id) = SessionId::parse(&wait.session_id) else {
        return Ok(WaitOutcome::Nothing("not a session id"));
    };
    tracing::Span::current().record("session_id", session_id.as_str());
    crate::metrics::session(&session_id);
    let now = deps.clock.now();
    let channel = wait.channel.as_deref().unwrap_or(&deps.default_channel);
    let opens_at = match deps.hours.at(channel, wait.skill.as_deref(), now) {
        Hours::Closed { opens_at } => opens_at,
        Hours::Open => None,
    };
    let change = HandoverChange::NobodyCame {
        handover: wait.handover.clone(),
        round: wait.round,
        opens_at,
    };
    Ok(
        match deps.store.amend_handover(&session_id, &change).await? {
            Amended::Applied(told) => {
                tracing::info!(
                    round = wait.round,
                    "no agent came in time; the end user is asked"
                );
                if wait.round == 1 {
                    crate::metrics::count("HandoversUnanswered");
                }
                if let Some(message) = told.agent.outbox.last() {
                    deps.channel.push(&session_id, message).await;
                }
                WaitOutcome::Told
            }
            Amended::Unchanged(_) => {
                tracing::info!("an agent came, or this wait was acted on before; nothing to tell");
                WaitOutcome::Nothing("an agent came, or told already")
            }
            Amended::NotHandedOver(_) => WaitOutcome::Nothing("not handed over"),
        },
    )
}

/// What the end user's choice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ChoiceOutcome {
    /// Waiting on; asked again after another wait if asks remain.
    KeptWaiting,
    /// The handover ended (`no_agent`): the bot answers from the next message on.
    BackToBot,
    /// Nothing changed: an agent came first, the handover is not waiting for one, or the choice was
    /// made already (another tab, a second click).
    TooLate,
}

impl ChoiceOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the end user chose, and who answers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub outcome: ChoiceOutcome,
    pub routed: Routed,
}

/// The end user's answer to "nobody came yet" (`POST /v1/messages` with `choice`).
pub async fn choose(
    deps: &super::IngestDeps,
    session_id: &SessionId,
    choice: WaitChoice,
) -> Result<Chosen, StoreError> {
    let change = match choice {
        WaitChoice::KeepWaiting => HandoverChange::KeepWaiting,
        WaitChoice::BackToBot => HandoverChange::BackToBot,
    };
    let amended = deps.store.amend_handover(session_id, &change).await?;
    let now = deps.clock.now();
    let session = match amended {
        Amended::Applied(session) => session,
        Amended::Unchanged(current) => {
            tracing::info!(choice = choice.as_str(), "choice too late: nothing changed");
            let routed = match super::agent::handled_by(Some(&current), now) {
                super::HandledBy::Agent => Routed::Agent,
                super::HandledBy::Bot => Routed::Bot,
            };
            return Ok(Chosen {
                outcome: ChoiceOutcome::TooLate,
                routed,
            });
        }
        Amended::NotHandedOver(_) => {
            tracing::info!(
                choice = choice.as_str(),
                "choice for a handover that is over"
            );
            return Ok(Chosen {
                outcome: ChoiceOutcome::TooLate,
                routed: Routed::Bot,
            });
        }
    };
    crate::metrics::count_outcome("WaitChoices", "Choice", choice.as_str());
    Ok(match choice {
        WaitChoice::KeepWaiting => {
            deps.waits
                .start(&session, session.agent.wait_asks + 1, now)
                .await;
            Chosen {
                outcome: ChoiceOutcome::KeptWaiting,
                routed: Routed::Agent,
            }
        }
        WaitChoice::BackToBot => {
            // The end user hears of it first; then the agents' side is told, best effort.
            tokio::join!(
                super::agent::announce_end(deps.channel.as_ref(), session_id, &session),
                note_that_the_end_user_left(deps.outbound.as_ref(), &session, now)
            );
            Chosen {
                outcome: ChoiceOutcome::BackToBot,
                routed: Routed::Bot,
            }
        }
    })
}

/// A private note in MSC's conversation, so that an agent who opens it later knows the end user is not
/// waiting any more, held for MSC as every message is. Its id is the handover's, so a repeat is one
/// note. A note that is not held is logged: the end user is with the bot either way.
async fn note_that_the_end_user_left(outbound: &dyn Outbound, session: &Session, now: i64) {
    debug_assert_eq!(session.agent.end_reason, Some(EndReason::NoAgent));
    let accepted_at = session
        .history
        .iter()
        .rev()
        .find(|event| event.event == "msc_accepted")
        .map_or(session.started_at, |event| event.at);
    let minutes = now.saturating_sub(accepted_at).max(0) / 60;
    let content = format!(
        "The customer waited {minutes} min without a colleague and went back to the chatbot. \
         No answer is needed; a message sent now does not reach them."
    );
    let id = format!("{}-left-{}", session.session_id, session.intake_id);
    let mut note = for_msc(session, id, relation_of(session), content, now);
    note.is_private = true;
    if let Err(err) = outbound.hold(&[Held::now(note, None)]).await {
        tracing::warn!(error = %ErrorChain(&err), "the note that the end user left was not held");
    }
}

/// The agent-wait function's name, in its metrics.
pub const AGENT_WAIT_FUNCTION: &str = "agent-wait";

/// One invocation of agent-wait: the event is the [`AgentWait`] its schedule carries (the local runner
/// hands the same over). A malformed event is logged and answered `ignored` (a retry could not fix it);
/// a store that cannot be reached fails the invocation, so that Scheduler retries it.
pub async fn on_event(
    deps: &WaitDeps,
    request_id: &str,
    event: serde_json::Value,
) -> Result<serde_json::Value, StoreError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "wait",
        request_id = %request_id,
        session_id = tracing::field::Empty
    );
    let work = async {
        let wait: AgentWait = match serde_json::from_value(event) {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(error = %err, "not a wait for an agent; ignored");
                return Ok(serde_json::json!({"outcome": "ignored"}));
            }
        };
        let outcome = wait_over(deps, &wait).await.inspect_err(|err| {
            tracing::error!(error = %err, "the wait could not be checked; the scheduler retries");
        })?;
        Ok(match outcome {
            WaitOutcome::Told => serde_json::json!({"outcome": "told"}),
            WaitOutcome::Nothing(why) => serde_json::json!({"outcome": "nothing", "reason": why}),
        })
    };
    crate::metrics::per_event(AGENT_WAIT_FUNCTION, work.instrument(span)).await
}
