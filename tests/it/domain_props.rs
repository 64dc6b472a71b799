//! Property tests on the domain: additions parsing is total, and no sequence of store operations and
//! clock moves ever produces a transition the state machine does not allow.

use std::sync::Arc;

use handover_core::store::memory::MemoryStore;
use handover_core::{
    AgentStatus, ClaimOutcome, Clock, Guarded, HandoverStore, HolderToken, IntakeAnswer,
    IntakeStart, IntakeStore, LockPolicy, LockSlider, ManualClock, OutputAdditions, Phase,
    SessionState, SessionStore, SlideOutcome, StartIntakeOutcome,
};
use proptest::prelude::*;
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
        prop_oneof![1i64..60, 1i64..400, 1i64..2_000, 80_000i64..90_000].prop_map(Op::Advance),
    ]
}

const SID: &str = "prop-session";

fn pick(tokens: &[HolderToken], n: usize) -> HolderToken {
    tokens
        .iter()
        .rev()
        .nth(n)
        .cloned()
        .unwrap_or_else(|| HolderToken::from_stored("foreign-token".to_owned()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_transitions_stay_inside_the_state_machine(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let clock = Arc::new(ManualClock::starting_at(1_750_000_000));
        let policy = LockPolicy { lock_secs: 86_400, slide_interval_secs: 300, claim_lease_secs: 30, prechat_window_secs: 1_800 };
        let store = MemoryStore::new(clock.clone(), policy);
        let mut claim_tokens: Vec<HolderToken> = Vec::new();
        let mut intake_tokens: Vec<HolderToken> = Vec::new();

        for op in ops {
            let before = store.stored(SID);
            let phase_before = Phase::of(before.as_ref(), clock.now());
            runtime.block_on(async {
                match &op {
                    Op::StartIntake => {
                        let start = IntakeStart {
                            session_id: SID.into(), skill: Some("s".into()), webstore: None, channel: None,
                            agent_status: AgentStatus::Offline, end_user_url: None, culture: None,
                            transcript: Vec::new(),
                            history: Vec::new(),
                        };
                        match store.start_intake(&start).await.unwrap() {
                            StartIntakeOutcome::Started(s) => intake_tokens.push(s.token),
                            StartIntakeOutcome::Busy(s) => assert!(matches!(s.phase(clock.now()), Phase::HandingOver | Phase::HandedOver)),
                        }
                    }
                    Op::Claim => {
                        let intake = [IntakeAnswer { name: "n".into(), value: "v".into() }];
                        match store.claim(SID, &intake).await.unwrap() {
                            ClaimOutcome::Claimed(s) => {
                                assert!(matches!(phase_before, Phase::Prechat | Phase::LeaseExpired));
                                claim_tokens.push(s.token);
                            }
                            ClaimOutcome::AlreadyClaimed(_) => assert_eq!(phase_before, Phase::HandingOver),
                            ClaimOutcome::AlreadyHandedOver(_) => assert_eq!(phase_before, Phase::HandedOver),
                            ClaimOutcome::NoIntake => assert_eq!(phase_before, Phase::WithBot),
                        }
                    }
                    Op::Complete(n) => {
                        let token = pick(&claim_tokens, *n);
                        let applied = store.complete(SID, &token).await.unwrap().is_applied();
                        let holder = before.as_ref().filter(|s| s.state == SessionState::HandingOver).map(|s| s.token.clone());
                        assert_eq!(applied, holder == Some(token));
                    }
                    Op::Release(n) => {
                        let token = pick(&claim_tokens, *n);
                        let released = store.release(SID, &token, "test").await.unwrap();
                        if let Guarded::Applied(()) = released {
                            assert_eq!(before.as_ref().map(|s| s.token.as_str()), Some(token.as_str()));
                        }
                    }
                    Op::Abandon(n) => {
                        let token = pick(&intake_tokens, *n);
                        if store.abandon_intake(SID, &token).await.unwrap().is_applied() {
                            assert_eq!(phase_before, Phase::Prechat);
                        }
                    }
                    Op::SlideLock => {
                        if let Some(seen) = runtime_free_get(&store, clock.now()) {
                            if let SlideOutcome::Slid(s) = store.slide_lock(&seen).await.unwrap() {
                                assert_eq!(s.expires_at, clock.now() + policy.lock_secs);
                            }
                        }
                    }
                    Op::Advance(secs) => clock.advance(*secs),
                }
            });
            let after = store.stored(SID);
            let phase_after = Phase::of(after.as_ref(), clock.now());
            prop_assert!(
                phase_before.may_become(phase_after),
                "{:?} -> {:?} after {:?}", phase_before, phase_after, op
            );
            if let Some(s) = &after {
                prop_assert!(s.state == SessionState::HandingOver || s.intake.is_empty(),
                    "intake answers outside handing_over: {:?}", s.state);
                prop_assert!(!s.token.is_empty());
            }
        }
    }
}

/// What a handler would have read before sliding: the live session, if any.
fn runtime_free_get(store: &MemoryStore, now: i64) -> Option<handover_core::Session> {
    store.stored(SID).filter(|s| s.is_live(now))
}

#[test]
fn store_trait_objects_are_usable() {
    // The functions hold stores as trait objects; this fails to compile if the port stops being
    // object-safe.
    let clock = Arc::new(ManualClock::starting_at(0));
    let _store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(clock, LockPolicy::default()));
}
