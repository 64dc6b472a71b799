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
    /// The service itself: no agent has taken the conversation within the wait (this is the
    /// `round`th time it says so); the end user may keep waiting or go back to the bot.
    NobodyYet {
        round: u32,
        /// The handover was made while agents were offline (or outside business hours).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        agents_offline: bool,
        /// Outside business hours: when they open (epoch seconds), for the page to show locally.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opens_at: Option<i64>,
    },
    /// The service itself: the end user's message `message` (the id the turn answered with) reached
    /// MSC, or (`refused`: MSC's status) MSC refused it for good. Messages reach MSC in the order they
    /// were written, so a page takes "delivered" for this one and every earlier one.
    Relayed {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<u16>,
    },
}

impl Sender {
    pub fn as_str(&self) -> &'static str {
        match self {
            Sender::Agent { .. } => "agent",
            Sender::System { .. }
            | Sender::Joined { .. }
            | Sender::NobodyYet { .. }
            | Sender::Relayed { .. } => "system",
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
            Sender::NobodyYet { round, .. } => write!(f, "NobodyYet({round})"),
            Sender::Relayed { refused, .. } => write!(f, "Relayed({refused:?})"),
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
    /// No agent took the conversation in time, and the end user chose to go back to the bot.
    NoAgent,
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
            EndReason::NoAgent => "You are back with the chatbot. Our colleagues have been told that you stopped waiting; ask for a colleague again at any time.",
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
            Sender::System { .. } | Sender::NobodyYet { .. } => 0,
            Sender::Relayed { message, .. } => message.len(),
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
    /// How often the end user was told that no agent has come yet ([`HandoverChange::NobodyCame`]).
    /// Only ever grows within a handover, as does `wait_kept`: an offer is open while it is larger.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub wait_asks: u32,
    /// How often the end user chose to keep waiting.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub wait_kept: u32,
}

impl AgentSide {
    /// Whether an agent has come: joined (`ConversationStarted`) or replied.
    pub fn agent_came(&self) -> bool {
        self.agent_joined_at.is_some() || self.replies > 0
    }

    /// Whether the end user was asked to keep waiting or go back, and has not answered yet.
    pub fn wait_offer_open(&self) -> bool {
        self.wait_asks > self.wait_kept
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
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
    /// The wait for an agent ran out (its timer fired): unless an agent came, or this round was told
    /// already, the end user is told so and offered to keep waiting or go back to the bot. `handover`
    /// is the intake id of the handover the timer was started for: a timer of an earlier handover
    /// changes nothing. `opens_at`: outside business hours, when they open.
    NobodyCame {
        handover: String,
        round: u32,
        opens_at: Option<i64>,
    },
    /// The end user chose to keep waiting (an offer is open, and no agent came meanwhile).
    KeepWaiting,
    /// The end user's message `message_id` reached MSC (`refused: None`) or MSC refused it for good:
    /// the page is told. A delivery replaces the receipt of an earlier one in the outbox (it says as
    /// much), so receipts never crowd out the agent's replies; a refusal stays, and is in the history.
    Relayed {
        message_id: String,
        refused: Option<u16>,
    },
    /// The end user chose to go back to the bot: the end (`no_agent`), only while no agent came and
    /// after the end user was offered it. An agent coming a moment earlier refuses it, and this
    /// ending first refuses the agent's event: one of the two, never both.
    BackToBot,
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
            | HandoverChange::Linked { .. }
            | HandoverChange::NobodyCame { .. }
            | HandoverChange::KeepWaiting
            | HandoverChange::BackToBot
            | HandoverChange::Relayed { .. } => None,
        }
    }

    /// Why the handover ends, for the changes that end it.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self {
            HandoverChange::End(reason) => Some(*reason),
            HandoverChange::Closed { .. } => Some(EndReason::AgentClosed),
            HandoverChange::BackToBot => Some(EndReason::NoAgent),
            HandoverChange::AgentReply(_)
            | HandoverChange::AgentJoined { .. }
            | HandoverChange::Linked { .. }
            | HandoverChange::NobodyCame { .. }
            | HandoverChange::KeepWaiting
            | HandoverChange::Relayed { .. } => None,
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
        HandoverChange::NobodyCame {
            handover,
            round,
            opens_at,
        } => {
            // Fired twice, fired late for an earlier handover, an agent came in time, or the last
            // question is still open: nothing.
            if *handover != next.intake_id
                || side.agent_came()
                || side.wait_offer_open()
                || side.wait_asks + 1 != *round
            {
                return None;
            }
            side.wait_asks = *round;
            events.push(HistoryEvent::new(
                now,
                "no_agent_in_time",
                Some(format!("round {round}")),
            ));
            let offline = next.agent_status == super::AgentStatus::Offline;
            side.last_cursor += 1;
            side.outbox.push(OutboxMessage {
                cursor: side.last_cursor,
                id: format!("{}-waiting-{}-{round}", next.session_id, next.intake_id),
                from: Sender::NobodyYet {
                    round: *round,
                    agents_offline: offline,
                    opens_at: *opens_at,
                },
                text: nobody_came_text(*round, offline, *opens_at),
                sent_at: now,
                files: Vec::new(),
            });
        }
        HandoverChange::KeepWaiting => {
            if side.agent_came() || !side.wait_offer_open() {
                return None;
            }
            side.wait_kept = side.wait_asks;
            events.push(HistoryEvent::new(now, "kept_waiting", None));
            // The end user's answer is activity, as a relayed message is.
            next.expires_at = lock_expiry;
        }
        HandoverChange::BackToBot => {
            if side.agent_came() || side.wait_asks == 0 {
                return None;
            }
            end(&mut next, &mut events, EndReason::NoAgent, now, lock_expiry);
        }
        HandoverChange::Relayed {
            message_id,
            refused,
        } => {
            let told = |m: &OutboxMessage| matches!(&m.from, Sender::Relayed { message, .. } if message == message_id);
            // A delivery made again (the queue gave the message back after MSC took it).
            if side.outbox.iter().any(told) {
                return None;
            }
            if refused.is_none() {
                side.outbox
                    .retain(|m| !matches!(m.from, Sender::Relayed { refused: None, .. }));
            }
            if let Some(status) = refused {
                events.push(HistoryEvent::new(
                    now,
                    "message_refused_by_msc",
                    Some(format!("status {status}")),
                ));
            }
            side.last_cursor += 1;
            side.outbox.push(OutboxMessage {
                cursor: side.last_cursor,
                id: format!("{}-relayed-{}", next.session_id, side.last_cursor),
                from: Sender::Relayed {
                    message: message_id.clone(),
                    refused: *refused,
                },
                text: match refused {
                    None => "Delivered to our colleague.".to_owned(),
                    Some(_) => "This message could not be delivered to our colleague. Please write it again, or differently.".to_owned(),
                },
                sent_at: now,
                files: Vec::new(),
            });
        }
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

/// What the end user reads when no agent has come in time. The first time it also says why it may take
/// long: the handover was made while agents were offline, and (outside business hours) when they open.
pub fn nobody_came_text(round: u32, offline: bool, opens_at: Option<i64>) -> String {
    let question = "Would you like to keep waiting, or go back to the chatbot?";
    match (round, offline, opens_at) {
        (1, _, Some(opens_at)) => format!(
            "No colleague has taken your conversation yet: we are closed now, and open again at {}. \
             A colleague will answer then. {question}",
            crate::clock::human_utc(opens_at)
        ),
        (1, true, None) => format!(
            "No colleague has taken your conversation yet: our colleagues were not available when you \
             asked, so it may take a while. {question}"
        ),
        _ => format!("No colleague has taken your conversation yet. {question}"),
    }
}

/// The end user's answer to "nobody came yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum WaitChoice {
    KeepWaiting,
    BackToBot,
}

impl WaitChoice {
    pub const ALL: [WaitChoice; 2] = [WaitChoice::KeepWaiting, WaitChoice::BackToBot];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The button's label, for channels that show the server's texts.
    pub const fn label(self) -> &'static str {
        match self {
            WaitChoice::KeepWaiting => "Keep waiting",
            WaitChoice::BackToBot => "Back to the chatbot",
        }
    }
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

    fn nobody_came(round: u32) -> HandoverChange {
        HandoverChange::NobodyCame {
            handover: "i".into(),
            round,
            opens_at: None,
        }
    }

    #[test]
    fn nobody_came_is_told_once_per_round_and_only_while_no_agent_came() {
        let told = apply(&handed_over(), &nobody_came(1), NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(told.agent.wait_asks, 1);
        assert!(told.agent.wait_offer_open());
        let message = told.agent.outbox.last().unwrap();
        assert_eq!(
            message.from,
            Sender::NobodyYet {
                round: 1,
                agents_offline: false,
                opens_at: None
            }
        );
        assert_eq!(message.id, "s-1-waiting-i-1");
        assert_eq!(told.expires_at, handed_over().expires_at, "not activity");
        // The timer firing again, a later round before the end user answered, another handover's timer.
        assert_eq!(apply(&told, &nobody_came(1), NOW, LOCK_EXPIRY), None);
        assert_eq!(apply(&told, &nobody_came(2), NOW, LOCK_EXPIRY), None);
        let other = HandoverChange::NobodyCame {
            handover: "earlier".into(),
            round: 1,
            opens_at: None,
        };
        assert_eq!(apply(&handed_over(), &other, NOW, LOCK_EXPIRY), None);
        // An agent who joined or replied: nobody is told anything.
        let replied = apply(&handed_over(), &reply("m-1", 10), NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(apply(&replied, &nobody_came(1), NOW, LOCK_EXPIRY), None);
        let mut joined = handed_over();
        joined.agent.agent_joined_at = Some(NOW);
        assert_eq!(apply(&joined, &nobody_came(1), NOW, LOCK_EXPIRY), None);
    }

    #[test]
    fn keep_waiting_answers_the_open_offer_once_and_opens_the_next_round() {
        assert_eq!(
            apply(
                &handed_over(),
                &HandoverChange::KeepWaiting,
                NOW,
                LOCK_EXPIRY
            ),
            None,
            "nothing was offered"
        );
        let told = apply(&handed_over(), &nobody_came(1), NOW, LOCK_EXPIRY).unwrap();
        let kept = apply(&told, &HandoverChange::KeepWaiting, NOW, LOCK_EXPIRY).unwrap();
        assert!(!kept.agent.wait_offer_open());
        assert_eq!(kept.expires_at, LOCK_EXPIRY, "an answer is activity");
        assert_eq!(
            apply(&kept, &HandoverChange::KeepWaiting, NOW, LOCK_EXPIRY),
            None
        );
        let again = apply(&kept, &nobody_came(2), NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(again.agent.outbox.last().unwrap().id, "s-1-waiting-i-2");
        assert!(again.agent.outbox.last().unwrap().text.starts_with(
            "No colleague has taken your conversation yet. Would you like to keep waiting"
        ));
    }

    #[test]
    fn back_to_the_bot_ends_the_handover_only_while_no_agent_came() {
        assert_eq!(
            apply(&handed_over(), &HandoverChange::BackToBot, NOW, LOCK_EXPIRY),
            None,
            "nothing was offered"
        );
        let told = apply(&handed_over(), &nobody_came(1), NOW, LOCK_EXPIRY).unwrap();
        let back = apply(&told, &HandoverChange::BackToBot, NOW, LOCK_EXPIRY).unwrap();
        assert_eq!(back.state, SessionState::Ended);
        assert_eq!(back.agent.end_reason, Some(EndReason::NoAgent));
        assert_eq!(
            back.agent.outbox.last().unwrap().from,
            Sender::System {
                ended: EndReason::NoAgent
            }
        );
        let mut joined = told.clone();
        joined.agent.agent_joined_at = Some(NOW);
        assert_eq!(
            apply(&joined, &HandoverChange::BackToBot, NOW, LOCK_EXPIRY),
            None
        );
    }

    #[test]
    fn the_first_message_says_why_it_may_take_long() {
        let closed = nobody_came_text(1, true, Some(1_796_630_400));
        assert!(
            closed.contains("we are closed now, and open again at 2026-12-07 08:00 UTC"),
            "{closed}"
        );
        let offline = nobody_came_text(1, true, None);
        assert!(
            offline.contains("were not available when you asked"),
            "{offline}"
        );
        assert!(!nobody_came_text(2, true, None).contains("not available"));
        assert!(!nobody_came_text(1, false, None).contains("not available"));
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
