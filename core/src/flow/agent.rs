//! The agent's side of a handover: MSC's replies and conversation events, the operator's release, the
//! end after inactivity, and what the channel reads back.

use std::sync::Arc;

use crate::channel::ChannelPush;
use crate::clock::Clock;
use crate::domain::files::{cleaned_name, FileRef, FileRefused};
use crate::domain::{
    since, AgentReply, EndReason, HandoverChange, OutboxMessage, Session, SessionState,
};
use crate::files::FileError;
use crate::store::{Amended, Linked, SessionStore, StoreError};

/// Everything the agent side touches.
#[derive(Clone)]
pub struct AgentDeps {
    pub store: Arc<dyn SessionStore>,
    pub channel: Arc<dyn ChannelPush>,
    pub clock: Arc<dyn Clock>,
    /// `RELEASE_ON_ARCHIVE`.
    pub release_on_archive: bool,
    /// Where an agent's files are kept for the end user, and which are carried.
    pub files: crate::files::Files,
}

/// One file of an agent's reply as MSC sent it: its name, and its bytes (`Err`: not Base64).
pub struct AgentFile {
    pub name: String,
    pub bytes: Result<Vec<u8>, ()>,
}

/// A file that did not come through, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedFile {
    pub name: String,
    pub reason: FileRefused,
}

/// An agent's files: those kept for the end user, and those refused.
#[derive(Debug, Default)]
pub struct KeptFiles {
    pub files: Vec<FileRef>,
    pub refused: Vec<RefusedFile>,
}

/// Checks each of an agent's files and keeps those that pass in the file store, under keys that stay
/// the same when MSC delivers the reply again. Kept before the reply is written, so that no message
/// ever names a file that is not there; `Err` when the store could not keep them (MSC may retry).
pub async fn keep_agent_files(
    deps: &AgentDeps,
    session_id: &str,
    message_id: &str,
    files: Vec<AgentFile>,
) -> Result<KeptFiles, FileError> {
    let mut kept = KeptFiles::default();
    let mut puts = Vec::new();
    for (n, file) in files.into_iter().enumerate() {
        let checked = file
            .bytes
            .map_err(|()| FileRefused::NotBase64)
            .and_then(|bytes| {
                deps.files
                    .rules
                    .check(&bytes, None)
                    .map(|content_type| (bytes, content_type))
            });
        match checked {
            Ok((bytes, content_type)) => {
                let reference = FileRef {
                    key: crate::files::agent_file_key(session_id, message_id, n),
                    name: cleaned_name(&file.name, &content_type),
                    size: bytes.len() as u64,
                    content_type,
                };
                puts.push((reference.key.clone(), bytes, reference.content_type.clone()));
                kept.files.push(reference);
            }
            Err(reason) => {
                tracing::warn!(reason = reason.reason(), "an agent's file was refused");
                crate::metrics::count_outcome("FilesRefused", "Reason", reason.reason());
                kept.refused.push(RefusedFile {
                    name: cleaned_name(&file.name, "application/octet-stream"),
                    reason,
                });
            }
        }
    }
    let stored = puts
        .into_iter()
        .map(|(key, bytes, content_type)| async move {
            deps.files.store.put(&key, bytes, &content_type).await
        });
    for result in futures::future::join_all(stored).await {
        result?;
    }
    for _ in &kept.files {
        crate::metrics::count_outcome("FilesCarried", "From", "agent");
    }
    Ok(kept)
}

/// What became of an agent's reply. Every outcome is acknowledged to MSC, so it stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
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
    pub fn as_str(self) -> &'static str {
        self.into()
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
    let guid = reply.conversation_guid.clone();
    let change = HandoverChange::AgentReply(reply);
    // The pages' connections are looked up beside the write, so the push to them need not wait for
    // the announcement after it (see `live::LivePush::push_ahead`).
    let (amended, ahead) = tokio::join!(
        deps.store.amend_handover(session_id, &change),
        deps.channel.look_ahead(session_id)
    );
    let mut amended = amended?;
    if let Amended::NotHandedOver(Some(unfinished)) = &amended {
        if unfinished.state == SessionState::HandingOver {
            // An agent answering proves MSC accepted the handover: its holder crashed, or could not
            // write the lock, after MSC's 201. Finish the lock with the claim's own token (a holder
            // still running recognises its token) rather than drop the reply, whether or not the
            // claim's lease ran out meanwhile (a take-over would have changed the token); what waited
            // behind the claim goes with the next end-user turn.
            tracing::warn!("agent reply for an unfinished claim; finishing the lock");
            // Refused is as good as applied when the lock is there now (a concurrent reply, the holder
            // itself, or this very write retried after a lost response): the amendment decides.
            deps.store.complete(session_id, &unfinished.token).await?;
            amended = deps.store.amend_handover(session_id, &change).await?;
        }
    }
    let session = match amended {
        Amended::Applied(session) => session,
        Amended::Unchanged(session) => {
            tracing::info!("agent reply delivered before; acknowledged again");
            // The first delivery may have been cut short before its link: MSC's retry finishes it.
            link_conversation(deps, session_id, &session, guid.as_deref()).await;
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
            deps.channel.push_ahead(session_id, message, ahead).await;
        }
    };
    // The push does not wait for the link: the reply is in the outbox already.
    tokio::join!(
        push,
        link_conversation(deps, session_id, &session, guid.as_deref())
    );
    crate::metrics::count("AgentRepliesDelivered");
    Ok(ReplyOutcome::Delivered)
}

/// A link is written again when it is older than this, so that it outlives any handover that stays
/// active (the link lasts `MSC_LINK_SECS` from its last write) without a write per reply.
const LINK_REFRESH_SECS: i64 = 86_400;

/// Makes MSC's conversation `guid` this session's: MSC's events name only it, and relayed messages
/// carry it. Linked first (a conditional write, refused when the conversation is another session's),
/// adopted after, so one session's agent can never reach into another's. Nothing here fails the reply:
/// a link that could not be written is tried again by the next reply.
async fn link_conversation(
    deps: &AgentDeps,
    session_id: &str,
    session: &Session,
    guid: Option<&str>,
) {
    let Some(guid) = guid else {
        return;
    };
    let now = deps.clock.now();
    match (&session.agent.msc_conversation, session.agent.msc_linked_at) {
        (Some(linked), Some(at))
            if linked == guid && now.saturating_sub(at) < LINK_REFRESH_SECS =>
        {
            return
        }
        (Some(linked), _) if linked != guid => {
            tracing::warn!(
                "agent reply names another MSC conversation than this handover's; not linked"
            );
            return;
        }
        _ => {}
    }
    match deps.store.link_msc_conversation(guid, session_id).await {
        Ok(Linked::Linked) => {
            let adopted = HandoverChange::Linked {
                conversation: guid.to_owned(),
                at: now,
            };
            if let Err(err) = deps.store.amend_handover(session_id, &adopted).await {
                tracing::warn!(error = %err, "could not record MSC's conversation on the session");
            }
        }
        Ok(Linked::TakenByAnother) => tracing::warn!(
            "MSC's conversation of this reply is linked to another session; the reply is delivered, \
             the conversation not adopted"
        ),
        Err(err) => tracing::warn!(error = %err, "could not link MSC's conversation to the session"),
    }
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
        // The agent who took the conversation, told to the end user (the change wrote that message).
        Amended::Applied(joined) => {
            if let Some(message) = joined.agent.outbox.last() {
                deps.channel.push(&session_id, message).await;
            }
            EventOutcome::AgentJoined
        }
        Amended::Unchanged(_) => EventOutcome::AgentJoined,
        Amended::NotHandedOver(Some(current))
            if current.state == SessionState::HandedOver && current.is_live(deps.clock.now()) =>
        {
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
pub(crate) async fn announce_end(channel: &dyn ChannelPush, session_id: &str, ended: &Session) {
    let reason = ended.agent.end_reason.map_or("unknown", |r| r.as_str());
    tracing::info!(end_reason = reason, "handover ended");
    crate::metrics::count_outcome("HandoversEnded", "Reason", reason);
    if let Some(message) = ended.agent.outbox.last() {
        channel.push(session_id, message).await;
    }
}

/// Who answers a session now, as the channel and the operator see it.
pub fn handled_by(session: Option<&Session>, now: i64) -> super::HandledBy {
    if session.is_some_and(|s| s.state == SessionState::HandedOver && s.is_live(now)) {
        super::HandledBy::Agent
    } else {
        super::HandledBy::Bot
    }
}

/// The channel's view: the messages after `after`, in the order MSC sent them.
pub fn messages_since(session: Option<&Session>, after: u64) -> Vec<&OutboxMessage> {
    session.map_or_else(Vec::new, |s| since(&s.agent.outbox, after))
}
