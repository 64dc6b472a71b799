//! The embedded store: local runs and fast tests. Same rules as DynamoDB, expiry included: expired
//! items stay in the map (as DynamoDB keeps them for days) and every read and condition ignores them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    claimed_event, completed_events, end_failed_handover, intake_session, queue_has_room, rules,
    AgentStore, Amended, ClaimOutcome, Enqueued, Guarded, HandoverStore, IdempotencyBegin,
    IdempotencyStore, IntakeStore, Linked, LiveStore, LockPolicy, LockSlider, PaceStore, Quota,
    QuotaStore, Registered, Reserved, SessionReader, SlideOutcome, StartIntakeOutcome, StoreError,
    CONNECTION_SECS, IDEMPOTENCY_KEEP_SECS, IDEMPOTENCY_PENDING_SECS, MSC_LINK_SECS,
};
use crate::clock::Clock;
use crate::domain::{
    apply, relation_name, with_events, ConnectionId, HandoverChange, HolderToken, IntakeAnswer,
    IntakeStart, QueuedMessage, Session, SessionState,
};

#[derive(Debug, Clone)]
struct IdempotencyRecord {
    fingerprint: String,
    reply: Option<String>,
    expires_at: i64,
}

/// A conversation's live connections and the highest cursor announced to them.
#[derive(Debug, Default)]
struct LiveItem {
    /// Connection → (kept until, the last cursor its page had read when it registered).
    connections: HashMap<ConnectionId, (i64, u64)>,
    announced: u64,
}

pub struct MemoryStore {
    items: Mutex<HashMap<String, Session>>,
    /// MSC conversation → (session, expiry).
    msc_links: Mutex<HashMap<String, (String, i64)>>,
    requests: Mutex<HashMap<String, IdempotencyRecord>>,
    /// Quota key → (window start, uses in it).
    quotas: Mutex<HashMap<String, (i64, u32)>>,
    live: Mutex<HashMap<String, LiveItem>>,
    /// The next slot of MSC's pace (epoch milliseconds).
    next_send: Mutex<i64>,
    clock: Arc<dyn Clock>,
    policy: LockPolicy,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>, policy: LockPolicy) -> Self {
        Self {
            items: Mutex::new(HashMap::new()),
            msc_links: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            quotas: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            next_send: Mutex::new(0),
            clock,
            policy,
        }
    }

    /// The item as stored, expired or not: what DynamoDB would still return to a plain read.
    pub fn stored(&self, session_id: &str) -> Option<Session> {
        self.items().get(session_id).cloned()
    }

    fn items(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // No code path panics while holding the lock, but a poisoned map is still a consistent map:
        // every mutation below is a single insert or remove.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionReader for MemoryStore {
    async fn get(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .items()
            .get(session_id)
            .filter(|s| s.is_live(now))
            .cloned())
    }

    async fn get_stored(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.stored(session_id))
    }
}

#[async_trait]
impl IntakeStore for MemoryStore {
    async fn start_intake(&self, start: &IntakeStart) -> Result<StartIntakeOutcome, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        if let Some(in_the_way) = items
            .get(&start.session_id)
            .filter(|current| !rules::may_start_intake(Some(current), now))
        {
            return Ok(StartIntakeOutcome::Busy(in_the_way.clone()));
        }
        let session = intake_session(start, &self.policy, now);
        items.insert(session.session_id.clone(), session.clone());
        Ok(StartIntakeOutcome::Started(session))
    }

    async fn abandon_intake(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<()>, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        let current = items.get(session_id);
        if !rules::holds_intake(current, token, now) {
            return Ok(Guarded::refused(current.cloned(), now));
        }
        items.remove(session_id);
        Ok(Guarded::Applied(()))
    }
}

#[async_trait]
impl HandoverStore for MemoryStore {
    async fn claim(
        &self,
        session_id: &str,
        intake: &[IntakeAnswer],
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        let Some(current) = items.get_mut(session_id) else {
            return Ok(ClaimOutcome::NoIntake);
        };
        if !rules::may_claim(Some(current), now) {
            return Ok(ClaimOutcome::refused(Some(current.clone()), None, now));
        }
        current.state = SessionState::HandingOver;
        current.token = HolderToken::generate();
        current.intake = intake.to_vec();
        current.relation_name = relation_name(intake);
        current.history = with_events(&current.history, &[claimed_event(intake, now)]);
        current.expires_at = self.policy.lease_expiry(now);
        current.updated_at = now;
        Ok(ClaimOutcome::Claimed(current.clone()))
    }

    async fn complete(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<Session>, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        let current = items.get_mut(session_id);
        match current {
            Some(session) if rules::holds_claim(Some(session), token) => {
                session.state = SessionState::HandedOver;
                session.intake.clear();
                session.transcript.clear();
                session.expires_at = self.policy.lock_expiry(now);
                let locked = completed_events(now, session.expires_at);
                session.history = with_events(&session.history, &locked);
                session.updated_at = now;
                Ok(Guarded::Applied(session.clone()))
            }
            // The same completion again (DynamoDB's adapter sees this when a retried write finds
            // its own lock): applied before, nothing to write.
            Some(session)
                if session.state == SessionState::HandedOver && session.token == *token =>
            {
                Ok(Guarded::Applied(session.clone()))
            }
            other => Ok(Guarded::refused(other.cloned(), now)),
        }
    }

    async fn release(
        &self,
        session_id: &str,
        token: &HolderToken,
        refusal: &str,
    ) -> Result<Guarded<()>, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        match items.get_mut(session_id) {
            Some(session) if rules::holds_claim(Some(session), token) => {
                end_failed_handover(session, &self.policy, refusal, now);
                Ok(Guarded::Applied(()))
            }
            other => Ok(Guarded::refused(other.map(|s| s.clone()), now)),
        }
    }

    async fn enqueue(
        &self,
        session_id: &str,
        message: &QueuedMessage,
    ) -> Result<Enqueued, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        match items.get_mut(session_id) {
            Some(session)
                if session.state == SessionState::HandingOver
                    && session.is_live(now)
                    && queue_has_room(&session.queued, message) =>
            {
                session.queued.push(message.clone());
                Ok(Enqueued::Queued {
                    position: session.queued.len(),
                })
            }
            other => Ok(Enqueued::refused(other.map(|s| s.clone()), now)),
        }
    }

    async fn clear_queue(&self, session_id: &str) -> Result<(), StoreError> {
        if let Some(session) = self.items().get_mut(session_id) {
            session.queued.clear();
        }
        Ok(())
    }
}

#[async_trait]
impl LockSlider for MemoryStore {
    async fn slide_lock(&self, session: &Session) -> Result<SlideOutcome, StoreError> {
        let now = self.clock.now();
        if !self.policy.slide_due(session, now) {
            return Ok(SlideOutcome::refused(Some(session), now));
        }
        let mut items = self.items();
        match items.get_mut(&session.session_id) {
            Some(current) if rules::may_slide(Some(current), &self.policy, now) => {
                current.expires_at = self.policy.lock_expiry(now);
                current.updated_at = now;
                Ok(SlideOutcome::Slid(current.clone()))
            }
            other => Ok(SlideOutcome::refused(other.map(|s| &*s), now)),
        }
    }
}

#[async_trait]
impl AgentStore for MemoryStore {
    async fn amend_handover(
        &self,
        session_id: &str,
        change: &HandoverChange,
    ) -> Result<Amended, StoreError> {
        let now = self.clock.now();
        let mut items = self.items();
        let current = match items.get_mut(session_id) {
            Some(session) if change.applies_to(session, now) => session,
            other => return Ok(Amended::NotHandedOver(other.cloned())),
        };
        match apply(current, change, now, self.policy.lock_expiry(now)) {
            Some(next) => {
                *current = next.clone();
                Ok(Amended::Applied(next))
            }
            None => Ok(Amended::Unchanged(current.clone())),
        }
    }

    async fn link_msc_conversation(
        &self,
        guid: &str,
        session_id: &str,
    ) -> Result<Linked, StoreError> {
        let now = self.clock.now();
        let mut links = self
            .msc_links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((linked, expires_at)) = links.get(guid) {
            if *expires_at > now && linked != session_id {
                return Ok(Linked::TakenByAnother);
            }
        }
        links.insert(
            guid.to_owned(),
            (session_id.to_owned(), now.saturating_add(MSC_LINK_SECS)),
        );
        Ok(Linked::Linked)
    }

    async fn find_msc_conversation(&self, guid: &str) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .msc_links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(guid)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(session_id, _)| session_id.clone()))
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin_request(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyBegin, StoreError> {
        let now = self.clock.now();
        let mut requests = self.requests();
        if let Some(record) = requests.get(key).filter(|r| r.expires_at > now) {
            return Ok(match &record.reply {
                Some(reply) => IdempotencyBegin::Replay {
                    fingerprint: record.fingerprint.clone(),
                    reply: reply.clone(),
                },
                None => IdempotencyBegin::InProgress,
            });
        }
        requests.insert(
            key.to_owned(),
            IdempotencyRecord {
                fingerprint: fingerprint.to_owned(),
                reply: None,
                expires_at: now.saturating_add(IDEMPOTENCY_PENDING_SECS),
            },
        );
        Ok(IdempotencyBegin::Fresh)
    }

    async fn finish_request(&self, key: &str, reply: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        if let Some(record) = self.requests().get_mut(key).filter(|r| r.reply.is_none()) {
            record.reply = Some(reply.to_owned());
            record.expires_at = now.saturating_add(IDEMPOTENCY_KEEP_SECS);
        }
        Ok(())
    }

    async fn abandon_request(&self, key: &str) -> Result<(), StoreError> {
        let mut requests = self.requests();
        if requests.get(key).is_some_and(|r| r.reply.is_none()) {
            requests.remove(key);
        }
        Ok(())
    }
}

impl MemoryStore {
    fn requests(&self) -> MutexGuard<'_, HashMap<String, IdempotencyRecord>> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl QuotaStore for MemoryStore {
    async fn take_quota(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Quota, StoreError> {
        let (start, left) = super::quota_window(self.clock.now(), window_secs);
        let mut quotas = self
            .quotas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Earlier windows count for nothing: dropped, so the map holds one entry per live key.
        quotas.retain(|_, (window, _)| *window >= start);
        let uses = quotas.entry(key.to_owned()).or_insert((start, 0));
        if uses.1 >= limit {
            return Ok(Quota::Spent {
                retry_after_secs: left,
            });
        }
        uses.1 += 1;
        Ok(Quota::Within)
    }
}

#[async_trait]
impl PaceStore for MemoryStore {
    async fn reserve_send(
        &self,
        now_ms: i64,
        interval_ms: i64,
        latest_ms: i64,
    ) -> Result<Reserved, StoreError> {
        let mut next = self
            .next_send
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = (*next).max(now_ms);
        if slot > latest_ms {
            return Ok(Reserved::NotBefore(slot));
        }
        *next = slot + interval_ms;
        Ok(Reserved::At(slot))
    }

    async fn hold_sends(&self, until_ms: i64) -> Result<(), StoreError> {
        let mut next = self
            .next_send
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *next = (*next).max(until_ms);
        Ok(())
    }
}

#[async_trait]
impl LiveStore for MemoryStore {
    async fn register_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
        seen: u64,
    ) -> Result<Registered, StoreError> {
        let now = self.clock.now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let item = live.entry(session_id.to_owned()).or_default();
        if item.announced > seen {
            return Ok(Registered::Behind {
                announced: item.announced,
            });
        }
        item.connections.retain(|_, (until, _)| *until > now);
        item.connections
            .insert(connection.clone(), (now + CONNECTION_SECS, seen));
        let evicted = super::over_the_limit(
            item.connections
                .iter()
                .map(|(id, (until, _))| (id.clone(), *until))
                .collect(),
        );
        for id in &evicted {
            item.connections.remove(id);
        }
        Ok(Registered::Registered { evicted })
    }

    async fn announce(
        &self,
        session_id: &str,
        cursor: u64,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let now = self.clock.now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let item = live.entry(session_id.to_owned()).or_default();
        item.announced = item.announced.max(cursor);
        item.connections.retain(|_, (until, _)| *until > now);
        let mut connections: Vec<ConnectionId> = item
            .connections
            .iter()
            .filter(|(_, (_, seen))| *seen < cursor)
            .map(|(id, _)| id.clone())
            .collect();
        connections.sort();
        Ok(connections)
    }

    async fn connections(&self, session_id: &str) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        let now = self.clock.now();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut connections: Vec<(ConnectionId, u64)> = live
            .get(session_id)
            .map(|item| {
                item.connections
                    .iter()
                    .filter(|(_, (until, _))| *until > now)
                    .map(|(id, (_, seen))| (id.clone(), *seen))
                    .collect()
            })
            .unwrap_or_default();
        connections.sort();
        Ok(connections)
    }

    async fn remove_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
    ) -> Result<(), StoreError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(item) = live.get_mut(session_id) {
            item.connections.remove(connection);
        }
        Ok(())
    }
}
