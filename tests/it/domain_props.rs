//! Property tests on the domain: additions parsing is total, and no sequence of store operations and
//! clock moves ever produces a transition the state machine does not allow, on either adapter.

use std::sync::Arc;

use handover_core::domain::{
    AgentReply, EndReason, HandoverChange, QueuedMessage, OUTBOX_LIMIT, QUEUE_LIMIT,
};
use handover_core::store::memory::MemoryStore;
use handover_core::store::{Amended, Enqueued};
use handover_core::{
    AgentStatus, ClaimOutcome, Clock, Guarded, HolderToken, IntakeAnswer, IntakeStart, LockPolicy,
    ManualClock, OutputAdditions, Phase, SessionState, SessionStore, SlideOutcome,
    StartIntakeOutcome,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Map, Value};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("true"),
            Just("True"),
            Just("yes"),
            Just(""),
            Just("false")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("livechat".to_owned()),
            Just("LiveChat".to_owned()),
            Just("prechat".to_owned()),
            Just("skill".to_owned()),
            Just("mscWebstore".to_owned()),
            Just("mscChannel".to_owned()),
            ".{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn additions_parsing_never_panics_and_never_yields_empty_strings(value in arbitrary_json()) {
        let parsed = OutputAdditions::parse(&value);
        for text in [&parsed.skill, &parsed.msc_webstore, &parsed.msc_channel].into_iter().flatten() {
            prop_assert!(!text.trim().is_empty());
            prop_assert_eq!(text.trim(), text.as_str());
        }
        if !value.is_object() {
            prop_assert_eq!(parsed, OutputAdditions::default());
        }
    }

    #[test]
    fn livechat_false_when_the_key_is_absent(value in arbitrary_json()) {
        let mut object = match value { Value::Object(map) => map, _ => Map::new() };
        object.retain(|key, _| !key.eq_ignore_ascii_case("livechat"));
        prop_assert!(!OutputAdditions::parse(&Value::Object(object)).livechat);
    }
}

#[derive(Debug, Clone)]
enum Op {
    StartIntake,
    Claim,
    /// Complete with the n-th most recent claim token seen (stale ones included), or a foreign one.
    Complete(usize),
    Release(usize),
    Abandon(usize),
    SlideLock,
    Enqueue,
    /// An agent's reply with the n-th message id (repeats included).
    AgentReply(u8),
    End,
    EndByInactivity,
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::StartIntake),
        Just(Op::Claim),
        (0usize..3).prop_map(Op::Complete),
        (0usize..3).prop_map(Op::Release),
        (0usize..3).prop_map(Op::Abandon),
        Just(Op::SlideLock),
        Just(Op::Enqueue),
        (0u8..4).prop_map(Op::AgentReply),
        Just(Op::End),
        Just(Op::EndByInactivity),
        prop_oneof![1i64..60, 1i64..400, 1i64..2_000, 80_000i64..90_000].prop_map(Op::Advance),
    ]
}

fn pick(tokens: &[HolderToken], n: usize) -> HolderToken {
    tokens
        .iter()
        .rev()
        .nth(n)
        .cloned()
        .unwrap_or_else(HolderToken::generate)
}

const POLICY: LockPolicy = LockPolicy {
    lock_secs: 86_400,
    slide_interval_secs: 300,
    claim_lease_secs: 30,
    prechat_window_secs: 1_800,
};

/// Runs `ops` on `store` for session `sid` and checks every observed change against
/// [`Phase::may_become`] and the invariants of a stored session.
async fn check_transitions(
    store: &dyn SessionStore,
    clock: &ManualClock,
    sid: &str,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut claim_tokens: Vec<HolderToken> = Vec::new();
    let mut intake_tokens: Vec<HolderToken> = Vec::new();
    for op in ops {
        let before = store.get_stored(sid).await.unwrap();
        let phase_before = Phase::of(before.as_ref(), clock.now());
        match &op {
            Op::StartIntake => {
                let start = IntakeStart {
                    session_id: sid.into(),
                    skill: Some("s".into()),
                    webstore: None,
                    channel: None,
                    agent_status: AgentStatus::Offline,
                    end_user_url: None,
                    culture: None,
                    transcript: Vec::new(),
                    history: Vec::new(),
                    outbox: Vec::new(),
                    last_cursor: 0,
                    verified: None,
                };
                match store.start_intake(&start).await.unwrap() {
                    StartIntakeOutcome::Started(s) => intake_tokens.push(s.token),
                    StartIntakeOutcome::Busy(s) => prop_assert!(matches!(
                        s.phase(clock.now()),
                        Phase::HandingOver | Phase::HandedOver
                    )),
                }
            }
            Op::Claim => {
                let intake = [IntakeAnswer {
                    name: "n".into(),
                    value: "v".into(),
                }];
                match store.claim(sid, &intake).await.unwrap() {
                    ClaimOutcome::Claimed(s) => {
                        prop_assert!(matches!(phase_before, Phase::Prechat | Phase::LeaseExpired));
                        claim_tokens.push(s.token);
                    }
                    ClaimOutcome::AlreadyClaimed(_) => {
                        prop_assert_eq!(phase_before, Phase::HandingOver)
                    }
                    ClaimOutcome::AlreadyHandedOver(_) => {
                        prop_assert_eq!(phase_before, Phase::HandedOver)
                    }
                    ClaimOutcome::NoIntake => prop_assert_eq!(phase_before, Phase::WithBot),
                }
            }
            Op::Complete(n) => {
                let token = pick(&claim_tokens, *n);
                let applied = store.complete(sid, &token).await.unwrap().is_applied();
                // The claim's holder completes; completing again with the same token is the same
                // completion (both adapters answer it applied, writing nothing).
                let holder = before
                    .as_ref()
                    .filter(|s| {
                        matches!(
                            s.state,
                            SessionState::HandingOver | SessionState::HandedOver
                        )
                    })
                    .map(|s| s.token.clone());
                prop_assert_eq!(applied, holder == Some(token));
            }
            Op::Release(n) => {
                let token = pick(&claim_tokens, *n);
                if let Guarded::Applied(()) = store.release(sid, &token, "test").await.unwrap() {
                    prop_assert_eq!(
                        before.as_ref().map(|s| s.token.as_str()),
                        Some(token.as_str())
                    );
                }
            }
            Op::Abandon(n) => {
                let token = pick(&intake_tokens, *n);
                if store
                    .abandon_intake(sid, &token)
                    .await
                    .unwrap()
                    .is_applied()
                {
                    prop_assert_eq!(phase_before, Phase::Prechat);
                }
            }
            Op::SlideLock => {
                if let Some(seen) = before.as_ref().filter(|s| s.is_live(clock.now())) {
                    if let SlideOutcome::Slid(s) = store.slide_lock(seen).await.unwrap() {
                        prop_assert_eq!(s.expires_at, clock.now() + POLICY.lock_secs);
                    }
                }
            }
            Op::Enqueue => {
                let waiting = QueuedMessage {
                    text: "waiting".into(),
                    at: clock.now(),
                };
                if let Enqueued::Queued { .. } = store.enqueue(sid, &waiting).await.unwrap() {
                    prop_assert_eq!(phase_before, Phase::HandingOver);
                }
            }
            Op::AgentReply(n) => {
                let reply = HandoverChange::AgentReply(AgentReply {
                    message_id: format!("m-{n}"),
                    conversation_guid: Some("guid".into()),
                    agent_name: None,
                    text: "hello".into(),
                    sent_at: clock.now(),
                    files: Vec::new(),
                });
                if let Amended::Applied(_) = store.amend_handover(sid, &reply).await.unwrap() {
                    prop_assert_eq!(phase_before, Phase::HandedOver);
                }
            }
            Op::End | Op::EndByInactivity => {
                let reason = match op {
                    Op::End => EndReason::OperatorReleased,
                    _ => EndReason::Inactivity,
                };
                let end = HandoverChange::End(reason);
                if let Amended::Applied(s) = store.amend_handover(sid, &end).await.unwrap() {
                    prop_assert_eq!(s.state, SessionState::Ended);
                    let lapsed = before.as_ref().is_some_and(|b| !b.is_live(clock.now()));
                    prop_assert_eq!(lapsed, reason == EndReason::Inactivity);
                }
            }
            Op::Advance(secs) => clock.advance(*secs),
        }
        let after = store.get_stored(sid).await.unwrap();
        let phase_after = Phase::of(after.as_ref(), clock.now());
        prop_assert!(
            phase_before.may_become(phase_after),
            "{:?} -> {:?} after {:?}",
            phase_before,
            phase_after,
            op
        );
        if let Some(s) = &after {
            prop_assert!(
                s.state == SessionState::HandingOver || s.intake.is_empty(),
                "intake answers outside handing_over: {:?}",
                s.state
            );
            prop_assert!(s.queued.len() <= QUEUE_LIMIT);
            prop_assert!(s.agent.outbox.len() <= OUTBOX_LIMIT);
            let ids: std::collections::BTreeSet<&str> =
                s.agent.outbox.iter().map(|m| m.id.as_str()).collect();
            prop_assert_eq!(ids.len(), s.agent.outbox.len(), "an id twice in the outbox");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_transitions_stay_inside_the_state_machine(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let clock = Arc::new(ManualClock::starting_at(1_750_000_000));
        let store = MemoryStore::new(clock.clone(), POLICY);
        runtime.block_on(check_transitions(&store, &clock, "prop-session", ops))?;
    }
}

/// The same property on the DynamoDB adapter, whose conditions are expressions DynamoDB evaluates
/// rather than `store::rules`: fewer cases, each on a session of its own.
#[test]
fn random_transitions_on_dynamodb_stay_inside_the_state_machine() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let harness = runtime.block_on(handover_tests::dynamodb_harness());
    let mut runner = TestRunner::new(ProptestConfig::with_cases(24));
    let outcome = runner.run(&prop::collection::vec(op(), 1..25), |ops| {
        let sid = format!("prop-{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(check_transitions(
            harness.store.as_ref(),
            &harness.clock,
            &sid,
            ops,
        ))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Fragments of HTML, broken and whole, to build hostile bot answers from.
fn html_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<".to_owned()),
        Just("</".to_owned()),
        Just(">".to_owned()),
        Just("&".to_owned()),
        Just("&#x".to_owned()),
        Just("&#1114112;".to_owned()),
        Just("&amp;".to_owned()),
        Just("<a href=\"".to_owned()),
        Just("</a>".to_owned()),
        Just("<br>".to_owned()),
        Just("<p>".to_owned()),
        Just("<script>".to_owned()),
        Just("<!--".to_owned()),
        "[a-z \"'=/\u{202E}é😀]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The bot's answer, whatever CAIC sends, becomes text without a panic (a panic aborts the
    /// function) and never longer than it came.
    #[test]
    fn any_bot_answer_becomes_bounded_text(parts in prop::collection::vec(html_fragment(), 0..60)) {
        let html: String = parts.concat();
        let text = handover_core::domain::text::plain_text(&html);
        prop_assert!(text.len() <= html.len(), "{html:?} -> {text:?}");
    }
}
