//! How long each state of a session lasts: one policy, read from the configuration and shared by both
//! store adapters, so the deadlines cannot drift apart.

use super::{Session, SessionState};

/// How long each state lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// `SESSION_LOCK_SECS`: how long a handed-over session stays away from CAIC after its last activity.
    pub lock_secs: i64,
    /// `LOCK_REFRESH_SECS`: the sliding lock is written at most once per this many seconds.
    pub slide_interval_secs: i64,
    /// `CLAIM_LEASE_SECS`: how long a claimer may take to get MSC's answer before others may take over.
    pub claim_lease_secs: i64,
    /// `PRECHAT_WINDOW_SECS`: how long the intake dialog may take before the flow is abandoned.
    pub prechat_window_secs: i64,
}

impl Default for LockPolicy {
    fn default() -> Self {
        Self {
            lock_secs: 86_400,
            slide_interval_secs: 300,
            claim_lease_secs: 30,
            prechat_window_secs: 1_800,
        }
    }
}

impl LockPolicy {
    pub fn prechat_expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.prechat_window_secs)
    }

    pub fn lease_expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.claim_lease_secs)
    }

    pub fn lock_expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.lock_secs)
    }

    /// A lock expiring at or before this instant was last written at least one interval ago.
    pub fn slide_due_before(&self, now: i64) -> i64 {
        self.lock_expiry(now)
            .saturating_sub(self.slide_interval_secs)
    }

    /// Whether sliding this session's lock would write anything. Decided from the session already read, so
    /// the relay path pays no DynamoDB call when the lock is fresh.
    pub fn slide_due(&self, session: &Session, now: i64) -> bool {
        session.state == SessionState::HandedOver
            && session.is_live(now)
            && session.expires_at <= self.slide_due_before(now)
    }
}
