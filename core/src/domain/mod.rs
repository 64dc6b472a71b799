//! Domain types and rules of the handover flow. No I/O lives here.

mod agent;
pub mod files;
mod policy;
pub mod text;

pub use policy::LockPolicy;

pub use agent::{
    apply, nobody_came_text, reply_digest, since, AgentReply, AgentSide, EndReason, HandoverChange,
    OutboxMessage, Sender, WaitChoice, AGENT_NAME_LIMIT_CHARS, AGENT_TEXT_LIMIT_CHARS,
    DELIVERED_LIMIT, OUTBOX_LIMIT, OUTBOX_LIMIT_BYTES, SHORTENED_MARKER,
};

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A conversation's id: the CAIC session id, also the key of its stored state. 1-128 characters of
/// `A-Z a-z 0-9 _ -`; checked once, where it enters (a request, a CAIC reply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session id must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidSessionId;

/// 1-128 ASCII letters, digits or bytes of `others`.
fn is_identifier(text: &str, others: &[u8]) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || others.contains(&b))
}

impl SessionId {
    pub fn parse(id: &str) -> Result<Self, InvalidSessionId> {
        is_identifier(id, b"_-")
            .then(|| Self(id.to_owned()))
            .ok_or(InvalidSessionId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A page's live connection, as API Gateway's WebSocket API names it (`requestContext.connectionId`,
/// base64-like) or the local runner does: 1-128 characters of `A-Z a-z 0-9 + / = _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(String);

impl ConnectionId {
    pub fn parse(id: &str) -> Option<Self> {
        is_identifier(id, b"+/=_-").then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel's `Idempotency-Key`: 1-128 characters of `A-Z a-z 0-9 _ - . :`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.' or ':'")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(key: &str) -> Result<Self, InvalidIdempotencyKey> {
        let key = key.trim();
        is_identifier(key, b"_-.:")
            .then(|| Self(key.to_owned()))
            .ok_or(InvalidIdempotencyKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the key is stored under: within the session a request names, so two conversations whose
    /// channels happen to send the same key never share a reply. A first message (no session yet)
    /// is scoped to the channel: its retry must replay, or it would start a second CAIC session.
    /// Session ids and keys cannot hold `#`, so no two scopes meet.
    pub fn scoped(&self, session: Option<&SessionId>) -> String {
        match session {
            Some(session) => format!("{}#{}", session.as_str(), self.0),
            None => format!("#{}", self.0),
        }
    }

    /// A first message's key sent with a conversation token: scoped to that token (`##<token id>#<key>`),
    /// so that two pages never share a reply.
    pub fn scoped_by(&self, token_id: &str) -> String {
        format!("##{token_id}#{}", self.0)
    }
}

/// Who holds a session: written by every start of intake and every claim, and required by the
/// transitions that follow (abandon, complete, release), so a holder that lost its lease cannot
/// complete or release someone else's work. Random, never shown to callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HolderToken(String);

impl HolderToken {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for HolderToken {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Where a conversation stands. "No session" (no item, or an expired one) means the bot answers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The `livechat` answer arrived; CAIC runs the intake dialog.
    Prechat,
    /// One holder has claimed the session and is calling MSC.
    HandingOver,
    /// MSC accepted the conversation; CAIC is locked out until the lock expires.
    HandedOver,
    /// The handover ended (agent closed it, operator released it): the bot answers again; the item
    /// stays so the channel can still read the outbox.
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The CAIC context variable `agentStatus` set before the intake dialog.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub const fn from_available(available: bool) -> Self {
        if available {
            AgentStatus::Online
        } else {
            AgentStatus::Offline
        }
    }
}

/// An end user's message that arrived while the handover was being made: kept in order with the
/// session, and posted to MSC right after the handover message (or, if the handover fails, answered by
/// the bot). The text is personal data: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub text: String,
    /// Epoch seconds of its arrival.
    pub at: i64,
}

impl fmt::Debug for QueuedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedMessage")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// Who said something before the handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    User,
    Bot,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One turn of the conversation with the bot, for the agent to read. Personal data: `Debug` leaves the
/// text out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: Speaker,
    pub text: String,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The longest name the agent's inbox shows for the end user.
pub const RELATION_NAME_LIMIT_CHARS: usize = 100;

/// The name the agent's inbox shows for the end user: the intake's name answer, if there is one, on
/// one line without controls or bidi overrides. The same on every message of a conversation.
pub fn relation_name(intake: &[IntakeAnswer]) -> Option<String> {
    intake
        .iter()
        .find(|a| {
            matches!(
                a.name.to_ascii_lowercase().as_str(),
                "name" | "fullname" | "full_name" | "naam"
            )
        })
        .and_then(|a| text::clean_name(&a.value, RELATION_NAME_LIMIT_CHARS))
}

/// The end user as the site's backend vouches for them (a conversation token minted with the channel
/// key, or a page's identity signed with `IDENTITY_SECRET`): MSC groups one customer's conversations by
/// `external_id`, and the agent is told which fields the site verified. Checked once, at the edge.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedIdentity {
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The longest external id and e-mail address a site may vouch for.
pub const EXTERNAL_ID_LIMIT_CHARS: usize = 128;
pub const EMAIL_LIMIT_CHARS: usize = 254;

impl VerifiedIdentity {
    /// The fields as a site sends them, checked: an external id of 1-128 printable ASCII characters
    /// (no spaces: customer numbers, UUIDs, e-mail addresses), a name of at most 100 characters cleaned
    /// as every name is (blank: none), an e-mail address of at most 254 printable ASCII characters with
    /// an `@` (empty: none). The error names the field.
    pub fn parse(
        external_id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Self, &'static str> {
        if external_id.is_empty()
            || external_id.len() > EXTERNAL_ID_LIMIT_CHARS
            || !external_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(
                "identity.externalId must be 1-128 printable ASCII characters, without spaces",
            );
        }
        if name.is_some_and(|name| name.chars().count() > RELATION_NAME_LIMIT_CHARS) {
            return Err("identity.name must be at most 100 characters");
        }
        let email = match email.filter(|e| !e.is_empty()) {
            None => None,
            Some(email) => {
                // Printable ASCII, so the OpenAPI document can state it as a pattern.
                let well_formed = email.len() <= EMAIL_LIMIT_CHARS
                    && email.bytes().all(|b| b.is_ascii_graphic())
                    && email
                        .split_once('@')
                        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
                if !well_formed {
                    return Err("identity.email must be an e-mail address of at most 254 printable ASCII characters");
                }
                Some(email.to_owned())
            }
        };
        Ok(Self {
            external_id: external_id.to_owned(),
            name: name.and_then(|name| text::clean_name(name, RELATION_NAME_LIMIT_CHARS)),
            email,
        })
    }
}

/// Personal data: never in a log line.
impl fmt::Debug for VerifiedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedIdentity").finish_non_exhaustive()
    }
}

/// One step of a handover, for the operator view: what happened and when. Never personal data: the
/// detail is a status, a count, a reason or a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Epoch seconds.
    pub at: i64,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HistoryEvent {
    pub fn new(at: i64, event: &str, detail: Option<String>) -> Self {
        Self {
            at,
            event: event.to_owned(),
            detail,
        }
    }
}

/// A session keeps its newest this many events.
pub const HISTORY_LIMIT: usize = 50;

/// `history` with `events` after it, the oldest dropped beyond [`HISTORY_LIMIT`].
pub fn with_events(history: &[HistoryEvent], events: &[HistoryEvent]) -> Vec<HistoryEvent> {
    let all: Vec<HistoryEvent> = history.iter().chain(events).cloned().collect();
    let overflow = all.len().saturating_sub(HISTORY_LIMIT);
    all[overflow..].to_vec()
}

/// At most this many messages wait for a handover, and at most this many bytes of text.
pub const QUEUE_LIMIT: usize = 20;
pub const QUEUE_LIMIT_BYTES: usize = 16 * 1024;

/// One answered intake question. Values are personal data (names, e-mail addresses), so `Debug`
/// shows the slot name only: a stray `?answer` in a log line must not leak them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeAnswer {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for IntakeAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeAnswer")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// What the flow knows about one conversation, as stored: one item in DynamoDB, whose attribute names
/// are these fields' names; what is empty is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "pk")]
    pub session_id: String,
    pub state: SessionState,
    /// Changes on every start of intake and every claim; the transitions after those are guarded by it.
    pub token: HolderToken,
    /// Set when the intake starts and kept by every claim of it: the handover message's id derives from
    /// it, so retries and take-overs of one handover post the same `MessageExternalIdentifier`.
    pub intake_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webstore: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub agent_status: AgentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culture: Option<String>,
    /// Present only while `handing_over`: removed when the handover completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intake: Vec<IntakeAnswer>,
    /// Epoch seconds. Prechat window, claim lease or session lock, depending on the state.
    pub expires_at: i64,
    /// Epoch seconds of the last write.
    pub updated_at: i64,
    /// Epoch seconds of the `livechat` answer that started this handover's intake.
    pub started_at: i64,
    /// The agent's side, once handed over: MSC's conversation, the agent, the channel's outbox.
    #[serde(flatten)]
    pub agent: AgentSide,
    /// Messages that arrived while `handing_over`, in arrival order; emptied once posted to MSC (or
    /// answered by the bot after a failed handover).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<QueuedMessage>,
    /// The conversation with the bot before the handover, for the handover message: kept from the
    /// `livechat` answer until the handover completes, like the intake answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Turn>,
    /// The end user's name from the intake, set by the claim: every message to MSC carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_name: Option<String>,
    /// Who the site vouched for, from the conversation token of the turn that started the intake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedIdentity>,
    /// What happened, oldest first (see [`HistoryEvent`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEvent>,
}

impl Session {
    /// DynamoDB deletes expired items lazily (days later), so expiry is decided here, on every read.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }

    pub fn phase(&self, now: i64) -> Phase {
        Phase::of(Some(self), now)
    }
}

/// Everything that starts (or refreshes) an intake: the output additions of the `livechat` answer,
/// the presence result, and what the channel told us about the end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeStart {
    pub session_id: String,
    pub skill: Option<String>,
    pub webstore: Option<String>,
    pub channel: Option<String>,
    pub agent_status: AgentStatus,
    pub end_user_url: Option<String>,
    pub culture: Option<String>,
    /// The turns before the handover: the channel's history, the question that made the bot offer a
    /// person, and the bot's answer.
    pub transcript: Vec<Turn>,
    /// The session's history so far (of an earlier, ended handover) and the start of this one.
    pub history: Vec<HistoryEvent>,
    /// What the channel was shown of an earlier handover, and its last cursor: kept, and the cursors
    /// go on counting, so a channel reading `?after=` with the last one it saw misses nothing of the
    /// next handover.
    pub outbox: Vec<OutboxMessage>,
    pub last_cursor: u64,
    /// Who the site vouched for, when the turn came with a token that says.
    pub verified: Option<VerifiedIdentity>,
}

/// A session as the flow sees it at one instant, expiry folded in. Used to state which
/// transitions the machine allows; see [`Phase::may_become`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No item, or an expired `prechat` / `handed_over` item.
    WithBot,
    Prechat,
    HandingOver,
    /// A `handing_over` item whose lease ran out: its holder probably crashed.
    LeaseExpired,
    HandedOver,
}

impl Phase {
    pub fn of(session: Option<&Session>, now: i64) -> Phase {
        match session {
            None => Phase::WithBot,
            Some(s) => match (s.state, s.is_live(now)) {
                (SessionState::Prechat, true) => Phase::Prechat,
                (SessionState::HandingOver, true) => Phase::HandingOver,
                (SessionState::HandingOver, false) => Phase::LeaseExpired,
                (SessionState::HandedOver, true) => Phase::HandedOver,
                (SessionState::Prechat | SessionState::HandedOver, false) => Phase::WithBot,
                (SessionState::Ended, _) => Phase::WithBot,
            },
        }
    }

    /// The state machine of docs/design.md, including what the passing of time does.
    /// A phase may always stay what it is (a refused transition changes nothing).
    pub fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        if self == next {
            return true;
        }
        matches!(
            (self, next),
            (WithBot, Prechat)
                | (Prechat, HandingOver)
                | (Prechat, WithBot)
                | (HandingOver, HandedOver)
                | (HandingOver, WithBot)
                | (HandingOver, LeaseExpired)
                | (LeaseExpired, HandingOver)
                | (LeaseExpired, HandedOver)
                | (LeaseExpired, WithBot)
                | (LeaseExpired, Prechat)
                | (HandedOver, WithBot)
        )
    }
}

/// The output additions of one CAIC answer that the flow reads. CAIC's metadata is loosely typed
/// (strings, booleans, single-element lists, any key case), so parsing accepts every shape the bot may
/// legitimately send and never fails: what it cannot read is "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputAdditions {
    pub livechat: bool,
    /// The intake dialog's end slot carries the `prechat` event; completion may arrive this way too.
    pub prechat: bool,
    pub skill: Option<String>,
    pub msc_webstore: Option<String>,
    pub msc_channel: Option<String>,
}

impl OutputAdditions {
    /// Reads the `outputAdditions` object of an answer. Anything but an object yields no additions.
    pub fn parse(additions: &Value) -> Self {
        let Value::Object(map) = additions else {
            return Self::default();
        };
        let field = |name: &str| {
            map.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        Self {
            livechat: field("livechat").is_some_and(lenient_bool),
            prechat: field("prechat").is_some_and(lenient_bool),
            skill: field("skill").and_then(lenient_string),
            msc_webstore: field("mscWebstore").and_then(lenient_string),
            msc_channel: field("mscChannel").and_then(lenient_string),
        }
    }
}

/// `true`, `"true"` (any case), `"yes"`, `"on"`, `"1"`, `1`, or a list whose first element is one
/// of those. Everything else is false.
pub fn lenient_bool(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1"
        ),
        Value::Number(n) => n.as_i64() == Some(1) || n.as_u64() == Some(1),
        // One level only: CAIC wraps multi-valued metadata in a list, never deeper.
        Value::Array(items) => items
            .first()
            .is_some_and(|first| !first.is_array() && lenient_bool(first)),
        Value::Null | Value::Object(_) => false,
    }
}

/// A non-empty trimmed string, or the first such string of a list. Empty means unset.
pub fn lenient_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let trimmed = s.trim();
            (!trimmed.is_empty()).then(|| trimmed.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.iter().find_map(|item| match item {
            Value::String(_) | Value::Number(_) => lenient_string(item),
            _ => None,
        }),
        Value::Null | Value::Bool(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_verified_identity_is_checked_field_by_field() {
        let ok = VerifiedIdentity::parse(
            "customer-42",
            Some(" Jane\u{202E} Doe "),
            Some("jane@example.com"),
        )
        .unwrap();
        assert_eq!(
            (
                ok.external_id.as_str(),
                ok.name.as_deref(),
                ok.email.as_deref()
            ),
            ("customer-42", Some("Jane Doe"), Some("jane@example.com"))
        );
        let blank = VerifiedIdentity::parse("c-1", Some("   "), Some("")).unwrap();
        assert_eq!((blank.name, blank.email), (None, None));
        for (id, name, email, field) in [
            ("", None, None, "externalId"),
            ("customer 42", None, None, "externalId"),
            ("klant-é", None, None, "externalId"),
            (&*"x".repeat(129), None, None, "externalId"),
            ("c-1", Some(&*"n".repeat(101)), None, "name"),
            ("c-1", None, Some("jane"), "email"),
            ("c-1", None, Some("jane@"), "email"),
            ("c-1", None, Some("ja ne@example.com"), "email"),
        ] {
            let refused = VerifiedIdentity::parse(id, name, email).unwrap_err();
            assert!(
                refused.contains(field),
                "{id:?} {name:?} {email:?}: {refused}"
            );
        }
        assert_eq!(
            format!("{ok:?}"),
            "VerifiedIdentity { .. }",
            "no personal data in logs"
        );
    }

    #[test]
    fn livechat_accepts_every_truthy_shape_the_bot_sends() {
        for truthy in [
            json!(true),
            json!("true"),
            json!("True"),
            json!("TRUE"),
            json!("yes"),
            json!(" yes "),
            json!(["true"]),
            json!([true]),
            json!(1),
        ] {
            let parsed = OutputAdditions::parse(&json!({ "livechat": truthy.clone() }));
            assert!(parsed.livechat, "{truthy} should mean livechat");
        }
    }

    #[test]
    fn livechat_is_false_for_absent_empty_false_and_garbage() {
        for falsy in [
            json!(false),
            json!("false"),
            json!(""),
            json!("no"),
            json!("maybe"),
            json!(null),
            json!([]),
            json!([["true"]]),
            json!({"value": true}),
            json!(2),
        ] {
            let parsed = OutputAdditions::parse(&json!({ "livechat": falsy.clone() }));
            assert!(!parsed.livechat, "{falsy} should not mean livechat");
        }
        assert!(!OutputAdditions::parse(&json!({})).livechat);
        assert_eq!(
            OutputAdditions::parse(&json!("livechat")),
            OutputAdditions::default()
        );
    }

    #[test]
    fn optional_additions_are_trimmed_and_empty_means_unset() {
        let parsed = OutputAdditions::parse(&json!({
            "livechat": "true",
            "skill": " billing ",
            "mscWebstore": "",
            "mscChannel": ["WebChat"],
        }));
        assert_eq!(parsed.skill.as_deref(), Some("billing"));
        assert_eq!(parsed.msc_webstore, None);
        assert_eq!(parsed.msc_channel.as_deref(), Some("WebChat"));
    }

    #[test]
    fn addition_keys_match_regardless_of_case() {
        let parsed = OutputAdditions::parse(&json!({
            "LiveChat": "yes",
            "MSCWEBSTORE": "NL-shop",
            "Prechat": true,
        }));
        assert!(parsed.livechat);
        assert!(parsed.prechat);
        assert_eq!(parsed.msc_webstore.as_deref(), Some("NL-shop"));
    }

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in [
            SessionState::Prechat,
            SessionState::HandingOver,
            SessionState::HandedOver,
            SessionState::Ended,
        ] {
            assert_eq!(state.as_str().parse::<SessionState>(), Ok(state));
        }
        assert!("with_bot".parse::<SessionState>().is_err());
        assert_eq!("online".parse::<AgentStatus>(), Ok(AgentStatus::Online));
        assert_eq!(AgentStatus::from_available(false), AgentStatus::Offline);
    }

    #[test]
    fn intake_values_never_show_in_debug_output() {
        let answer = IntakeAnswer {
            name: "email".into(),
            value: "jane@example.com".into(),
        };
        let shown = format!("{answer:?}");
        assert!(shown.contains("email"));
        assert!(!shown.contains("jane@example.com"));
    }

    #[test]
    fn session_ids_and_idempotency_keys_are_checked_where_they_enter() {
        assert!(SessionId::parse("3f9c2a1e-5d2b_AZ09").is_ok());
        for bad in ["", "a b", "\u{e4}", &"a".repeat(129)] {
            assert_eq!(SessionId::parse(bad), Err(InvalidSessionId), "{bad:?}");
        }
        assert_eq!(
            IdempotencyKey::parse(" msg:0001.a ").map(|k| k.as_str().to_owned()),
            Ok("msg:0001.a".to_owned())
        );
        assert!(IdempotencyKey::parse("no spaces").is_err());
    }

    #[test]
    fn a_handed_over_session_cannot_jump_back_to_prechat_while_locked() {
        assert!(!Phase::HandedOver.may_become(Phase::Prechat));
        assert!(!Phase::HandedOver.may_become(Phase::HandingOver));
        assert!(!Phase::WithBot.may_become(Phase::HandingOver));
        assert!(!Phase::Prechat.may_become(Phase::HandedOver));
        assert!(Phase::LeaseExpired.may_become(Phase::HandingOver));
    }
}
