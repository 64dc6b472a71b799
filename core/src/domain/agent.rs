//! The agent's side of a handed-over conversation, and what the channel has to show: the agent's
//! replies and the end of the handover, in order. The rules here are applied by both store adapters
//! inside one conditional write (see `store::AgentStore::amend_handover`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{with_events, HistoryEvent, Session, SessionState};

/// At most this many messages are kept per session, and at most this many bytes of their texts and
/// names: the channel fetches them as they come, and the session item must stay well below
/// DynamoDB's 400 KB whatever MSC sends. The oldest go first.
pub const OUTBOX_LIMIT: usize = 50;
pub const OUTBOX_LIMIT_BYTES: usize = 96 * 1024;

/// An agent's reply longer than this is shortened to it, with [`SHORTENED_MARKER`] after it.
pub const AGENT_TEXT_LIMIT_CHARS: usize = 8_000;
/// What follows a shortened reply, so the end user knows that something is missing.
pub const SHORTENED_MARKER: &str =
    " [\u{2026}] (This message was shortened: it was too long to show in the chat.)";
/// An agent's name longer than this is cut to it.
pub const AGENT_NAME_LIMIT_CHARS: usize = 64;

/// The ids of the newest this many replies of a handover are remembered, so that MSC delivering one
/// again is recognised long after it left the outbox.
pub const DELIVERED_LIMIT: usize = 1_000;

/// Who a message for the channel is from, with what only that sender has. Stored flat on the
/// message: `from`, and `agent_name` or `ended`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Sender {
    Agent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_name: Option<String>,
    },
    /// The service itself: the handover ended.
    System { ended: EndReason },
    /// The service itself: an agent took the conversation (MSC's `ConversationStarted`).
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_name: Option<String>,
    },
}

impl Sender {
    pub fn as_str(&self) -> &'static str {
        match self {
            Sender::Agent { .. } => "agent",
            Sender::System { .. } | Sender::Joined { .. } => "system",
        }
    }
}

/// The agent's name is personal data: left out.
impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Agent { .. } => f.write_str("Agent"),
            Sender::System { ended } => write!(f, "System({ended:?})"),
            Sender::Joined { .. } => f.write_str("Joined"),
        }
    }
}

/// Why a handover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// 24 hours without activity: the lock expired.
    Inactivity,
    /// The agent closed (archived) the conversation in MSC.
    AgentClosed,
    /// An operator sent the conversation back to the bot.
    OperatorReleased,
    /// MSC did not accept the handover.
    HandoverFailed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// What the channel shows the end user.
    pub const fn text(self) -> &'static str {
        match self {
            EndReason::Inactivity => "The conversation with our colleague ended after a period of inactivity. The chatbot is here to help again.",
            EndReason::AgentClosed => "Our colleague has closed the conversation. The chatbot is here to help again.",
            EndReason::OperatorReleased => "The conversation was handed back to the chatbot.",
            EndReason::HandoverFailed => "No colleague could take over the conversation. The chatbot is here to help again.",
        }
    }
}

/// One message for the channel. Texts are personal data: `Debug` leaves them out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Arrival order in this session, from 1: what `?after=` counts.
    pub cursor: u64,
    /// MSC's `MessageExternalIdentifier` for an agent reply; `<sessionId>-ended-<cursor>` for the end.
    pub id: String,
    #[serde(flatten)]
    pub from: Sender,
    pub text: String,
    /// Epoch seconds: MSC's `SentDateTime`, or when the handover ended.
    #[serde(default)]
    pub sent_at: i64,
    /// The files an agent sent with the reply, kept in the file store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<super::files::FileRef>,
}

impl OutboxMessage {
    /// What the message adds to the session item, roughly: its texts and names.
    fn stored_bytes(&self) -> usize {
        let name = match &self.from {
            Sender::Agent { agent_name } | Sender::Joined { agent_name } => {
                agent_name.as_ref().map_or(0, String::len)
            }
            Sender::System { .. } => 0,
        };
        let files: usize = self
            .files
            .iter()
            .map(|f| f.key.len() + f.name.len() + f.content_type.len() + 16)
            .sum();
        self.text.len() + self.id.len() + name + files + 64
    }
}

impl fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("cursor", &self.cursor)
            .field("id", &self.id)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// What a handed-over session knows of the agent's side.
/// Stored on the session item, each field left out while it is empty, so sessions that never reach an
/// agent stay as small as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSide {
    /// MSC's `ConversationGuid`, from the first agent reply once it is linked to this session:
    /// relayed messages carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msc_conversation: Option<String>,
    /// Epoch seconds when the link of `msc_conversation` to this session was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msc_linked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Epoch seconds when the agent took the conversation (`ConversationStarted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_joined_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<OutboxMessage>,
    /// The last cursor handed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_cursor: u64,
    /// Why the handover ended (state `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// Bumped by every amendment: the condition that makes concurrent amendments take turns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// Agent replies delivered.
    #[serde(rename = "agent_replies", default, skip_serializing_if = "is_zero")]
    pub replies: u64,
    /// [`reply_digest`]s of the newest [`DELIVERED_LIMIT`] replies delivered, oldest first: "once per
    /// `MessageExternalIdentifier`" beyond the outbox's window.
    #[serde(
        rename = "delivered_replies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[serde(with = "digests")]
    pub delivered: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The delivered replies' digests, stored as one binary value of 8 bytes each (a list of numbers
/// would take three times the room on an item that is read and written with every reply).
mod digests {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digests: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = digests.iter().flat_map(|d| d.to_be_bytes()).collect();
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        if bytes.len() % 8 != 0 {
            return Err(D::Error::custom("not a list of 8-byte digests"));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|chunk| u64::from_be_bytes(chunk.try_into().unwrap_or_default()))
            .collect())
    }
}

/// An agent's reply, as MSC posted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReply {
    pub message_id: String,
    pub conversation_guid: Option<String>,
    pub agent_name: Option<String>,
    pub text: String,
    pub sent_at: i64,
    /// Its files, already in the file store.
    pub files: Vec<super::files::FileRef>,
}

/// A change to a handed-over session from the agent's side or an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverChange {
    /// Into the outbox (once per message id); counts as activity and slides the lock. Its
    /// `conversation_guid` is not adopted here: see [`HandoverChange::Linked`].
    AgentReply(AgentReply),
    /// MSC's conversation was linked to this session (`AgentStore::link_msc_conversation`, which
    /// refuses a conversation that is another session's): a session without one adopts it, and the
    /// link's last write is remembered, so it is refreshed about daily rather than on every reply.
    Linked { conversation: String, at: i64 },
    /// `ConversationStarted` of this handover's MSC conversation: who took it, and when.
    AgentJoined {
        conversation: String,
        agent_name: Option<String>,
        at: i64,
    },
    /// Back to the bot, with a system message saying why.
    End(EndReason),
    /// `ConversationArchived` of this handover's MSC conversation: the end (`agent_closed`). An
    /// event of an earlier handover's conversation changes nothing.
    Closed { conversation: String },
}

impl HandoverChange {
    /// Whether it applies to a live lock, or (the end by inactivity) to one that lapsed; a change
    /// that names MSC's conversation applies only to the handover that conversation is.
    pub fn applies_to(&self, session: &Session, now: i64) -> bool {
        let lapsed = matches!(self, HandoverChange::End(EndReason::Inactivity));
        let this_handover = self
            .conversation()
            .is_none_or(|named| session.agent.msc_conversation.as_deref() == Some(named));
        session.state == SessionState::HandedOver && session.is_live(now) != lapsed && this_handover
    }

    /// The MSC conversation the change is about, when MSC's event named it.
    pub fn conversation(&self) -> Option<&str> {
        match self {
            HandoverChange::AgentJoined { conversation, .. }
            | HandoverChange::Closed { conversation } => Some(conversation),
            HandoverChange::AgentReply(_)
            | HandoverChange::End(_)
            | HandoverChange::Linked { .. } => None,
        }
    }

    /// Why the handover ends, for the changes that end it.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self {
            HandoverChange::End(reason) => Some(*reason),
            HandoverChange::Closed { .. } => Some(EndReason::AgentClosed),
            HandoverChange::AgentReply(_)
            | HandoverChange::AgentJoined { .. }
            | HandoverChange::Linked { .. } => None,
        }
    }
}

/// What a change makes of a `handed_over` session (see [`HandoverChange::applies_to`]): `None` when it
/// changes nothing (a message
/// already in the outbox). `lock_expiry`: when a lock slid now would expire. Both store adapters write
/// exactly this.
pub fn apply(
    session: &Session,
    change: &HandoverChange,
    now: i64,
    lock_expiry: i64,
) -> Option<Session> {
    let mut next = session.clone();
    let mut events = Vec::new();
    let side = &mut next.agent;
    match change {
        HandoverChange::AgentReply(reply) => {
            let digest = reply_digest(&reply.message_id);
            if side.delivered.contains(&digest)
                || side.outbox.iter().any(|m| m.id == reply.message_id)
            {
                return None;
            }
            if side.replies == 0 {
                events.push(HistoryEvent::new(now, "first_agent_reply", None));
            }
            side.replies += 1;
            side.delivered.push(digest);
            let overflow = side.delivered.len().saturating_sub(DELIVERED_LIMIT);
            side.delivered.drain(..overflow);
            if reply.agent_name.is_some() {
                side.agent_name = reply.agent_name.clone();
            }
            side.last_cursor += 1;
            side.outbox.push(OutboxMessage {
                cursor: side.last_cursor,
                id: reply.message_id.clone(),
                from: Sender::Agent {
                    agent_name: side.agent_name.clone(),
                },
                text: reply.text.clone(),
                sent_at: reply.sent_at,
                files: reply.files.clone(),
            });
            next.expires_at = lock_expiry;
        }
        HandoverChange::Linked { conversation, at } => {
            // A session's conversation, once set, changes only with a new handover.
            if side
                .msc_conversation
                .as_ref()
                .is_some_and(|linked| linked != conversation)
            {
                return None;
            }
            side.msc_conversation = Some(conversation.clone());
            side.msc_linked_at = Some(*at);
        }
        HandoverChange::AgentJoined { agent_name, at, .. } => {
            // MSC's retry, or a repeat for the agent who has it already: nothing new to tell.
            let known = agent_name.is_none() || *agent_name == side.agent_name;
            if side.agent_joined_at.is_some() && known {
                return None;
            }
            side.agent_name = agent_name.clone().or(side.agent_name.take());
            side.agent_joined_at = Some(*at);
            events.push(HistoryEvent::new(now, "agent_assigned", None));
            side.last_cursor += 1;
            side.outbox.push(OutboxMessage {
                cursor: side.last_cursor,
                id: format!("{}-joined-{}", next.session_id, side.last_cursor),
                from: Sender::Joined {
                    agent_name: side.agent_name.clone(),
                },
                text: match &side.agent_name {
                    Some(name) => format!("{name} has joined the conversation."),
                    None => "A colleague has joined the conversation.".to_owned(),
                },
                sent_at: *at,
                files: Vec::new(),
            });
        }
        HandoverChange::End(reason) => end(&mut next, &mut events, *reason, now, lock_expiry),
        HandoverChange::Closed { .. } => end(
            &mut next,
            &mut events,
            EndReason::AgentClosed,
            now,
            lock_expiry,
        ),
    }
    let side = &mut next.agent;
    trim_outbox(&mut side.outbox);
    side.version += 1;
    next.history = with_events(&next.history, &events);
    next.updated_at = now;
    Some(next)
}

fn end(
    next: &mut Session,
    events: &mut Vec<HistoryEvent>,
    reason: EndReason,
    now: i64,
    lock_expiry: i64,
) {
    if reason == EndReason::Inactivity {
        events.push(HistoryEvent::new(now, "expired", None));
    }
    events.push(HistoryEvent::new(
        now,
        "ended",
        Some(reason.as_str().to_owned()),
    ));
    let side = &mut next.agent;
    side.last_cursor += 1;
    side.outbox.push(OutboxMessage {
        cursor: side.last_cursor,
        id: format!("{}-ended-{}", next.session_id, side.last_cursor),
        from: Sender::System { ended: reason },
        text: reason.text().to_owned(),
        sent_at: now,
        files: Vec::new(),
    });
    side.end_reason = Some(reason);
    next.state = SessionState::Ended;
    // The bot answers from now on; the outbox stays readable for as long as the lock would have kept
    // it (a new handover carries it on).
    next.expires_at = lock_expiry;
}

/// Drops the oldest messages beyond [`OUTBOX_LIMIT`] messages or [`OUTBOX_LIMIT_BYTES`]; the newest
/// always stays (one message is at most [`AGENT_TEXT_LIMIT_CHARS`] characters, far below the bound).
fn trim_outbox(outbox: &mut Vec<OutboxMessage>) {
    let mut bytes = 0;
    let mut keep = 0;
    for message in outbox.iter().rev() {
        bytes += message.stored_bytes();
        if keep > 0 && (keep == OUTBOX_LIMIT || bytes > OUTBOX_LIMIT_BYTES) {
            break;
        }
        keep += 1;
    }
    let overflow = outbox.len() - keep;
    outbox.drain(..overflow);
}

/// What a reply's id is remembered by once it has been delivered: 8 bytes of its SHA-256, so that a
/// thousand of them fit in a few kilobytes of the session item. Two ids of one handover sharing a
/// digest is a chance of about one in 10^13.
pub fn reply_digest(message_id: &str) -> u64 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(message_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

/// The messages that arrived after `after`, in the order MSC sent them (`SentDateTime`, then arrival).
pub fn since(outbox: &[OutboxMessage], after: u64) -> Vec<&OutboxMessage> {
    let mut messages: Vec<&OutboxMessage> = outbox.iter().filter(|m| m.cursor > after).collect();
    messages.sort_by_key(|m| (m.sent_at, m.cursor));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AgentStatus, HolderToken};

    const NOW: i64 = 1_500;
    const LOCK_EXPIRY: i64 = NOW + 86_400;

    fn handed_over() -> Session {
        Session {
            session_id: "s-1".into(),
            state: SessionState::HandedOver,
            token: HolderToken::generate(),
            intake_id: "i".into(),
            skill: None,
            webstore: None,
            channel: None,
            agent_status: AgentStatus::Online,
            end_user_url: None,
            culture: None,
            intake: Vec::new(),
            expires_at: 2_000,
            updated_at: 1_000,
            started_at: 1_000,
            agent: AgentSide::default(),
            queued: Vec::new(),
            transcript: Vec::new(),
            relation_name: None,
            verified: None,
            history: Vec::new(),
        }
    }

    fn reply(id: &str, sent_at: i64) -> HandoverChange {
        HandoverChange::AgentReply(AgentReply {
            message_id: id.into(),
            conversation_guid: Some("guid-1".into()),
            agent_name: Some("Sam".into()),
            text: format!("text of {id}"),
            sent_at,
            files: Vec::new(),
        })
    }

    #[test]
    fn a_reply_is_appended_once_slides_the_lock_and_a_link_sets_the_guid_once() {
        let first = apply(&handed_over(), &reply("m-1", 10), NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(first.agent.outbox.len(), 1);
        assert_eq!(first.agent.outbox[0].cursor, 1);
        assert_eq!(first.agent.msc_conversation, None, "not before the link");
        let linked = |conversation: &str| HandoverChange::Linked {
            conversation: conversation.into(),
            at: NOW,
        };
        let with_guid = apply(&first, &linked("guid-1"), NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(with_guid.agent.msc_conversation.as_deref(), Some("guid-1"));
        assert_eq!(apply(&with_guid, &linked("guid-2"), NOW, LOCK_EXPIRY), None);
        assert_eq!(first.expires_at, LOCK_EXPIRY);
        assert_eq!(first.agent.version, 1);
        assert_eq!(apply(&first, &reply("m-1", 10), 1_600, LOCK_EXPIRY), None);
    }

    #[test]
    fn the_end_adds_a_system_message_and_hands_back_to_the_bot() {
        let ended = apply(
            &handed_over(),
            &HandoverChange::End(EndReason::AgentClosed),
            NOW,
            LOCK_EXPIRY,
        )
        .unwrap();
        assert_eq!(ended.state, SessionState::Ended);
        assert_eq!(ended.agent.end_reason, Some(EndReason::AgentClosed));
        assert_eq!(
            ended.agent.outbox[0].from,
            Sender::System {
                ended: EndReason::AgentClosed
            }
        );
    }

    #[test]
    fn listing_is_in_sent_order_and_counts_from_the_cursor() {
        let mut session = handed_over();
        for (id, sent_at) in [("late", 30), ("early", 10), ("middle", 20)] {
            session = apply(&session, &reply(id, sent_at), NOW, LOCK_EXPIRY).unwrap();
        }
        let ids = |after| -> Vec<String> {
            since(&session.agent.outbox, after)
                .iter()
                .map(|m| m.id.clone())
                .collect()
        };
        assert_eq!(ids(0), ["early", "middle", "late"]);
        assert_eq!(ids(1), ["early", "middle"]);
        assert_eq!(ids(3), Vec::<String>::new());
    }

    #[test]
    fn the_outbox_keeps_the_newest_messages() {
        let mut session = handed_over();
        for n in 0..(OUTBOX_LIMIT + 5) {
            session = apply(
                &session,
                &reply(&format!("m-{n}"), n as i64),
                NOW,
                LOCK_EXPIRY,
            )
            .unwrap();
        }
        assert_eq!(session.agent.outbox.len(), OUTBOX_LIMIT);
        assert_eq!(session.agent.outbox[0].cursor, 6);
        assert_eq!(session.agent.last_cursor, (OUTBOX_LIMIT + 5) as u64);
    }

    #[test]
    fn the_outbox_is_bounded_by_bytes_and_keeps_the_newest() {
        let mut session = handed_over();
        let wide = "\u{20AC}".repeat(AGENT_TEXT_LIMIT_CHARS);
        for n in 0..20 {
            let mut change = reply(&format!("m-{n}"), n);
            if let HandoverChange::AgentReply(r) = &mut change {
                r.text = wide.clone();
            }
            session = apply(&session, &change, NOW, LOCK_EXPIRY).unwrap();
        }
        let bytes: usize = session.agent.outbox.iter().map(|m| m.stored_bytes()).sum();
        assert!(bytes <= OUTBOX_LIMIT_BYTES, "{bytes}");
        assert_eq!(session.agent.outbox.len(), 4);
        assert_eq!(session.agent.outbox.last().unwrap().id, "m-19");
    }

    #[test]
    fn a_delivered_id_is_remembered_for_the_newest_thousand_replies() {
        let mut session = handed_over();
        for n in 0..=DELIVERED_LIMIT {
            session = apply(&session, &reply(&format!("m-{n}"), 0), NOW, LOCK_EXPIRY).unwrap();
        }
        assert_eq!(session.agent.delivered.len(), DELIVERED_LIMIT);
        assert_eq!(apply(&session, &reply("m-1", 0), NOW, LOCK_EXPIRY), None);
        // The first left the window: the documented limit of "once".
        assert!(apply(&session, &reply("m-0", 0), NOW, LOCK_EXPIRY).is_some());
    }
}
