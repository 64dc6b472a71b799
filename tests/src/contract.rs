//! The session store contract: what every adapter must do, stated once. Each function takes a fresh
//! [`Harness`] and asserts on what the store returns and what it then holds.

use handover_core::store::Enqueued;
use handover_core::{
    AgentReply, AgentStatus, Amended, ClaimOutcome, EndReason, Guarded, HandoverChange,
    HolderToken, IntakeAnswer, IntakeStart, QueuedMessage, Session, SessionState, SlideOutcome,
    StartIntakeOutcome,
};

use crate::{Harness, T0};

const SID: &str = "3f9c2a1e-5d2b-4c1a-9a57-0d1e2f3a4b5c";

fn intake_start(session_id: &str) -> IntakeStart {
    IntakeStart {
        session_id: session_id.to_owned(),
        skill: Some("billing".into()),
        webstore: Some("NL-shop".into()),
        channel: Some("WebChat".into()),
        agent_status: AgentStatus::Online,
        end_user_url: Some("https://shop.example/checkout?step=2".into()),
        culture: Some("nl".into()),
        transcript: Vec::new(),
        history: Vec::new(),
        outbox: Vec::new(),
        last_cursor: 0,
        verified: Some(
            handover_core::domain::VerifiedIdentity::parse(
                "customer-42",
                Some("Jane Doe"),
                Some("jane@example.com"),
            )
            .unwrap(),
        ),
    }
}

fn answers() -> Vec<IntakeAnswer> {
    vec![
        IntakeAnswer {
            name: "name".into(),
            value: "Jane Doe".into(),
        },
        IntakeAnswer {
            name: "email".into(),
            value: "jane@example.com".into(),
        },
    ]
}

async fn started(h: &Harness) -> Session {
    match h.store.start_intake(&intake_start(SID)).await {
        Ok(StartIntakeOutcome::Started(session)) => session,
        other => panic!("[{}] start_intake: {other:?}", h.adapter),
    }
}

async fn claimed(h: &Harness) -> Session {
    match h.store.claim(SID, &answers()).await {
        Ok(ClaimOutcome::Claimed(session)) => session,
        other => panic!("[{}] claim: {other:?}", h.adapter),
    }
}

async fn handed_over(h: &Harness) -> Session {
    started(h).await;
    let claim = claimed(h).await;
    match h.store.complete(SID, &claim.token).await {
        Ok(Guarded::Applied(session)) => session,
        other => panic!("[{}] complete: {other:?}", h.adapter),
    }
}

async fn stored(h: &Harness) -> Option<Session> {
    match h.store.get(SID).await {
        Ok(session) => session,
        Err(err) => panic!("[{}] get: {err}", h.adapter),
    }
}

pub async fn unknown_session_is_absent(h: Harness) {
    assert_eq!(stored(&h).await, None);
}

pub async fn start_intake_saves_everything_as_prechat(h: Harness) {
    let session = started(&h).await;
    let start = intake_start(SID);
    assert_eq!(session.state, SessionState::Prechat);
    assert_eq!(session.skill, start.skill);
    assert_eq!(session.webstore, start.webstore);
    assert_eq!(session.channel, start.channel);
    assert_eq!(session.agent_status, AgentStatus::Online);
    assert_eq!(session.end_user_url, start.end_user_url);
    assert_eq!(session.culture, start.culture);
    assert_eq!(session.verified, start.verified);
    assert!(session.intake.is_empty());
    assert_eq!(session.expires_at, T0 + h.policy.prechat_window_secs);
    assert!(!session.token.is_empty());
    assert_eq!(stored(&h).await, Some(session));
}

pub async fn start_intake_refreshes_a_live_prechat(h: Harness) {
    let first = started(&h).await;
    h.clock.advance(60);
    let refreshed_start = IntakeStart {
        skill: None,
        webstore: None,
        agent_status: AgentStatus::Offline,
        ..intake_start(SID)
    };
    let refreshed = match h.store.start_intake(&refreshed_start).await {
        Ok(StartIntakeOutcome::Started(s)) => s,
        other => panic!("[{}] refresh: {other:?}", h.adapter),
    };
    assert_ne!(refreshed.token, first.token);
    assert_ne!(
        refreshed.intake_id, first.intake_id,
        "a new intake is a new handover"
    );
    assert_eq!(refreshed.skill, None);
    assert_eq!(refreshed.webstore, None);
    assert_eq!(refreshed.agent_status, AgentStatus::Offline);
    assert_eq!(refreshed.expires_at, T0 + 60 + h.policy.prechat_window_secs);
    assert_eq!(stored(&h).await, Some(refreshed));
}

pub async fn start_intake_is_refused_while_claimed_or_handed_over(h: Harness) {
    started(&h).await;
    let claim = claimed(&h).await;
    match h.store.start_intake(&intake_start(SID)).await {
        Ok(StartIntakeOutcome::Busy(s)) => assert_eq!(s.state, SessionState::HandingOver),
        other => panic!("[{}] start while claimed: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(claim.clone()));

    let locked = match h.store.complete(SID, &claim.token).await {
        Ok(Guarded::Applied(s)) => s,
        other => panic!("[{}] complete: {other:?}", h.adapter),
    };
    match h.store.start_intake(&intake_start(SID)).await {
        Ok(StartIntakeOutcome::Busy(s)) => assert_eq!(s.state, SessionState::HandedOver),
        other => panic!("[{}] start while handed over: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(locked));
}

pub async fn expired_prechat_is_absent_and_can_be_replaced(h: Harness) {
    let first = started(&h).await;
    h.clock.advance(h.policy.prechat_window_secs + 1);
    assert_eq!(stored(&h).await, None, "[{}] expired prechat", h.adapter);
    let second = started(&h).await;
    assert_ne!(second.token, first.token);
    assert_eq!(stored(&h).await, Some(second));
}

pub async fn expiry_boundary_is_exclusive(h: Harness) {
    let session = started(&h).await;
    h.clock.set(session.expires_at - 1);
    assert!(
        stored(&h).await.is_some(),
        "[{}] one second before expiry",
        h.adapter
    );
    h.clock.set(session.expires_at);
    assert_eq!(stored(&h).await, None, "[{}] at expires_at", h.adapter);
    assert_eq!(
        h.store.claim(SID, &answers()).await.ok(),
        Some(ClaimOutcome::NoIntake)
    );
}

pub async fn expired_lock_is_absent_and_can_be_replaced(h: Harness) {
    let locked = handed_over(&h).await;
    h.clock.set(locked.expires_at);
    assert_eq!(stored(&h).await, None, "[{}] expired lock", h.adapter);
    let fresh = started(&h).await;
    assert_eq!(fresh.state, SessionState::Prechat);
    assert_eq!(stored(&h).await, Some(fresh));
}

pub async fn claim_takes_a_live_prechat_with_fresh_token_and_lease(h: Harness) {
    let intake = started(&h).await;
    h.clock.advance(5);
    let claim = claimed(&h).await;
    assert_eq!(claim.state, SessionState::HandingOver);
    assert_ne!(claim.token, intake.token);
    assert_eq!(
        claim.intake_id, intake.intake_id,
        "a claim keeps the intake's id"
    );
    assert_eq!(claim.expires_at, T0 + 5 + h.policy.claim_lease_secs);
    assert_eq!(claim.intake, answers());
    assert_eq!(
        claim.skill, intake.skill,
        "claim keeps what the intake saved"
    );
    assert_eq!(claim.webstore, intake.webstore);
    assert_eq!(stored(&h).await, Some(claim));
}

pub async fn second_claim_is_typed_already_claimed(h: Harness) {
    started(&h).await;
    let winner = claimed(&h).await;
    match h.store.claim(SID, &[]).await {
        Ok(ClaimOutcome::AlreadyClaimed(holder)) => assert_eq!(holder.token, winner.token),
        other => panic!("[{}] second claim: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(winner), "the loser changed nothing");
}

pub async fn claim_without_live_intake_is_no_intake(h: Harness) {
    assert_eq!(
        h.store.claim(SID, &answers()).await.ok(),
        Some(ClaimOutcome::NoIntake)
    );
    assert_eq!(stored(&h).await, None, "a refused claim creates no item");
    started(&h).await;
    h.clock.advance(h.policy.prechat_window_secs);
    assert_eq!(
        h.store.claim(SID, &answers()).await.ok(),
        Some(ClaimOutcome::NoIntake)
    );
}

pub async fn expired_lease_can_be_taken_over(h: Harness) {
    started(&h).await;
    let crashed = claimed(&h).await;
    h.clock.advance(h.policy.claim_lease_secs);
    let taker = match h.store.claim(SID, &answers()).await {
        Ok(ClaimOutcome::Claimed(s)) => s,
        other => panic!("[{}] take-over: {other:?}", h.adapter),
    };
    assert_ne!(taker.token, crashed.token);
    assert_eq!(
        taker.intake_id, crashed.intake_id,
        "same intake, same handover message id"
    );
    assert_eq!(taker.expires_at, h.clock_now() + h.policy.claim_lease_secs);
    // The crashed holder wakes up: its token no longer holds the session.
    match h.store.complete(SID, &crashed.token).await {
        Ok(Guarded::Refused { current: Some(s) }) => assert_eq!(s.token, taker.token),
        other => panic!("[{}] stale complete: {other:?}", h.adapter),
    }
    assert!(!h
        .store
        .release(SID, &crashed.token, "test")
        .await
        .unwrap()
        .is_applied());
    match h.store.complete(SID, &taker.token).await {
        Ok(Guarded::Applied(s)) => assert_eq!(s.state, SessionState::HandedOver),
        other => panic!("[{}] taker complete: {other:?}", h.adapter),
    }
}

pub async fn complete_locks_the_session_and_drops_the_intake(h: Harness) {
    started(&h).await;
    let claim = claimed(&h).await;
    h.clock.advance(3);
    let locked = match h.store.complete(SID, &claim.token).await {
        Ok(Guarded::Applied(s)) => s,
        other => panic!("[{}] complete: {other:?}", h.adapter),
    };
    assert_eq!(locked.state, SessionState::HandedOver);
    assert_eq!(locked.expires_at, T0 + 3 + h.policy.lock_secs);
    assert!(
        locked.intake.is_empty(),
        "personal data must not outlive the handover"
    );
    assert_eq!(locked.skill.as_deref(), Some("billing"));
    assert_eq!(stored(&h).await, Some(locked.clone()));
    h.clock.advance(1);
    assert_eq!(
        h.store.complete(SID, &claim.token).await.ok(),
        Some(Guarded::Applied(locked.clone())),
        "[{}] the same completion again: applied before, nothing written",
        h.adapter
    );
    assert_eq!(stored(&h).await, Some(locked));
}

pub async fn claim_after_completion_is_typed_already_handed_over(h: Harness) {
    let locked = handed_over(&h).await;
    match h.store.claim(SID, &answers()).await {
        Ok(ClaimOutcome::AlreadyHandedOver(s)) => assert_eq!(s, locked),
        other => panic!("[{}] claim after completion: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(locked));
}

pub async fn complete_and_release_with_a_wrong_token_change_nothing(h: Harness) {
    started(&h).await;
    let claim = claimed(&h).await;
    match h.store.complete(SID, &HolderToken::generate()).await {
        Ok(Guarded::Refused { current: Some(s) }) => assert_eq!(s, claim),
        other => panic!("[{}] wrong-token complete: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(claim.clone()));
    match h.store.release(SID, &HolderToken::generate(), "test").await {
        Ok(Guarded::Refused { current: Some(s) }) => assert_eq!(s, claim),
        other => panic!("[{}] wrong-token release: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(claim.clone()));
    // Nor does a right token on the wrong session.
    let other_session = "another-session";
    assert_eq!(
        h.store.complete(other_session, &claim.token).await.ok(),
        Some(Guarded::Refused { current: None })
    );
    assert_eq!(h.store.get(other_session).await.ok(), Some(None));
}

pub async fn release_returns_the_session_to_the_bot(h: Harness) {
    started(&h).await;
    let claim = claimed(&h).await;
    let released = h.store.release(SID, &claim.token, "msc_status_500").await;
    assert_eq!(released.ok(), Some(Guarded::Applied(())));
    let released = stored(&h).await.expect("kept, ended");
    assert_eq!(released.state, SessionState::Ended, "[{}]", h.adapter);
    assert_eq!(released.agent.end_reason, Some(EndReason::HandoverFailed));
    assert!(
        released.intake.is_empty(),
        "[{}] intake answers gone",
        h.adapter
    );
    let events: Vec<(String, Option<String>)> = released
        .history
        .iter()
        .map(|e| (e.event.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        events[events.len() - 2..],
        [
            ("msc_refused".to_owned(), Some("msc_status_500".to_owned())),
            ("released".to_owned(), None)
        ],
        "[{}]",
        h.adapter
    );
    assert_eq!(
        h.store.claim(SID, &answers()).await.ok(),
        Some(ClaimOutcome::NoIntake)
    );
    // Released twice: the second is refused, not an error.
    assert!(matches!(
        h.store.release(SID, &claim.token, "msc_status_500").await,
        Ok(Guarded::Refused { .. })
    ));
    started(&h).await;
}

pub async fn slide_writes_at_most_once_per_interval(h: Harness) {
    let locked = handed_over(&h).await;
    h.clock.advance(h.policy.slide_interval_secs - 1);
    assert_eq!(
        h.store.slide_lock(&locked).await.ok(),
        Some(SlideOutcome::NotDue)
    );
    assert_eq!(
        stored(&h).await,
        Some(locked.clone()),
        "a fresh lock is not rewritten"
    );

    h.clock.advance(1);
    let slid = match h.store.slide_lock(&locked).await {
        Ok(SlideOutcome::Slid(s)) => s,
        other => panic!("[{}] due slide: {other:?}", h.adapter),
    };
    assert_eq!(slid.expires_at, h.clock_now() + h.policy.lock_secs);
    assert_eq!(stored(&h).await, Some(slid.clone()));

    // A concurrent request still holding the old snapshot thinks a slide is due; the store's condition
    // sees the fresh expiry and writes nothing.
    assert_eq!(
        h.store.slide_lock(&locked).await.ok(),
        Some(SlideOutcome::NotDue)
    );
    assert_eq!(
        h.store.slide_lock(&slid).await.ok(),
        Some(SlideOutcome::NotDue)
    );
    assert_eq!(stored(&h).await, Some(slid));
}

pub async fn the_lock_slides_past_its_first_expiry(h: Harness) {
    let locked = handed_over(&h).await;
    h.clock.set(locked.expires_at - 10);
    let slid = match h.store.slide_lock(&locked).await {
        Ok(SlideOutcome::Slid(s)) => s,
        other => panic!("[{}] slide: {other:?}", h.adapter),
    };
    h.clock.set(locked.expires_at + 3600);
    let still = stored(&h).await;
    assert_eq!(
        still.as_ref().map(|s| s.state),
        Some(SessionState::HandedOver)
    );
    h.clock.set(slid.expires_at);
    assert_eq!(
        stored(&h).await,
        None,
        "24 h after the last activity the lock is gone"
    );
}

pub async fn sliding_does_not_revive_an_expired_lock(h: Harness) {
    let locked = handed_over(&h).await;
    h.clock.set(locked.expires_at + 1);
    assert_eq!(
        h.store.slide_lock(&locked).await.ok(),
        Some(SlideOutcome::NotHandedOver)
    );
    assert_eq!(stored(&h).await, None);
}

pub async fn sliding_ignores_sessions_that_are_not_handed_over(h: Harness) {
    let intake = started(&h).await;
    h.clock.advance(h.policy.slide_interval_secs);
    assert_eq!(
        h.store.slide_lock(&intake).await.ok(),
        Some(SlideOutcome::NotHandedOver)
    );
    // A snapshot that claims "handed over" does not make the store write over a prechat item.
    let forged = Session {
        state: SessionState::HandedOver,
        expires_at: h.clock_now() + 1,
        ..intake.clone()
    };
    assert_eq!(
        h.store.slide_lock(&forged).await.ok(),
        Some(SlideOutcome::NotHandedOver)
    );
    assert_eq!(stored(&h).await, Some(intake));
}

pub async fn abandon_intake_removes_only_the_intake_it_started(h: Harness) {
    let first = started(&h).await;
    h.clock.advance(1);
    let second = started(&h).await;
    match h.store.abandon_intake(SID, &first.token).await {
        Ok(Guarded::Refused { current: Some(s) }) => assert_eq!(s, second),
        other => panic!("[{}] stale abandon: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await, Some(second.clone()));
    assert_eq!(
        h.store.abandon_intake(SID, &second.token).await.ok(),
        Some(Guarded::Applied(()))
    );
    assert_eq!(stored(&h).await, None);

    // Never an abandon of a claimed session, even with the token the claim carries.
    started(&h).await;
    let claim = claimed(&h).await;
    assert!(!h
        .store
        .abandon_intake(SID, &claim.token)
        .await
        .unwrap()
        .is_applied());
    assert_eq!(stored(&h).await, Some(claim));
}

pub async fn intake_answers_round_trip_in_order(h: Harness) {
    started(&h).await;
    let many: Vec<IntakeAnswer> = (0..20)
        .map(|i| IntakeAnswer {
            name: format!("q{i:02}"),
            value: format!("antwoord {i} — ünïcødé ✓"),
        })
        .collect();
    match h.store.claim(SID, &many).await {
        Ok(ClaimOutcome::Claimed(s)) => assert_eq!(s.intake, many),
        other => panic!("[{}] claim: {other:?}", h.adapter),
    }
    assert_eq!(stored(&h).await.map(|s| s.intake), Some(many));
}

impl Harness {
    fn clock_now(&self) -> i64 {
        use handover_core::Clock;
        self.clock.now()
    }
}

pub async fn idempotency_key_is_processed_once_then_replayed(h: Harness) {
    use handover_core::IdempotencyBegin::*;
    assert_eq!(h.store.begin_request("k-1", "fp").await.unwrap(), Fresh);
    assert_eq!(
        h.store.begin_request("k-1", "fp").await.unwrap(),
        InProgress
    );
    h.store
        .finish_request("k-1", r#"{"answers":[]}"#)
        .await
        .unwrap();
    assert_eq!(
        h.store.begin_request("k-1", "other").await.unwrap(),
        Replay {
            fingerprint: "fp".into(),
            reply: r#"{"answers":[]}"#.into()
        }
    );
    assert_eq!(
        h.store.begin_request("k-2", "fp").await.unwrap(),
        Fresh,
        "keys are separate"
    );
    h.clock.advance(handover_core::store::IDEMPOTENCY_KEEP_SECS);
    assert_eq!(
        h.store.begin_request("k-1", "fp").await.unwrap(),
        Fresh,
        "replays expire"
    );
    assert_eq!(
        h.store.get("k-1").await.unwrap(),
        None,
        "no session is made of it"
    );
}

pub async fn idempotency_key_of_a_dead_request_is_freed(h: Harness) {
    use handover_core::IdempotencyBegin::*;
    assert_eq!(h.store.begin_request("k", "fp").await.unwrap(), Fresh);
    h.clock
        .advance(handover_core::store::IDEMPOTENCY_PENDING_SECS - 1);
    assert_eq!(h.store.begin_request("k", "fp").await.unwrap(), InProgress);
    h.clock.advance(1);
    assert_eq!(
        h.store.begin_request("k", "fp").await.unwrap(),
        Fresh,
        "pending expired"
    );
    h.store.abandon_request("k").await.unwrap();
    assert_eq!(
        h.store.begin_request("k", "fp").await.unwrap(),
        Fresh,
        "abandoned"
    );
    h.store.finish_request("k", "{}").await.unwrap();
    h.store.abandon_request("k").await.unwrap();
    assert!(
        matches!(
            h.store.begin_request("k", "fp").await.unwrap(),
            Replay { .. }
        ),
        "a finished key is never abandoned"
    );
}

pub async fn quotas_count_per_key_and_window_and_never_past_the_limit(h: Harness) {
    use handover_core::store::Quota::*;
    // Start at a window's beginning, so the window's end is known.
    h.clock
        .advance(60 - handover_core::clock::Clock::now(&*h.clock).rem_euclid(60));
    for _ in 0..3 {
        assert_eq!(h.store.take_quota("turns#a", 3, 60).await.unwrap(), Within);
    }
    assert_eq!(
        h.store.take_quota("turns#a", 3, 60).await.unwrap(),
        Spent {
            retry_after_secs: 60
        }
    );
    assert_eq!(
        h.store.take_quota("turns#b", 3, 60).await.unwrap(),
        Within,
        "another key counts on its own"
    );
    h.clock.advance(59);
    assert_eq!(
        h.store.take_quota("turns#a", 3, 60).await.unwrap(),
        Spent {
            retry_after_secs: 1
        }
    );
    h.clock.advance(1);
    assert_eq!(
        h.store.take_quota("turns#a", 3, 60).await.unwrap(),
        Within,
        "a new window"
    );
    // Twenty at once against a limit of five: exactly five are counted, whichever instance asks.
    let store = h.store.clone();
    let uses = futures::future::join_all(
        (0..20).map(|_| async { store.take_quota("mint#10.0.0.1", 5, 60).await.unwrap() }),
    )
    .await;
    assert_eq!(uses.iter().filter(|u| **u == Within).count(), 5);
}

/// MSC's pace: a free slot is taken at once; then every reservation, also twenty at once from as many
/// senders, gets its own slot, each at least the interval after the one before; none later than the
/// caller allows (that one is told when the next slot is, and reserves nothing); a hold moves the next
/// slot on, never back.
pub async fn msc_sends_are_spaced_by_the_pace_whoever_reserves(h: Harness) {
    use handover_core::store::Reserved::*;
    let now = 1_800_000_000_000;
    assert_eq!(h.store.reserve_send(now, 400, now).await.unwrap(), At(now));
    assert_eq!(
        h.store.reserve_send(now, 400, now + 1_000).await.unwrap(),
        At(now + 400)
    );
    assert_eq!(
        h.store.reserve_send(now, 400, now + 100).await.unwrap(),
        NotBefore(now + 800),
        "past what the caller would wait: nothing reserved"
    );
    let store = h.store.clone();
    let slots = futures::future::join_all(
        (0..20).map(|_| async { store.reserve_send(now, 400, now + 60_000).await.unwrap() }),
    )
    .await;
    let mut slots: Vec<i64> = slots
        .into_iter()
        .map(|r| match r {
            At(slot) => slot,
            NotBefore(_) => panic!("within the limit"),
        })
        .collect();
    slots.sort();
    let expected: Vec<i64> = (0..20).map(|k| now + 800 + 400 * k).collect();
    assert_eq!(slots, expected, "each its own slot, spaced by the interval");
    h.store.hold_sends(now + 60_000).await.unwrap();
    h.store.hold_sends(now + 10_000).await.unwrap();
    assert_eq!(
        h.store
            .reserve_send(now + 1_000, 400, now + 120_000)
            .await
            .unwrap(),
        At(now + 60_000),
        "held until then, not moved back"
    );
    assert_eq!(
        h.store
            .reserve_send(now + 70_000, 400, now + 70_000)
            .await
            .unwrap(),
        At(now + 70_000),
        "a slot in the past is free"
    );
}

fn agent_reply(id: &str) -> HandoverChange {
    HandoverChange::AgentReply(AgentReply {
        message_id: id.into(),
        conversation_guid: Some("guid-1".into()),
        agent_name: None,
        text: format!("reply {id}"),
        sent_at: T0,
        files: Vec::new(),
    })
}

pub async fn agent_replies_are_kept_once_in_order_and_slide_the_lock(h: Harness) {
    assert_eq!(
        h.store.amend_handover(SID, &agent_reply("m-1")).await.ok(),
        Some(Amended::NotHandedOver(None)),
        "[{}] nothing to amend yet",
        h.adapter
    );
    started(&h).await;
    let claim = claimed(&h).await;
    h.clock.set(claim.expires_at);
    assert_eq!(
        h.store.amend_handover(SID, &agent_reply("m-1")).await.ok(),
        Some(Amended::NotHandedOver(Some(claim.clone()))),
        "[{}] a claim, its lease run out, comes back as found: a reply may finish its lock",
        h.adapter
    );
    let Ok(Guarded::Applied(_)) = h.store.complete(SID, &claim.token).await else {
        panic!("[{}] complete", h.adapter)
    };
    h.clock.advance(60);
    let first = match h.store.amend_handover(SID, &agent_reply("m-1")).await {
        Ok(Amended::Applied(session)) => session,
        other => panic!("[{}] amend: {other:?}", h.adapter),
    };
    assert_eq!(first.expires_at, h.clock_now() + h.policy.lock_secs);
    assert_eq!(
        first.agent.msc_conversation, None,
        "adopted only once linked"
    );
    assert_eq!(
        stored(&h).await,
        Some(first.clone()),
        "[{}] as written",
        h.adapter
    );
    assert_eq!(
        h.store.amend_handover(SID, &agent_reply("m-1")).await.ok(),
        Some(Amended::Unchanged(first)),
        "[{}] a repeat changes nothing",
        h.adapter
    );
    h.store.amend_handover(SID, &agent_reply("m-2")).await.ok();
    let ids: Vec<String> = stored(&h)
        .await
        .map(|s| s.agent.outbox.iter().map(|m| m.id.clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["m-1", "m-2"], "[{}]", h.adapter);
    let linked = HandoverChange::Linked {
        conversation: "guid-1".into(),
        at: h.clock_now(),
    };
    let Ok(Amended::Applied(with_guid)) = h.store.amend_handover(SID, &linked).await else {
        panic!("[{}] link recorded", h.adapter)
    };
    assert_eq!(with_guid.agent.msc_conversation.as_deref(), Some("guid-1"));
    assert_eq!(with_guid.agent.msc_linked_at, Some(h.clock_now()));
    assert_eq!(
        stored(&h).await,
        Some(with_guid),
        "[{}] as written",
        h.adapter
    );
}

pub async fn an_ended_handover_answers_with_the_bot_and_may_start_again(h: Harness) {
    handed_over(&h).await;
    let ended = match h
        .store
        .amend_handover(SID, &HandoverChange::End(EndReason::OperatorReleased))
        .await
    {
        Ok(Amended::Applied(session)) => session,
        other => panic!("[{}] end: {other:?}", h.adapter),
    };
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(ended.agent.end_reason, Some(EndReason::OperatorReleased));
    assert_eq!(stored(&h).await, Some(ended.clone()), "[{}]", h.adapter);
    assert!(
        matches!(
            h.store.amend_handover(SID, &agent_reply("late")).await,
            Ok(Amended::NotHandedOver(Some(_)))
        ),
        "[{}] no replies after the end",
        h.adapter
    );
    assert_eq!(
        h.store.claim(SID, &answers()).await.ok(),
        Some(ClaimOutcome::NoIntake)
    );
    let again = started(&h).await;
    assert_eq!(again.state, SessionState::Prechat, "[{}]", h.adapter);
}

pub async fn only_a_lapsed_lock_ends_by_inactivity(h: Harness) {
    let locked = handed_over(&h).await;
    let inactivity = HandoverChange::End(EndReason::Inactivity);
    assert!(
        matches!(
            h.store.amend_handover(SID, &inactivity).await,
            Ok(Amended::NotHandedOver(Some(_)))
        ),
        "[{}] a live lock does not end by inactivity",
        h.adapter
    );
    h.clock.set(locked.expires_at);
    let ended = match h.store.amend_handover(SID, &inactivity).await {
        Ok(Amended::Applied(session)) => session,
        other => panic!("[{}] inactivity: {other:?}", h.adapter),
    };
    assert_eq!(ended.agent.end_reason, Some(EndReason::Inactivity));
    assert_eq!(stored(&h).await.map(|s| s.state), Some(SessionState::Ended));
    assert!(
        matches!(
            h.store.amend_handover(SID, &inactivity).await,
            Ok(Amended::NotHandedOver(_))
        ),
        "[{}] once",
        h.adapter
    );
}

pub async fn msc_conversations_are_linked_to_their_sessions(h: Harness) {
    assert_eq!(
        h.store.find_msc_conversation("guid-1").await.ok(),
        Some(None)
    );
    h.store
        .link_msc_conversation("guid-1", SID)
        .await
        .unwrap_or_else(|err| panic!("[{}] link: {err}", h.adapter));
    assert_eq!(
        h.store.find_msc_conversation("guid-1").await.ok(),
        Some(Some(SID.to_owned())),
        "[{}]",
        h.adapter
    );
    h.clock.advance(handover_core::store::MSC_LINK_SECS);
    assert_eq!(
        h.store.find_msc_conversation("guid-1").await.ok(),
        Some(None)
    );
}

fn waiting(text: &str) -> QueuedMessage {
    QueuedMessage {
        text: text.into(),
        at: T0,
    }
}

pub async fn messages_queue_only_behind_a_live_claim(h: Harness) {
    assert_eq!(
        h.store.enqueue(SID, &waiting("early")).await.ok(),
        Some(Enqueued::NotHandingOver(None))
    );
    started(&h).await;
    assert!(matches!(
        h.store.enqueue(SID, &waiting("during intake")).await,
        Ok(Enqueued::NotHandingOver(Some(_)))
    ));
    let claim = claimed(&h).await;
    for (n, text) in ["one", "two"].into_iter().enumerate() {
        assert_eq!(
            h.store.enqueue(SID, &waiting(text)).await.ok(),
            Some(Enqueued::Queued { position: n + 1 }),
            "[{}]",
            h.adapter
        );
    }
    let texts: Vec<String> = stored(&h)
        .await
        .map(|s| s.queued.into_iter().map(|m| m.text).collect())
        .unwrap_or_default();
    assert_eq!(texts, ["one", "two"], "[{}]", h.adapter);
    h.clock.set(claim.expires_at);
    assert!(
        matches!(
            h.store.enqueue(SID, &waiting("late")).await,
            Ok(Enqueued::NotHandingOver(_))
        ),
        "[{}] not behind a lapsed lease",
        h.adapter
    );
}

pub async fn a_released_claim_keeps_its_queue_for_the_bot(h: Harness) {
    started(&h).await;
    let claim = claimed(&h).await;
    h.store.enqueue(SID, &waiting("hello?")).await.ok();
    assert_eq!(
        h.store
            .release(SID, &claim.token, "msc_status_500")
            .await
            .ok(),
        Some(Guarded::Applied(()))
    );
    let kept = stored(&h).await.expect("kept for the bot");
    assert_eq!(kept.state, SessionState::Ended, "[{}]", h.adapter);
    assert_eq!(kept.agent.end_reason, Some(EndReason::HandoverFailed));
    assert_eq!(kept.queued, vec![waiting("hello?")]);
    assert!(
        kept.intake.is_empty(),
        "[{}] intake answers gone",
        h.adapter
    );
    h.store
        .clear_queue(SID)
        .await
        .unwrap_or_else(|err| panic!("[{}] clear: {err}", h.adapter));
    assert!(stored(&h).await.is_some_and(|s| s.queued.is_empty()));
    h.store.clear_queue("no-such-session").await.ok();
    assert_eq!(h.store.get("no-such-session").await.ok(), Some(None));
}

fn connection(id: &str) -> handover_core::domain::ConnectionId {
    handover_core::domain::ConnectionId::parse(id).expect("connection id")
}

pub async fn live_connections_are_registered_announced_to_and_forgotten(h: Harness) {
    use handover_core::store::{Registered, CONNECTIONS_PER_CONVERSATION, CONNECTION_SECS};
    let (one, two) = (connection("L0SM9cOFvHcCIhw="), connection("c2"));
    let registered = |evicted: Vec<_>| Registered::Registered { evicted };
    assert_eq!(
        h.store.register_connection(SID, &one, 0).await.unwrap(),
        registered(vec![])
    );
    assert_eq!(h.store.announce(SID, 1).await.unwrap(), vec![one.clone()]);
    // A page that read nothing newer than 0 registering after message 1 was announced: refused.
    assert_eq!(
        h.store.register_connection(SID, &two, 0).await.unwrap(),
        Registered::Behind { announced: 1 }
    );
    assert_eq!(
        h.store.register_connection(SID, &two, 1).await.unwrap(),
        registered(vec![])
    );
    assert_eq!(
        h.store.connections(SID).await.unwrap(),
        vec![(one.clone(), 0), (two.clone(), 1)],
        "each with what its page had read"
    );
    // Announced late (after 3): the page that had read 1 still gets 2; each gets what it had not read.
    assert_eq!(
        h.store.announce(SID, 3).await.unwrap(),
        vec![one.clone(), two.clone()]
    );
    assert_eq!(
        h.store.announce(SID, 2).await.unwrap(),
        vec![one.clone(), two.clone()]
    );
    assert_eq!(
        h.store.announce(SID, 1).await.unwrap(),
        vec![one.clone()],
        "a connection is not pushed what its page had read"
    );
    assert_eq!(
        h.store.register_connection(SID, &two, 2).await.unwrap(),
        Registered::Behind { announced: 3 },
        "announced stays the highest"
    );
    assert!(
        h.store
            .announce("another-session", 1)
            .await
            .unwrap()
            .is_empty(),
        "connections are per conversation"
    );
    h.store.remove_connection(SID, &one).await.unwrap();
    h.store.remove_connection(SID, &one).await.unwrap();
    assert_eq!(h.store.announce(SID, 4).await.unwrap(), vec![two.clone()]);
    h.clock.advance(CONNECTION_SECS);
    assert!(
        h.store.announce(SID, 5).await.unwrap().is_empty(),
        "a connection expires"
    );
    assert!(h.store.connections(SID).await.unwrap().is_empty());
    // Past the limit, the oldest is let go.
    let many: Vec<_> = (0..=CONNECTIONS_PER_CONVERSATION)
        .map(|i| connection(&format!("tab-{i:02}")))
        .collect();
    for (i, tab) in many.iter().enumerate() {
        h.clock.advance(1);
        let evicted = match h.store.register_connection(SID, tab, 5).await.unwrap() {
            Registered::Registered { evicted } => evicted,
            other => panic!("[{}] {other:?}", h.adapter),
        };
        let expected = if i == CONNECTIONS_PER_CONVERSATION {
            vec![many[0].clone()]
        } else {
            vec![]
        };
        assert_eq!(evicted, expected, "[{}] registration {i}", h.adapter);
    }
    let mut announced = h.store.announce(SID, 6).await.unwrap();
    announced.sort();
    assert_eq!(announced, many[1..].to_vec());
}
