//! The agent's side of a handover: MSC's replies and conversation events, the operator's release, the
//! end after inactivity, and what the channel reads back.

use std::sync::Arc;

use crate::channel::ChannelPush;
use crate::clock::Clock;
use crate::domain::{
    since, AgentReply, EndReason, HandoverChange, OutboxMessage, Session, SessionState,
};
use crate::store::{Amended, Linked, SessionStore, StoreError};

/// Everything the agent side touches.
#[derive(Clone)]
pub struct AgentDeps {
    pub store: Arc<dyn SessionStore>,
    pub channel: Arc<dyn ChannelPush>,
    pub clock: Arc<dyn Clock>,
    /// `RELEASE_ON_ARCHIVE`.
    pub release_on_archive: bool,
}

/// What became of an agent's reply. Every outcome is acknowledged to MSC, so it stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Into the outbox, and pushed to the channel when it has a webhook.
    Delivered,
    /// That `MessageExternalIdentifier` was delivered before.
    Duplicate,
    /// An agent's internal note: never shown to the end user.
    PrivateNote,
    /// The session is not handed over (ended, expired, unknown): nothing delivered.
    NotHandedOver,
}

impl ReplyOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReplyOutcome::Delivered => "delivered",
            ReplyOutcome::Duplicate => "duplicate",
            ReplyOutcome::PrivateNote => "private_note",
            ReplyOutcome::NotHandedOver => "not_handed_over",
        }
    }
}

/// An agent's reply for the conversation `session_id` (MSC's `ConversationExternalIdentifier`).
pub async fn agent_reply(
    deps: &AgentDeps,
    session_id: &str,
    reply: AgentReply,
    is_private: bool,
) -> Result<ReplyOutcome, StoreError> {
    if is_private {
        tracing::info!("agent's private note acknowledged, not delivered");
        return Ok(ReplyOutcome::PrivateNote);
    }
    let message_id = reply.message_id.clone();
    let mut reply = reply;
    if let Some(guid) = reply.conversation_guid.take() {
        // Linked first, adopted after: a conversation that is another session's never becomes this
        // one's (its relays would reach the other end user's agent, its archive would end this one).
        match deps.store.link_msc_conversation(&guid, session_id).await? {
            Linked::Linked => reply.conversation_guid = Some(guid),
            Linked::TakenByAnother => tracing::warn!(
                "MSC's conversation of this reply is linked to another session; the reply is \
                 delivered, the conversation not adopted"
            ),
        }
    }
    let change = HandoverChange::AgentReply(reply);
    let mut amended = deps.store.amend_handover(session_id, &change).await?;
    if let Amended::NotHandedOver(Some(unfinished)) = &amended {
        if unfinished.state == SessionState::HandingOver {
            // An agent answering proves MSC accepted the handover: its holder crashed, or could not
            // write the lock, after MSC's 201. Finish the lock with the claim's own token (a holder
            // still running recognises its token) rather than drop the reply; what waited behind
            // the claim goes with the next end-user turn.
            tracing::warn!("agent reply for an unfinished claim; finishing the lock");
            // Refused is as good as applied when the lock is there now (a concurrent reply, the holder
            // itself, or this very write retried after a lost response): the amendment decides.
            deps.store.complete(session_id, &unfinished.token).await?;
            amended = deps.store.amend_handover(session_id, &change).await?;
        }
    }
    let session = match amended {
        Amended::Applied(session) => session,
        Amended::Unchanged(_) => {
            tracing::info!("agent reply delivered before; acknowledged again");
            return Ok(ReplyOutcome::Duplicate);
        }
        Amended::NotHandedOver(found) => {
            tracing::warn!(
                state = ?found.map(|s| s.state),
                "agent reply for a session that is not handed over; acknowledged, not delivered"
            );
            return Ok(ReplyOutcome::NotHandedOver);
        }
    };
    let push = async {
        if let Some(message) = session.agent.outbox.iter().find(|m| m.id == message_id) {
            deps.channel.push(session_id, message).await;
        }
    };
    push.await;
    crate::metrics::count("AgentRepliesDelivered");
    Ok(ReplyOutcome::Delivered)
}

/// What became of a conversation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// The handover ended: back to the bot.
    Ended,
    /// The agent who took the conversation was recorded.
    AgentJoined,
    /// Acknowledged and nothing else, for the reason given.
    Ignored(&'static str),
}

/// One of MSC's conversation events (its CDP webhook): `name` as MSC sends it, `conversation` its
/// `ConversationId` (the `ConversationGuid` of the agent's replies).
pub async fn conversation_event(
    deps: &AgentDeps,
    name: &str,
    conversation: Option<&str>,
    agent_name: Option<String>,
    at: i64,
) -> Result<EventOutcome, StoreError> {
    if !matches!(name, "ConversationArchived" | "ConversationStarted") {
        return Ok(EventOutcome::Ignored("not an event the handover acts on"));
    }
    let Some(conversation) = conversation else {
        return Ok(EventOutcome::Ignored("no ConversationId"));
    };
    let Some(session_id) = deps.store.find_msc_conversation(conversation).await? else {
        // Known only once the agent has replied (the reply carries the GUID).
        return Ok(EventOutcome::Ignored(
            "conversation not linked to a session",
        ));
    };
    tracing::Span::current().record("session_id", session_id.as_str());
    crate::metrics::session(&session_id);
    let conversation = conversation.to_owned();
    let change = if name == "ConversationArchived" {
        if !deps.release_on_archive {
            return Ok(EventOutcome::Ignored(
                "RELEASE_ON_ARCHIVE is off: locked until inactivity",
            ));
        }
        HandoverChange::Closed { conversation }
    } else {
        HandoverChange::AgentJoined {
            conversation,
            agent_name,
            at,
        }
    };
    let amended = deps.store.amend_handover(&session_id, &change).await?;
    Ok(match amended {
        Amended::Applied(ended) if change.end_reason().is_some() => {
            announce_end(deps.channel.as_ref(), &session_id, &ended).await;
            EventOutcome::Ended
        }
        Amended::Applied(_) | Amended::Unchanged(_) => EventOutcome::AgentJoined,
        Amended::NotHandedOver(Some(current)) if current.state == SessionState::HandedOver => {
            tracing::warn!("MSC's event names an earlier conversation of this session; ignored");
            EventOutcome::Ignored("the conversation is not this handover's")
        }
        Amended::NotHandedOver(_) => EventOutcome::Ignored("not handed over"),
    })
}

/// Ends a handover for `reason`: the bot answers from now on, and the channel is told. `None` when
/// the session was not handed over.
pub async fn end_handover(
    store: &dyn SessionStore,
    channel: &dyn ChannelPush,
    session_id: &str,
    reason: EndReason,
) -> Result<Option<Session>, StoreError> {
    match store
        .amend_handover(session_id, &HandoverChange::End(reason))
        .await?
    {
        Amended::Applied(ended) => {
            announce_end(channel, session_id, &ended).await;
            Ok(Some(ended))
        }
        Amended::Unchanged(_) | Amended::NotHandedOver(_) => Ok(None),
    }
}

/// The end is logged, counted and pushed to the channel.
async fn announce_end(channel: &dyn ChannelPush, session_id: &str, ended: &Session) {
    let reason = ended.agent.end_reason.map_or("unknown", |r| r.as_str());
    tracing::info!(end_reason = reason, "handover ended");
    crate::metrics::count_outcome("HandoversEnded", "Reason", reason);
    if let Some(message) = ended.agent.outbox.last() {
        channel.push(session_id, message).await;
    }
}

/// Who answers a session now, as the channel sees it.
pub fn handled_by_agent(session: Option<&Session>, now: i64) -> bool {
    session.is_some_and(|s| s.state == SessionState::HandedOver && s.is_live(now))
}

/// The channel's view: the messages after `after`, in the order MSC sent them.
pub fn messages_since(session: Option<&Session>, after: u64) -> Vec<&OutboxMessage> {
    session.map_or_else(Vec::new, |s| since(&s.agent.outbox, after))
}
