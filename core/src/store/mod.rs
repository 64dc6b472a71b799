//! The session store port: every transition of the handover state machine, each one a conditional
//! write that states what it expects. Adapters: [`memory::MemoryStore`] and [`dynamodb::DynamoDbStore`];
//! both pass the one contract suite in `tests/`.
//!
//! The port is split in small traits so that each function's handler can take only the operations it
//! needs (and its IAM role can allow only the matching DynamoDB actions).

pub mod dynamodb;
pub mod memory;

use async_trait::async_trait;

use crate::domain::{
    with_events, ConnectionId, HandoverChange, HistoryEvent, HolderToken, IntakeAnswer,
    IntakeStart, QueuedMessage, Session, SessionState, QUEUE_LIMIT, QUEUE_LIMIT_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the call (network, throttling, missing table...).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// An item exists but cannot be read as a session. Never silently treated as absent: that could
    /// hand a locked conversation back to the bot.
    #[error("stored session {session_id:?} is unreadable: {reason}")]
    Corrupt { session_id: String, reason: String },
}

pub use crate::domain::LockPolicy;

/// The conditions of every transition, stated once. The DynamoDB adapter writes the same rules as
/// condition expressions; the memory adapter evaluates these directly. The contract suite holds both
/// to the same behaviour.
pub mod rules {
    use super::*;

    /// A new or refreshed intake may not displace a live claim or a live lock (an ended handover is
    /// neither: the bot answers it).
    pub fn may_start_intake(current: Option<&Session>, now: i64) -> bool {
        match current {
            None => true,
            Some(s) => {
                !s.is_live(now) || matches!(s.state, SessionState::Prechat | SessionState::Ended)
            }
        }
    }

    /// A live intake may be claimed; so may a claim whose lease expired (its holder crashed).
    pub fn may_claim(current: Option<&Session>, now: i64) -> bool {
        match current {
            None => false,
            Some(s) => match s.state {
                SessionState::Prechat => s.is_live(now),
                SessionState::HandingOver => !s.is_live(now),
                SessionState::HandedOver | SessionState::Ended => false,
            },
        }
    }

    /// Completion and release belong to the holder of the claim token. The lease is deliberately not
    /// checked: a holder whose lease ran out while MSC accepted the conversation still completes it, as
    /// long as nobody took over (which would have changed the token).
    pub fn holds_claim(current: Option<&Session>, token: &HolderToken) -> bool {
        current.is_some_and(|s| s.state == SessionState::HandingOver && s.token == *token)
    }

    /// Abandoning an intake belongs to whoever started that very intake.
    pub fn holds_intake(current: Option<&Session>, token: &HolderToken, now: i64) -> bool {
        current.is_some_and(|s| {
            s.state == SessionState::Prechat && s.token == *token && s.is_live(now)
        })
    }

    pub fn may_slide(current: Option<&Session>, policy: &LockPolicy, now: i64) -> bool {
        current.is_some_and(|s| policy.slide_due(s, now))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartIntakeOutcome {
    /// The session is `prechat` now; its token guards [`IntakeStore::abandon_intake`].
    Started(Session),
    /// A live claim or lock is in the way; the session is untouched.
    Busy(Session),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller holds the session now (`handing_over`, fresh token, short lease).
    Claimed(Session),
    /// Another holder's lease is running.
    AlreadyClaimed(Session),
    /// The handover happened already; the session is locked.
    AlreadyHandedOver(Session),
    /// No live intake to hand over (never started, abandoned, or expired).
    NoIntake,
}

impl ClaimOutcome {
    /// What a refused claim means, from the item the refusal returned. `our_token` is the token this
    /// claim tried to write: finding it means an earlier attempt of this very call succeeded (the SDK
    /// retried after a lost response), so the claim is ours.
    pub fn refused(current: Option<Session>, our_token: Option<&HolderToken>, now: i64) -> Self {
        match current {
            Some(s) if s.state == SessionState::HandingOver && Some(&s.token) == our_token => {
                ClaimOutcome::Claimed(s)
            }
            Some(s) if s.is_live(now) => match s.state {
                SessionState::HandingOver => ClaimOutcome::AlreadyClaimed(s),
                SessionState::HandedOver => ClaimOutcome::AlreadyHandedOver(s),
                // A live prechat is always claimable; seeing one here means it changed under us.
                SessionState::Prechat | SessionState::Ended => ClaimOutcome::NoIntake,
            },
            _ => ClaimOutcome::NoIntake,
        }
    }
}

/// The result of a transition guarded by a token.
// Returned once per store call and never kept in bulk: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded<T> {
    Applied(T),
    /// The caller's token no longer holds the session; nothing changed. `current` is the live session,
    /// if any, as the refusal found it.
    Refused {
        current: Option<Session>,
    },
}

impl<T> Guarded<T> {
    pub fn refused(current: Option<Session>, now: i64) -> Self {
        Guarded::Refused {
            current: current.filter(|s| s.is_live(now)),
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    pub fn is_applied(&self) -> bool {
        matches!(self, Guarded::Applied(_))
    }
}

// Returned once per store call and never kept in bulk: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlideOutcome {
    /// The lock now expires `SESSION_LOCK_SECS` from now.
    Slid(Session),
    /// Written less than one interval ago (by us or a concurrent call): nothing written.
    NotDue,
    /// The session is not handed over (or its lock expired): nothing to slide.
    NotHandedOver,
}

impl SlideOutcome {
    /// Why a slide wrote nothing: a live lock is simply fresh; anything else is not a lock at all.
    pub fn refused(current: Option<&Session>, now: i64) -> Self {
        match current {
            Some(s) if s.state == SessionState::HandedOver && s.is_live(now) => {
                SlideOutcome::NotDue
            }
            _ => SlideOutcome::NotHandedOver,
        }
    }
}

#[async_trait]
pub trait SessionReader: Send + Sync {
    /// Consistent read; an expired item is absent whatever the table still holds.
    async fn get(&self, session_id: &str) -> Result<Option<Session>, StoreError>;

    /// Consistent read of the item as stored, expired or not: what tells a lock that lapsed from a
    /// conversation that never had one.
    async fn get_stored(&self, session_id: &str) -> Result<Option<Session>, StoreError>;
}

#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// Creates or refreshes a `prechat` session unless a live claim or lock is in the way.
    async fn start_intake(&self, start: &IntakeStart) -> Result<StartIntakeOutcome, StoreError>;

    /// Undoes [`IntakeStore::start_intake`] when the rest of the flow's start failed.
    async fn abandon_intake(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<()>, StoreError>;
}

#[async_trait]
pub trait HandoverStore: Send + Sync {
    /// `prechat` → `handing_over` with a fresh token, recording the intake answers.
    async fn claim(
        &self,
        session_id: &str,
        intake: &[IntakeAnswer],
    ) -> Result<ClaimOutcome, StoreError>;

    /// `handing_over` (same token) → `handed_over`: locks the session and drops the intake answers.
    async fn complete(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<Session>, StoreError>;

    /// `handing_over` (same token) → `ended` (`handover_failed`): back to the bot, MSC's `refusal` in
    /// the history, queued messages kept for the bot to answer.
    async fn release(
        &self,
        session_id: &str,
        token: &HolderToken,
        refusal: &str,
    ) -> Result<Guarded<()>, StoreError>;

    /// Queues an end user's message behind a live `handing_over` session, within
    /// [`crate::domain::QUEUE_LIMIT`] messages and [`crate::domain::QUEUE_LIMIT_BYTES`].
    async fn enqueue(
        &self,
        session_id: &str,
        message: &QueuedMessage,
    ) -> Result<Enqueued, StoreError>;

    /// Forgets the queued messages: posted to MSC, or answered by the bot.
    async fn clear_queue(&self, session_id: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait LockSlider: Send + Sync {
    /// Slides a `handed_over` lock, writing at most once per [`LockPolicy::slide_interval_secs`].
    async fn slide_lock(&self, session: &Session) -> Result<SlideOutcome, StoreError>;
}

/// What queueing a message behind a handover did.
// Returned once per store call and never kept in bulk: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Waiting, at this place (from 1).
    Queued { position: usize },
    /// The queue is at its limit: nothing written.
    Full,
    /// The session is not `handing_over` (any more): nothing written. The live session, if any.
    NotHandingOver(Option<Session>),
}

impl Enqueued {
    /// Why an enqueue wrote nothing, from the session as the refusal found it.
    pub fn refused(current: Option<Session>, now: i64) -> Self {
        match current.filter(|s| s.is_live(now)) {
            Some(s) if s.state == SessionState::HandingOver => Enqueued::Full,
            other => Enqueued::NotHandingOver(other),
        }
    }
}

/// Whether one more message fits behind the queued ones.
pub fn queue_has_room(queued: &[QueuedMessage], message: &QueuedMessage) -> bool {
    let bytes: usize = queued.iter().map(|m| m.text.len()).sum();
    queued.len() < QUEUE_LIMIT && bytes + message.text.len() <= QUEUE_LIMIT_BYTES
}

/// What an amendment of a handed-over session did.
// Returned once per store call and never kept in bulk: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amended {
    /// Written: the session as it now is.
    Applied(Session),
    /// Nothing to write (the agent's message is in the outbox already): the session as it is.
    Unchanged(Session),
    /// No live `handed_over` session (for the end by inactivity, no lapsed one): nothing written. The
    /// session as found, live or not, if there is one.
    NotHandedOver(Option<Session>),
}

/// How often an amendment retries when concurrent ones keep changing the session under it (each
/// retry starts from the item the refusal returned, so it costs one write, no read).
pub const AMEND_ATTEMPTS: usize = 64;

/// The agent's side of a handover: MSC's webhooks and the operator's release.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Applies `change` ([`crate::domain::apply`]) to a live `handed_over` session in one conditional
    /// write on the session's version, so concurrent changes take turns and none is lost. The one
    /// change that applies to a lock that has lapsed instead is `End(Inactivity)`.
    async fn amend_handover(
        &self,
        session_id: &str,
        change: &HandoverChange,
    ) -> Result<Amended, StoreError>;

    /// Remembers which session MSC's conversation `guid` belongs to (MSC's events name only that), or
    /// refreshes the link: one conditional write, refused while the link names another session.
    async fn link_msc_conversation(
        &self,
        guid: &str,
        session_id: &str,
    ) -> Result<Linked, StoreError>;

    /// The session MSC's conversation `guid` belongs to, if it was linked.
    async fn find_msc_conversation(&self, guid: &str) -> Result<Option<String>, StoreError>;
}

/// A link from an MSC conversation to its session is kept this long after it was last written.
pub const MSC_LINK_SECS: i64 = 7 * 86_400;

/// What linking an MSC conversation to a session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// The conversation is this session's (newly, or again: the link's life starts over).
    Linked,
    /// A live link names another session: nothing written. A conversation belongs to the first
    /// session it was linked to, so one session's agent can never reach into another's.
    TakenByAnother,
}

/// What an idempotency key found when a request began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is this request's now: process it, then `finish_request` or `abandon_request`.
    Fresh,
    /// Another request with this key is being processed.
    InProgress,
    /// Processed before: answer with the stored reply (if the fingerprint matches the request's).
    Replay { fingerprint: String, reply: String },
}

/// A pending key is released after this long even if its request died: longer than the function's
/// Lambda timeout, so a live request never loses its key.
pub const IDEMPOTENCY_PENDING_SECS: i64 = 60;
/// Replies are replayed for this long.
pub const IDEMPOTENCY_KEEP_SECS: i64 = 86_400;

/// Idempotency keys of `/v1/messages`: a channel's retry of the same message is processed once.
/// Kept in the sessions table under `idempotency#<key>` (session ids cannot contain `#`).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn begin_request(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyBegin, StoreError>;

    /// Stores the reply of the request that began with `key`.
    async fn finish_request(&self, key: &str, reply: &str) -> Result<(), StoreError>;

    /// Frees `key` after a failed request, so that a retry runs again.
    async fn abandon_request(&self, key: &str) -> Result<(), StoreError>;
}

/// What one more use of a quota found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Counted; within the limit.
    Within,
    /// The window's uses are spent: nothing counted; a new window starts in this many seconds.
    Spent { retry_after_secs: i64 },
}

/// Quotas of what pages may do (tokens minted per address, messages per conversation), counted in
/// fixed windows that every instance shares, under `quota#<key>#<window start>` in the sessions
/// table. A use whose write response was lost may be counted twice: a quota errs on the strict side
/// by one.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Counts one use of `key` in the current window of `window_secs` if fewer than `limit` were.
    async fn take_quota(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Quota, StoreError>;
}

/// The window `now` falls in, as its start, and the seconds left of it.
pub(crate) fn quota_window(now: i64, window_secs: i64) -> (i64, i64) {
    let window_secs = window_secs.max(1);
    let start = now - now.rem_euclid(window_secs);
    (start, start + window_secs - now)
}

/// A live connection is kept this long after it registered: API Gateway closes every connection
/// after two hours, and the margin covers clocks and a registration made late in the handshake.
pub const CONNECTION_SECS: i64 = 2 * 3_600 + 600;
/// A conversation's live connections (one per open tab): past this, the oldest are let go.
pub const CONNECTIONS_PER_CONVERSATION: usize = 10;

/// What registering a live connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Registered: every message announced from now on is pushed to it. `evicted` are the
    /// conversation's oldest connections, dropped to stay within [`CONNECTIONS_PER_CONVERSATION`]:
    /// the caller closes them.
    Registered { evicted: Vec<ConnectionId> },
    /// A message newer than `seen` was announced since: nothing written. Read the outbox again and
    /// register with a `seen` of at least `announced`.
    Behind { announced: u64 },
}

/// The pages' live connections of each conversation, and the highest outbox cursor announced to
/// them, under `live#<session id>` in the sessions table. Together they make each message reach each
/// connection once: a writer announces a message after storing it (and pushes it to the connections
/// the announcement returns); a page registers only if nothing newer than what it read was announced
/// and records what it read as `seen`; a message is pushed only to connections that had not seen it.
/// So what a page read plus what is pushed to it is everything, without overlap.
#[async_trait]
pub trait LiveStore: Send + Sync {
    /// Registers `connection` for `session_id`, unless a message newer than `seen` (the outbox's
    /// last cursor as the caller read it) was announced.
    async fn register_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
        seen: u64,
    ) -> Result<Registered, StoreError>;

    /// Records that the message at `cursor` is stored, and returns the connections to push it to:
    /// those registered now (unexpired) whose page had not read it yet (their `seen` is below
    /// `cursor`). One write, whether or not any page is connected.
    async fn announce(
        &self,
        session_id: &str,
        cursor: u64,
    ) -> Result<Vec<ConnectionId>, StoreError>;

    /// The connections registered now, each with the cursor its page had read: what a writer looks up
    /// beside its write, to push without waiting for the announcement (an eventually consistent read:
    /// a connection it misses is in the announcement's answer).
    async fn connections(&self, session_id: &str) -> Result<Vec<(ConnectionId, u64)>, StoreError>;

    /// Forgets a connection that is gone (API Gateway answered 410).
    async fn remove_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
    ) -> Result<(), StoreError>;
}

/// The connections past the limit, oldest first, from `(connection, registered until)` pairs.
pub(crate) fn over_the_limit(mut connections: Vec<(ConnectionId, i64)>) -> Vec<ConnectionId> {
    connections.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let over = connections
        .len()
        .saturating_sub(CONNECTIONS_PER_CONVERSATION);
    connections
        .into_iter()
        .take(over)
        .map(|(id, _)| id)
        .collect()
}

/// What one send to MSC was given by [`PaceStore::reserve_send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// This send may go at this time (epoch milliseconds; now or a little later).
    At(i64),
    /// No slot before `latest`: nothing reserved. The next free slot is at this time.
    NotBefore(i64),
}

/// The pace of every request to MSC's API, shared by every instance of every function that posts to
/// MSC: one item (`pace#msc` in the sessions table) holding the earliest time the next send may go.
/// Each send reserves the next slot and moves it on by `interval_ms`, so sends are spaced at least
/// that far apart whoever makes them; a send that finds the slot in the past goes at once.
#[async_trait]
pub trait PaceStore: Send + Sync {
    /// Reserves the next slot at or after `now_ms`, unless it is later than `latest_ms`.
    async fn reserve_send(
        &self,
        now_ms: i64,
        interval_ms: i64,
        latest_ms: i64,
    ) -> Result<Reserved, StoreError>;

    /// No send before `until_ms` (MSC asked for a pause, or failed): moves the next slot there
    /// unless it is later already.
    async fn hold_sends(&self, until_ms: i64) -> Result<(), StoreError>;
}

/// Every operation; what an adapter implements and what a function that needs them all takes.
pub trait SessionStore:
    SessionReader
    + IntakeStore
    + HandoverStore
    + LockSlider
    + AgentStore
    + IdempotencyStore
    + QuotaStore
    + LiveStore
    + PaceStore
{
}

impl<T> SessionStore for T where
    T: SessionReader
        + IntakeStore
        + HandoverStore
        + LockSlider
        + AgentStore
        + IdempotencyStore
        + QuotaStore
        + LiveStore
        + PaceStore
{
}

/// What a claim adds to the history: the intake saved (how many answers, never what they are).
pub(crate) fn claimed_event(intake: &[IntakeAnswer], now: i64) -> HistoryEvent {
    HistoryEvent::new(
        now,
        "claimed",
        Some(format!("intake answers: {}", intake.len())),
    )
}

/// What a completion adds: MSC accepted, locked until when.
pub(crate) fn completed_events(now: i64, locked_until: i64) -> Vec<HistoryEvent> {
    vec![
        HistoryEvent::new(now, "msc_accepted", None),
        HistoryEvent::new(now, "locked", Some(crate::clock::rfc3339(locked_until))),
    ]
}

/// What a release adds: why MSC did not take it, and back to the bot.
pub(crate) fn released_events(refusal: &str, now: i64) -> Vec<HistoryEvent> {
    vec![
        HistoryEvent::new(now, "msc_refused", Some(refusal.to_owned())),
        HistoryEvent::new(now, "released", None),
    ]
}

/// What a released claim becomes: ended by the failed handover, back with the bot, its history and
/// any queued messages kept (as long as a lock would last), the intake answers and transcript gone.
pub(crate) fn end_failed_handover(
    session: &mut Session,
    policy: &LockPolicy,
    refusal: &str,
    now: i64,
) {
    session.state = SessionState::Ended;
    session.agent.end_reason = Some(crate::domain::EndReason::HandoverFailed);
    session.intake.clear();
    session.transcript.clear();
    session.expires_at = policy.lock_expiry(now);
    session.updated_at = now;
    session.history = with_events(&session.history, &released_events(refusal, now));
}

/// The `prechat` session a start of intake writes, the same for every adapter.
pub(crate) fn intake_session(start: &IntakeStart, policy: &LockPolicy, now: i64) -> Session {
    let token = HolderToken::generate();
    Session {
        session_id: start.session_id.clone(),
        state: SessionState::Prechat,
        intake_id: token.as_str().to_owned(),
        token,
        skill: start.skill.clone(),
        webstore: start.webstore.clone(),
        channel: start.channel.clone(),
        agent_status: start.agent_status,
        end_user_url: start.end_user_url.clone(),
        culture: start.culture.clone(),
        intake: Vec::new(),
        expires_at: policy.prechat_expiry(now),
        updated_at: now,
        started_at: now,
        agent: crate::domain::AgentSide {
            outbox: start.outbox.clone(),
            last_cursor: start.last_cursor,
            ..Default::default()
        },
        queued: Vec::new(),
        transcript: start.transcript.clone(),
        relation_name: None,
        verified: start.verified.clone(),
        history: crate::domain::with_events(&start.history, &[]),
    }
}
