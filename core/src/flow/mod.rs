//! The use cases of the handover flow. Each one takes only the ports it needs; the HTTP handlers in
//! [`crate::http`] are thin shells over these.

pub mod agent;
pub mod live;
pub mod outbound;
pub mod waiting;

use std::sync::Arc;

use crate::caic::{Answer, Caic, CaicError};
use crate::channel::ChannelPush;
use crate::clock::Clock;
use crate::domain::{
    relation_name, text, with_events, AgentStatus, EndReason, HistoryEvent, IdempotencyKey,
    IntakeAnswer, IntakeStart, QueuedMessage, Session, SessionId, SessionState, Speaker, Turn,
};
use crate::hours::{BusinessHours, Hours};
use crate::metrics;
use crate::msc::{MscError, MscMessages, OutgoingMessage, Presence};
use crate::outbound::{Held, HeldUpload, Outbound};
use crate::store::{
    ClaimOutcome, Enqueued, Guarded, HandoverStore, SessionStore, SlideOutcome, StartIntakeOutcome,
    StoreError,
};
use crate::telemetry::ErrorChain;
use crate::waits::Waits;

const ANONYMOUS_RELATION: &str = "Website visitor";

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Caic(#[from] CaicError),
    #[error(transparent)]
    Msc(#[from] MscError),
    #[error("the handover is being made and its queue of messages is full")]
    QueueFull,
    #[error("a file was sent while the bot answers")]
    FilesNeedAgent,
    #[error(transparent)]
    FileRefused(crate::domain::files::FileRefused),
    #[error("the upload a message names is not there")]
    UploadNotFound,
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
}

/// Whether an agent can take a conversation now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// `cached`: the answer was a recent one reused.
    Online {
        cached: bool,
    },
    Offline {
        cached: bool,
    },
    /// Outside business hours: MSC was not asked. When it opens next (epoch seconds), if known.
    Closed {
        opens_at: Option<i64>,
    },
}

impl Availability {
    pub fn agent_status(self) -> AgentStatus {
        match self {
            Availability::Online { .. } => AgentStatus::Online,
            Availability::Offline { .. } | Availability::Closed { .. } => AgentStatus::Offline,
        }
    }

    /// Where the answer came from, for the session's history.
    pub fn source(self) -> &'static str {
        match self {
            Availability::Online { cached: true } | Availability::Offline { cached: true } => {
                "cached"
            }
            Availability::Online { .. } | Availability::Offline { .. } => "asked",
            Availability::Closed { .. } => "closed",
        }
    }
}

/// Rule 2: outside business hours no agent is there; inside them MSC is asked, and any failure or "no"
/// is offline.
pub async fn availability(
    presence: &dyn Presence,
    hours: &BusinessHours,
    channel: &str,
    skill: Option<&str>,
    referrer: Option<&str>,
    now: i64,
) -> Availability {
    if let Hours::Closed { opens_at } = hours.at(channel, skill, now) {
        tracing::info!(presence = "closed", "outside business hours; MSC not asked");
        metrics::count_outcome("Presence", "Result", "closed");
        return Availability::Closed { opens_at };
    }
    let answer = presence.agent_available(channel, referrer).await;
    match answer.online {
        true => Availability::Online {
            cached: answer.cached,
        },
        false => Availability::Offline {
            cached: answer.cached,
        },
    }
}

/// Presence is asked for the webstore when there is one, else for the page the end user is on.
pub fn presence_referrer<'a>(
    webstore: Option<&'a str>,
    end_user_url: Option<&'a str>,
) -> Option<&'a str> {
    webstore.or(end_user_url)
}

#[derive(Debug)]
pub enum HandoverOutcome {
    /// This call handed the conversation over.
    HandedOver(Session),
    /// It had been handed over before: reported, MSC not called again.
    AlreadyHandedOver(Session),
    /// Another caller holds the claim right now.
    InProgress,
    /// No live intake: nothing to hand over.
    NoIntake,
    /// MSC did not accept the conversation; the claim was released and the bot answers again.
    Refused(MscError),
}

impl HandoverOutcome {
    /// As logged and as the operator route reports it.
    pub fn name(&self) -> &'static str {
        match self {
            HandoverOutcome::HandedOver(_) => "handed_over",
            HandoverOutcome::AlreadyHandedOver(_) => "already_handed_over",
            HandoverOutcome::InProgress => "in_progress",
            HandoverOutcome::NoIntake => "no_intake",
            HandoverOutcome::Refused(_) => "msc_refused",
        }
    }

    pub fn handed_over(&self) -> bool {
        matches!(
            self,
            HandoverOutcome::HandedOver(_) | HandoverOutcome::AlreadyHandedOver(_)
        )
    }
}

/// Rule 5: claim, post to MSC, lock (rule 6); any failure releases (rule 7). Idempotent: the claim
/// makes racing callers (webhook, answer stream, operator) one handover.
/// The handover's own message does not wait in the outbound queue: it takes the next slot of MSC's
/// pace ahead of whatever the queue holds (the drainer reserves one slot at a time), so the caller
/// learns within [`crate::msc::HANDOVER_MAX_WAIT`] and MSC's timeout whether MSC took it; not taken
/// by then is a failed handover (rule 7). What waited behind it is held in the queue once it is
/// locked. The wait for an agent (`waits`) starts with the post.
pub async fn hand_over<S: HandoverStore + ?Sized>(
    store: &S,
    msc: &dyn MscMessages,
    outbound: &dyn Outbound,
    clock: &dyn Clock,
    waits: &Waits,
    session_id: &SessionId,
    intake: &[IntakeAnswer],
) -> Result<HandoverOutcome, StoreError> {
    let claim = match store.claim(session_id, intake).await? {
        ClaimOutcome::Claimed(claim) => claim,
        ClaimOutcome::AlreadyClaimed(_) => return Ok(HandoverOutcome::InProgress),
        ClaimOutcome::AlreadyHandedOver(s) => return Ok(HandoverOutcome::AlreadyHandedOver(s)),
        ClaimOutcome::NoIntake => return Ok(HandoverOutcome::NoIntake),
    };
    let message = handover_message(&claim, clock.now());
    // The wait for an agent starts beside the post rather than after the lock, so the caller (CAIC's
    // end slot holds the end user's last intake turn) waits for no Scheduler round trip; a handover
    // MSC refuses leaves a timer that fires into a check that changes nothing.
    let (posted, ()) = tokio::join!(msc.post(&message), waits.start(&claim, 1, clock.now()));
    if let Err(err) = posted {
        tracing::warn!(
            error = %ErrorChain(&err),
            end_reason = EndReason::HandoverFailed.as_str(),
            "msc refused the handover; releasing the session to the bot"
        );
        metrics::count_outcome("HandoversFailed", "Reason", &failure_reason(&err));
        release_quietly(store, &claim, &failure_reason(&err)).await;
        return Ok(HandoverOutcome::Refused(err));
    }
    match complete_with_retries(store, session_id, &claim.token).await {
        Ok(Guarded::Applied(locked)) => {
            tracing::info!(
                expires_at = locked.expires_at,
                "session handed over and locked"
            );
            metrics::count("HandoversCompleted");
            let waited = clock.now().saturating_sub(locked.started_at);
            metrics::milliseconds("TimeToAgent", (waited * 1_000) as f64);
            if !locked.queued.is_empty() {
                hold_queued(store, outbound, &locked, &message.relation_name).await;
            }
            Ok(HandoverOutcome::HandedOver(locked))
        }
        Ok(Guarded::Refused { current }) => {
            // Our lease ran out while MSC was answering and another caller took over; it will post
            // its own handover. Say so, loudly: MSC may now hold two messages for one conversation.
            tracing::error!(
                current_state = ?current.as_ref().map(|s| s.state),
                "claim lost before completion; another holder took over"
            );
            Ok(HandoverOutcome::InProgress)
        }
        Err(err) => {
            // MSC has the conversation but the lock was not written. The claim stays as the trace:
            // messages queue behind it, and once its lease ends the next end-user turn takes it over
            // and finishes the handover (MSC drops the repeated handover message by its id).
            tracing::error!(error = %err, "msc accepted the handover but the lock could not be written");
            Err(err)
        }
    }
}

/// The pauses before the completing write is tried again: MSC has the conversation, so the lock is
/// worth waiting for, within a webhook's time (the SDK also retries each try).
const COMPLETE_RETRIES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(200),
    std::time::Duration::from_millis(600),
];

async fn complete_with_retries<S: HandoverStore + ?Sized>(
    store: &S,
    session_id: &SessionId,
    token: &crate::domain::HolderToken,
) -> Result<Guarded<Session>, StoreError> {
    let mut pauses = COMPLETE_RETRIES.iter();
    loop {
        match store.complete(session_id, token).await {
            // An agent's reply finished this very claim's lock first (see `agent::agent_reply`):
            // the handover is made, by us.
            Ok(Guarded::Refused {
                current: Some(current),
            }) if current.state == SessionState::HandedOver && current.token == *token => {
                return Ok(Guarded::Applied(current))
            }
            Err(err) => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(error = %err, "the lock could not be written; trying again");
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(err),
            },
            done => return done,
        }
    }
}

/// How a refused handover is counted: MSC's status, a timeout, or no answer at all.
fn failure_reason(err: &MscError) -> String {
    match err {
        MscError::Status(status) => format!("msc_status_{status}"),
        MscError::Timeout => "msc_timeout".to_owned(),
        MscError::Transport(_) => "msc_unreachable".to_owned(),
        MscError::Busy { .. } => "msc_busy".to_owned(),
    }
}

async fn release_quietly<S: HandoverStore + ?Sized>(store: &S, claim: &Session, refusal: &str) {
    match store
        .release(&claim.session_id, &claim.token, refusal)
        .await
    {
        Ok(Guarded::Applied(())) => {}
        Ok(Guarded::Refused { .. }) => {
            tracing::warn!("release refused: the claim had already been taken over")
        }
        // The lease expires on its own: the bot answers again after CLAIM_LEASE_SECS at the latest.
        Err(err) => tracing::error!(error = %err, "release failed; the lease will expire"),
    }
}

/// The name every message to MSC carries for the end user: the one the site verified, else the
/// intake's, else an anonymous one.
fn relation_of(session: &Session) -> String {
    session
        .verified
        .as_ref()
        .and_then(|identity| identity.name.clone())
        .or_else(|| session.relation_name.clone())
        .or_else(|| relation_name(&session.intake))
        .unwrap_or_else(|| ANONYMOUS_RELATION.to_owned())
}

/// The handover message: what the agent reads first. The conversation with the bot before the
/// handover, the intake answers and the page, formatted for an agent inbox; routing from the saved
/// additions.
pub fn handover_message(claim: &Session, now: i64) -> OutgoingMessage {
    // Every value from the end user, the bot or the channel goes through `text::labelled`, which
    // quotes its later lines: no value can add a line that reads as the service's own.
    let mut content = String::from("Conversation handed over by the chatbot.");
    if let Some(skill) = claim
        .skill
        .as_deref()
        .and_then(|s| text::clean_name(s, 100))
    {
        content.push_str(&format!(" Topic: {skill}."));
    }
    if !claim.transcript.is_empty() {
        content.push_str("\n\nBefore the handover:");
        for turn in &claim.transcript {
            let (speaker, said) = match turn.from {
                Speaker::User => ("Customer", turn.text.clone()),
                Speaker::Bot => ("Chatbot", text::plain_text(&turn.text)),
            };
            content.push('\n');
            content.push_str(&text::labelled(speaker, &said));
        }
    }
    if let Some(identity) = &claim.verified {
        content.push_str("\n\nVerified by the site:");
        content.push('\n');
        content.push_str(&text::labelled("Customer id", &identity.external_id));
        for (label, value) in [("Name", &identity.name), ("E-mail", &identity.email)] {
            if let Some(value) = value {
                content.push('\n');
                content.push_str(&text::labelled(label, value));
            }
        }
    }
    if !claim.intake.is_empty() {
        content.push_str(if claim.verified.is_some() {
            "\n\nIntake (typed by the end user, not verified):"
        } else {
            "\n\nIntake:"
        });
        for answer in &claim.intake {
            content.push('\n');
            content.push_str(&text::labelled(&answer.name, &answer.value));
        }
    }
    if let Some(page) = &claim.end_user_url {
        content.push_str("\n\n");
        content.push_str(&text::labelled("Page", page));
    }
    // Same intake → same id, whichever claim posts it: MSC can drop a duplicate of this handover
    // (a retry after a timeout whose post did arrive, a take-over after a crash).
    let id = format!("{}-handover-{}", claim.session_id, claim.intake_id);
    OutgoingMessage {
        subject: Some(match &claim.skill {
            Some(skill) => format!("Chatbot handover: {skill}"),
            None => "Chatbot handover".to_owned(),
        }),
        // A new MSC conversation: not threaded into an earlier handover's.
        conversation_guid: None,
        ..for_msc(claim, id, relation_of(claim), content, now)
    }
}

/// A message of this session's conversation for MSC, routed and threaded as the session is.
fn for_msc(
    session: &Session,
    message_id: String,
    relation_name: String,
    content: String,
    sent_at: i64,
) -> OutgoingMessage {
    OutgoingMessage {
        conversation_id: session.session_id.clone(),
        message_id,
        relation_id: session.verified.as_ref().map_or_else(
            || session.session_id.clone(),
            |identity| identity.external_id.clone(),
        ),
        relation_name,
        content,
        referrer: presence_referrer(session.webstore.as_deref(), session.end_user_url.as_deref())
            .map(str::to_owned),
        routing_skill: session.skill.clone(),
        subject: None,
        conversation_guid: session.agent.msc_conversation.clone(),
        sent_at,
        attachments: Vec::new(),
        is_private: false,
    }
}

#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub session_id: Option<SessionId>,
    pub text: String,
    pub culture: Option<String>,
    pub end_user_url: Option<String>,
    /// Earlier turns the channel sent along (`history`): kept for the agent when this turn starts a
    /// handover, ignored otherwise.
    pub history: Vec<Turn>,
    /// The channel's idempotency key, if it sent one: a relayed message then keeps one MSC message id
    /// across the channel's retries.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who the site vouched for (from the caller's conversation token): kept when this turn starts a
    /// handover.
    pub verified: Option<crate::domain::VerifiedIdentity>,
    /// A file the end user uploaded for the agent (`POST /v1/uploads`), sent with this message.
    pub upload: Option<Upload>,
    /// The end user's answer to "nobody came yet": handled by [`waiting::choose`], not the bot or
    /// the agent.
    pub choice: Option<crate::domain::WaitChoice>,
}

/// An end user's upload, as a message names it: its id in the conversation and its declared name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum HandledBy {
    Bot,
    Agent,
}

impl HandledBy {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where an end user's message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    Bot,
    Agent,
    /// It waits behind a handover being made, and goes to the agent with it.
    Queued,
}

impl Routed {
    pub fn handled_by(self) -> HandledBy {
        match self {
            Routed::Bot => HandledBy::Bot,
            Routed::Agent | Routed::Queued => HandledBy::Agent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReply {
    pub session_id: SessionId,
    pub routed: Routed,
    pub answers: Vec<Answer>,
    /// A message for the agent is on its way: held for MSC under this id, which the page is told
    /// again when it reaches MSC (or MSC refuses it).
    pub held: Option<String>,
}

/// Everything answer ingestion touches.
#[derive(Clone)]
pub struct IngestDeps {
    pub store: Arc<dyn SessionStore>,
    pub caic: Arc<dyn Caic>,
    pub presence: Arc<dyn Presence>,
    /// The handover's own post (paced, see [`crate::msc::PacedMsc`]).
    pub msc: Arc<dyn MscMessages>,
    /// Where every other message for MSC is held until the drainer delivers it.
    pub outbound: Arc<dyn Outbound>,
    pub clock: Arc<dyn Clock>,
    pub channel: Arc<dyn ChannelPush>,
    pub default_channel: String,
    pub default_culture: String,
    /// `TRANSCRIPT_TURNS`: how many of the channel's earlier turns the handover message shows.
    pub transcript_turns: usize,
    pub hours: Arc<BusinessHours>,
    /// What an end user may send the agent, and where it waits until the relay fetches it.
    pub files: crate::files::Files,
    /// The wait for an agent after a handover, and its timers.
    pub waits: Waits,
}

/// One end-user turn: the session lock decides who answers (rule 6); a `livechat` answer starts the
/// flow (rules 1-4); a `prechat` addition on a `prechat` session completes it (rule 5).
pub async fn ingest(deps: &IngestDeps, message: IncomingMessage) -> Result<IngestReply, FlowError> {
    let Some(session_id) = &message.session_id else {
        return answer_with_bot(deps, &message, None).await;
    };
    let stored = match deps.store.get_stored(session_id).await {
        Ok(stored) => stored,
        // A file is for the agent only, and without the store nobody knows whether one has it.
        Err(err) if message.upload.is_some() => return Err(err.into()),
        // Rule 7: with the store down nobody can be handed over, and the bot is the one that can
        // still answer. A live lock is ignored for the outage; no flow starts meanwhile.
        Err(err) => {
            tracing::error!(error = %err, "session store unreadable; the bot answers");
            return ask_bot_only(deps, &message).await;
        }
    };
    let found = Found::of(stored, deps.clock.now());
    if message.upload.is_some() {
        // Decided before anything is asked or written: a file the bot would get changes nothing.
        if !deps.files.rules.enabled() {
            return Err(FlowError::FileRefused(
                crate::domain::files::FileRefused::Off,
            ));
        }
        if !matches!(&found, Found::Live(s) if s.state == SessionState::HandedOver) {
            return Err(FlowError::FilesNeedAgent);
        }
    }
    let mut session = settle(deps, session_id, found).await;
    if session.as_ref().map(|s| s.state) == Some(SessionState::HandingOver) {
        match queue_behind_handover(deps, session_id, &message).await? {
            Ok(queued) => return Ok(queued),
            // The handover ended meanwhile: answer as it left the session.
            Err(now) => session = now,
        }
    }
    match session {
        Some(locked) if locked.state == SessionState::HandedOver => {
            relay_to_agent(deps, session_id, &locked, &message).await
        }
        session => answer_with_bot(deps, &message, session).await,
    }
}

/// What a turn finds stored, decided from the item alone.
enum Found {
    /// No session, or one that expired: the bot answers.
    Nothing,
    Live(Session),
    /// A claim whose holder never finished (it crashed, or MSC accepted and the lock could not be
    /// written), its lease run out.
    UnfinishedClaim(Session),
    /// A lock that lapsed (24 hours without activity) and was not ended yet.
    LapsedLock,
}

impl Found {
    fn of(stored: Option<Session>, now: i64) -> Self {
        match stored {
            None => Found::Nothing,
            Some(session) if session.is_live(now) => Found::Live(session),
            Some(session) => match session.state {
                SessionState::HandingOver => Found::UnfinishedClaim(session),
                SessionState::HandedOver => Found::LapsedLock,
                _ => Found::Nothing,
            },
        }
    }
}

/// Acts on what the turn found, and returns the session the turn goes on with: an unfinished claim is
/// taken over and its handover finished (rather than answer with the bot while an agent may have the
/// conversation; MSC drops a repeat of the handover message by its id), and a lapsed lock's end is
/// recorded and the channel told.
async fn settle(deps: &IngestDeps, session_id: &SessionId, found: Found) -> Option<Session> {
    match found {
        Found::Nothing => None,
        Found::Live(session) => Some(session),
        Found::UnfinishedClaim(claim) => {
            tracing::warn!("a claim was left unfinished; taking it over");
            let finished = hand_over(
                deps.store.as_ref(),
                deps.msc.as_ref(),
                deps.outbound.as_ref(),
                deps.clock.as_ref(),
                &deps.waits,
                session_id,
                &claim.intake,
            )
            .await;
            // Read again: the handover posted (and cleared) what was queued, or left it for this relay.
            match finished {
                Ok(_) => deps.store.get(session_id).await.ok().flatten(),
                Err(err) => {
                    tracing::warn!(error = %err, "could not finish the unfinished claim");
                    None
                }
            }
        }
        Found::LapsedLock => {
            let ended = agent::end_handover(
                deps.store.as_ref(),
                deps.channel.as_ref(),
                session_id,
                EndReason::Inactivity,
            )
            .await;
            ended.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "could not record the end of the lock");
                None
            })
        }
    }
}

/// Nothing is refused while a handover is being made: the message waits behind it. `Err` carries the
/// session as it is when the handover ended meanwhile.
async fn queue_behind_handover(
    deps: &IngestDeps,
    session_id: &SessionId,
    message: &IncomingMessage,
) -> Result<Result<IngestReply, Option<Session>>, FlowError> {
    let waiting = QueuedMessage {
        text: message.text.clone(),
        at: deps.clock.now(),
    };
    match deps.store.enqueue(session_id, &waiting).await? {
        Enqueued::Queued { position } => {
            tracing::info!(position, "message queued behind the handover");
            Ok(Ok(IngestReply {
                session_id: session_id.clone(),
                routed: Routed::Queued,
                answers: Vec::new(),
                held: None,
            }))
        }
        Enqueued::Full => Err(FlowError::QueueFull),
        Enqueued::NotHandingOver(now) => Ok(Err(now)),
    }
}

/// The bot's turn: what waited behind a handover that then failed goes with it; a `prechat` addition
/// on a `prechat` session completes the handover (rule 5); a `livechat` answer starts the flow.
async fn answer_with_bot(
    deps: &IngestDeps,
    message: &IncomingMessage,
    session: Option<Session>,
) -> Result<IngestReply, FlowError> {
    // What the end user wrote while a handover was being made that then failed (or, rarer, that ended
    // before a relay took the queue to MSC): the bot answers it now, with this turn, after saying why.
    let unanswered: Vec<&str> = session
        .as_ref()
        .filter(|s| s.state == SessionState::Ended)
        .map(|s| s.queued.iter().map(|m| m.text.as_str()).collect())
        .unwrap_or_default();
    let text = if unanswered.is_empty() {
        message.text.clone()
    } else {
        [unanswered.as_slice(), &[message.text.as_str()]]
            .concat()
            .join("\n")
    };
    let culture = message
        .culture
        .clone()
        .unwrap_or_else(|| deps.default_culture.clone());
    let reply = deps
        .caic
        .ask(message.session_id.as_deref(), &text, &culture)
        .await?;
    let session_id = reply.session_id.clone();
    let mut answers = reply.answers.clone();
    if !unanswered.is_empty() {
        let ended_by = session.as_ref().and_then(|s| s.agent.end_reason);
        let why = ended_by.unwrap_or(EndReason::HandoverFailed).text();
        answers.insert(0, Answer::text(why));
        if let Err(err) = deps.store.clear_queue(&session_id).await {
            tracing::warn!(error = %err, "could not clear the answered queue; it is answered again next turn");
        }
    }

    let in_prechat = session
        .as_ref()
        .is_some_and(|s| s.state == SessionState::Prechat && s.session_id == session_id.as_str());
    if in_prechat && reply.additions.prechat {
        // The intake dialog's end slot carried the `prechat` event: the same use case as the webhook.
        let outcome = hand_over(
            deps.store.as_ref(),
            deps.msc.as_ref(),
            deps.outbound.as_ref(),
            deps.clock.as_ref(),
            &deps.waits,
            &session_id,
            &[],
        )
        .await?;
        let routed = if outcome.handed_over() {
            Routed::Agent
        } else {
            Routed::Bot
        };
        return Ok(IngestReply {
            session_id,
            routed,
            answers,
            held: None,
        });
    }

    let with_bot = session
        .as_ref()
        .is_none_or(|s| s.state == SessionState::Ended);
    if reply.additions.livechat && with_bot {
        let transcript = transcript(deps.transcript_turns, message, &reply.answers);
        answers.extend(
            start_flow(
                deps,
                &session_id,
                &culture,
                &reply.additions,
                message,
                transcript,
                session.as_ref(),
            )
            .await,
        );
    }
    Ok(IngestReply {
        session_id,
        routed: Routed::Bot,
        answers,
        held: None,
    })
}

async fn ask_bot_only(
    deps: &IngestDeps,
    message: &IncomingMessage,
) -> Result<IngestReply, FlowError> {
    let culture = message.culture.as_deref().unwrap_or(&deps.default_culture);
    let reply = deps
        .caic
        .ask(message.session_id.as_deref(), &message.text, culture)
        .await?;
    Ok(IngestReply {
        session_id: reply.session_id,
        routed: Routed::Bot,
        answers: reply.answers,
        held: None,
    })
}

/// What the agent will read of the conversation before the handover: the last `turns` of the
/// channel's history, the end user's question that made the bot offer a person, and the bot's answer.
fn transcript(turns: usize, message: &IncomingMessage, answers: &[Answer]) -> Vec<Turn> {
    let earlier = message.history.len().saturating_sub(turns);
    let mut transcript = message.history[earlier..].to_vec();
    transcript.push(Turn {
        from: Speaker::User,
        text: message.text.clone(),
    });
    transcript.extend(
        answers
            .iter()
            .filter(|a| !a.text.is_empty())
            .map(|answer| Turn {
                from: Speaker::Bot,
                text: answer.text.clone(),
            }),
    );
    transcript
}

/// Rules 2-4, undone on any failure (rule 7): presence, state, `prechat` event. Returns the event's
/// answers, or nothing when the flow did not start.
async fn start_flow(
    deps: &IngestDeps,
    session_id: &str,
    culture: &str,
    additions: &crate::domain::OutputAdditions,
    message: &IncomingMessage,
    transcript: Vec<Turn>,
    earlier: Option<&Session>,
) -> Vec<Answer> {
    let channel = additions
        .msc_channel
        .clone()
        .unwrap_or_else(|| deps.default_channel.clone());
    let referrer = presence_referrer(
        additions.msc_webstore.as_deref(),
        message.end_user_url.as_deref(),
    );
    let now = deps.clock.now();
    let available = availability(
        deps.presence.as_ref(),
        &deps.hours,
        &channel,
        additions.skill.as_deref(),
        referrer,
        now,
    )
    .await;
    let status = available.agent_status();
    let started = HistoryEvent::new(
        now,
        "flow_started",
        Some(format!(
            "agentStatus={status}, presence={}",
            available.source()
        )),
    );
    let start = IntakeStart {
        session_id: session_id.to_owned(),
        skill: additions.skill.clone(),
        webstore: additions.msc_webstore.clone(),
        channel: Some(channel),
        agent_status: status,
        end_user_url: message.end_user_url.clone(),
        culture: Some(culture.to_owned()),
        transcript,
        history: with_events(earlier.map_or(&[][..], |s| &s.history[..]), &[started]),
        outbox: earlier.map(|s| s.agent.outbox.clone()).unwrap_or_default(),
        last_cursor: earlier.map_or(0, |s| s.agent.last_cursor),
        verified: message.verified.clone(),
    };
    let intake = match deps.store.start_intake(&start).await {
        Ok(StartIntakeOutcome::Started(intake)) => intake,
        Ok(StartIntakeOutcome::Busy(s)) => {
            tracing::warn!(state = %s.state, "livechat answer on a busy session; flow not started");
            return Vec::new();
        }
        Err(err) => {
            tracing::error!(error = %err, "could not save the intake; flow not started");
            return Vec::new();
        }
    };
    match deps.caic.prechat_event(session_id, culture, status).await {
        Ok(event) => {
            tracing::info!(agent_status = %status, "handover flow started");
            metrics::count("HandoversStarted");
            event.answers
        }
        Err(err) => {
            tracing::warn!(error = %ErrorChain(&err), "prechat event failed; flow abandoned");
            if let Err(err) = deps.store.abandon_intake(session_id, &intake.token).await {
                tracing::error!(error = %err, "could not abandon the intake; it expires on its own");
            }
            Vec::new()
        }
    }
}

async fn relay_to_agent(
    deps: &IngestDeps,
    session_id: &SessionId,
    session: &Session,
    message: &IncomingMessage,
) -> Result<IngestReply, FlowError> {
    let now = deps.clock.now();
    let id = match &message.idempotency_key {
        Some(key) => format!("{}-message-{}", session.session_id, key.as_str()),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let mut outgoing = for_msc(session, id, relation_of(session), message.text.clone(), now);
    let upload = match &message.upload {
        Some(upload) => {
            // Checked now, so a refused file is refused in this turn; its bytes go when it is sent.
            let (key, file) = fetch_upload(deps, session_id, upload).await?;
            if outgoing.content.trim().is_empty() {
                outgoing.content = text::labelled("Sent a file", &file.name);
            }
            Some(HeldUpload {
                key,
                name: file.name,
            })
        }
        None => None,
    };
    // Left over from the handover (holding them failed then): they go first, under the same ids.
    let mut messages = queued_for_msc(session, &outgoing.relation_name);
    let left_over = !messages.is_empty();
    let message_id = outgoing.message_id.clone();
    messages.push(Held::now(outgoing, upload));
    deps.outbound.hold(&messages).await?;
    metrics::count("MessagesHeld");
    if left_over {
        forget_queued(deps.store.as_ref(), session).await;
    }
    match deps.store.slide_lock(session).await {
        Ok(SlideOutcome::Slid(_)) => tracing::debug!("session lock slid"),
        Ok(_) => {}
        // The message is on its way; a missed slide only shortens the lock by one interval.
        Err(err) => tracing::warn!(error = %err, "could not slide the session lock"),
    }
    Ok(IngestReply {
        session_id: session_id.clone(),
        routed: Routed::Agent,
        answers: Vec::new(),
        held: Some(message_id),
    })
}

/// The end user's upload for this message, checked as every file is (its bytes' type against the
/// allow-list and the type it was uploaded as, its size, its name's extension). A refused upload is
/// deleted, and nothing reaches MSC.
async fn fetch_upload(
    deps: &IngestDeps,
    session_id: &SessionId,
    upload: &Upload,
) -> Result<(String, crate::msc::OutgoingFile), FlowError> {
    let rules = &deps.files.rules;
    let key = crate::files::upload_key(session_id, &upload.id);
    let stored = deps
        .files
        .store
        .get(&key, rules.max_bytes)
        .await?
        .ok_or(FlowError::UploadNotFound)?;
    let checked = rules
        .check(&stored.bytes, stored.content_type.as_deref())
        .and_then(|found| crate::domain::files::name_for_type(&upload.name, &found));
    match checked {
        Ok(name) => Ok((
            key,
            crate::msc::OutgoingFile {
                name,
                bytes: stored.bytes,
            },
        )),
        Err(refused) => {
            tracing::warn!(reason = refused.reason(), "an end user's file was refused");
            metrics::count_outcome("FilesRefused", "Reason", refused.reason());
            if let Err(err) = deps.files.store.delete(&key).await {
                tracing::warn!(error = %err, "a refused upload was not deleted; the bucket's lifecycle will");
            }
            Err(FlowError::FileRefused(refused))
        }
    }
}

/// The messages that waited behind the handover, in the order they arrived, for MSC: each under an
/// id of its own that stays the same however often they are held (`<session>-queued-<intake>-<n>`,
/// so the queue and MSC drop a repeat), dated when the end user wrote them.
fn queued_for_msc(session: &Session, relation_name: &str) -> Vec<Held> {
    session
        .queued
        .iter()
        .enumerate()
        .map(|(index, waiting)| {
            let id = format!(
                "{}-queued-{}-{}",
                session.session_id,
                session.intake_id,
                index + 1
            );
            let message = for_msc(
                session,
                id,
                relation_name.to_owned(),
                waiting.text.clone(),
                waiting.at,
            );
            Held::now(message, None)
        })
        .collect()
}

/// Forgets the messages that waited behind the handover once they are held for MSC.
async fn forget_queued<S: HandoverStore + ?Sized>(store: &S, session: &Session) {
    if let Err(err) = store.clear_queue(&session.session_id).await {
        tracing::warn!(error = %err, "queued messages held but not cleared; a repeat keeps their ids");
    }
    tracing::info!(
        messages = session.queued.len(),
        "queued messages held for MSC"
    );
}

/// Holds what waited behind the handover for MSC, then forgets it. A failure leaves it queued: the
/// next relay holds it first.
async fn hold_queued<S: HandoverStore + ?Sized>(
    store: &S,
    outbound: &dyn Outbound,
    session: &Session,
    relation_name: &str,
) {
    let messages = queued_for_msc(session, relation_name);
    match outbound.hold(&messages).await {
        Ok(()) => forget_queued(store, session).await,
        Err(err) => {
            tracing::warn!(error = %ErrorChain(&err), "queued messages were not held; they stay queued")
        }
    }
}
