//! Races: many concurrent callers on one session, through the real adapters. The DynamoDB tests run
//! against the DynamoDB-compatible server started by the test command.

use std::sync::Arc;

use futures::future::join_all;
use handover_core::{
    AgentStatus, ClaimOutcome, Guarded, IntakeAnswer, IntakeStart, SessionState, SlideOutcome,
    StartIntakeOutcome,
};
use handover_tests::{dynamodb_harness, memory_harness, Harness};

const SID: &str = "race-session";
const RACERS: usize = 32;

async fn start(h: &Harness) {
    let start = IntakeStart {
        session_id: SID.into(),
        skill: Some("billing".into()),
        webstore: None,
        channel: None,
        agent_status: AgentStatus::Online,
        end_user_url: Some("https://shop.example/".into()),
        culture: None,
        transcript: Vec::new(),
        history: Vec::new(),
        outbox: Vec::new(),
        last_cursor: 0,
        verified: None,
    };
    assert!(matches!(
        h.store.start_intake(&start).await,
        Ok(StartIntakeOutcome::Started(_))
    ));
}

/// Each racer is its own tokio task on a multi-threaded runtime: real parallel requests.
async fn concurrent_claims_have_exactly_one_winner(h: Harness) {
    start(&h).await;
    let racers = (0..RACERS).map(|i| {
        let store = Arc::clone(&h.store);
        tokio::spawn(async move {
            let intake = [IntakeAnswer {
                name: "racer".into(),
                value: i.to_string(),
            }];
            store.claim(SID, &intake).await
        })
    });
    let outcomes: Vec<ClaimOutcome> = join_all(racers)
        .await
        .into_iter()
        .map(|joined| match joined {
            Ok(Ok(outcome)) => outcome,
            other => panic!("[{}] a racer failed: {other:?}", h.adapter),
        })
        .collect();

    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            ClaimOutcome::Claimed(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let already_claimed = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::AlreadyClaimed(_)))
        .count();
    assert_eq!(
        (winners.len(), already_claimed),
        (1, RACERS - 1),
        "[{}] (claimed, already claimed) of {RACERS}; others were {:?}",
        h.adapter,
        outcomes
            .iter()
            .filter(|o| !matches!(
                o,
                ClaimOutcome::Claimed(_) | ClaimOutcome::AlreadyClaimed(_)
            ))
            .collect::<Vec<_>>()
    );

    let winner = &winners[0];
    let stored = h
        .store
        .get(SID)
        .await
        .unwrap()
        .expect("session still there");
    assert_eq!(stored.state, SessionState::HandingOver);
    assert_eq!(stored.token, winner.token);
    assert_eq!(
        stored.intake, winner.intake,
        "only the winner's intake was written"
    );
}

/// Racing slides of a due lock: one write, the others see it fresh.
async fn concurrent_slides_write_once(h: Harness) {
    start(&h).await;
    let Ok(ClaimOutcome::Claimed(claim)) = h.store.claim(SID, &[]).await else {
        panic!("claim failed");
    };
    let Ok(Guarded::Applied(locked)) = h.store.complete(SID, &claim.token).await else {
        panic!("complete failed");
    };
    h.clock.advance(h.policy.slide_interval_secs * 2);
    let racers = (0..RACERS).map(|_| {
        let store = Arc::clone(&h.store);
        let snapshot = locked.clone();
        tokio::spawn(async move { store.slide_lock(&snapshot).await })
    });
    let outcomes: Vec<SlideOutcome> = join_all(racers)
        .await
        .into_iter()
        .map(|joined| match joined {
            Ok(Ok(outcome)) => outcome,
            other => panic!("[{}] a racer failed: {other:?}", h.adapter),
        })
        .collect();
    let slid = outcomes
        .iter()
        .filter(|o| matches!(o, SlideOutcome::Slid(_)))
        .count();
    let not_due = outcomes
        .iter()
        .filter(|o| matches!(o, SlideOutcome::NotDue))
        .count();
    assert_eq!(
        (slid, not_due),
        (1, RACERS - 1),
        "[{}] (slid, not due) of {RACERS}",
        h.adapter
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_32_concurrent_claims_have_exactly_one_winner() {
    concurrent_claims_have_exactly_one_winner(dynamodb_harness().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_32_concurrent_claims_have_exactly_one_winner() {
    concurrent_claims_have_exactly_one_winner(memory_harness().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_touches_write_once() {
    concurrent_slides_write_once(dynamodb_harness().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_concurrent_touches_write_once() {
    concurrent_slides_write_once(memory_harness().await).await;
}
