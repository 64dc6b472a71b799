//! Mobile Service Cloud: agent presence and the Custom Channel API, as ports and HTTP adapters.
//!
//! The flow speaks in [`OutgoingMessage`]; which Custom Channel field carries what (routing keywords
//! above all, whose field is not public) is decided in [`custom_channel_body`] alone, so another MSC
//! API can replace it without touching the flow.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::clock::{rfc3339, Clock, SystemClock};
use crate::config::{MscApiSettings, PresenceSettings};
use crate::store::{PaceStore, Reserved};

/// What presence said, and whether the answer was a recent one reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceAnswer {
    pub online: bool,
    pub cached: bool,
}

#[async_trait]
pub trait Presence: Send + Sync {
    /// Whether an agent is available. Anything but a timely "Online" is "no": presence never fails
    /// the flow, it only makes the intake say agents are offline.
    async fn agent_available(&self, channel: &str, referrer: Option<&str>) -> PresenceAnswer;
}

/// One message into an MSC conversation: the handover itself, or an end user's later turn. Held in the
/// outbound queue as JSON, without its files' bytes (see [`crate::outbound::Held`]).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingMessage {
    /// The CAIC session id: one MSC conversation per CAIC conversation.
    pub conversation_id: String,
    /// Lets MSC drop a duplicate of this very message (a retried request).
    pub message_id: String,
    /// MSC's customer: the site's verified external id when there is one (MSC then groups one
    /// customer's conversations), else the conversation itself.
    pub relation_id: String,
    pub relation_name: String,
    pub content: String,
    /// Webstore referrer, or the end user's page URL for URL-based routing.
    pub referrer: Option<String>,
    pub routing_skill: Option<String>,
    pub subject: Option<String>,
    /// MSC's `ConversationGuid`, once an agent has replied: threads the message into that conversation.
    pub conversation_guid: Option<String>,
    /// Epoch seconds.
    pub sent_at: i64,
    /// Files for the agent: the Custom Channel API's `Attachments`.
    #[serde(skip)]
    pub attachments: Vec<OutgoingFile>,
    /// A note for the agents only (`IsPrivate`): the service's own, never the end user's words.
    pub is_private: bool,
}

/// A file for the agent, checked already: its name and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Content and names are personal data: keep them out of any log line.
        f.debug_struct("OutgoingMessage")
            .field("conversation_id", &self.conversation_id)
            .field("message_id", &self.message_id)
            .field("referrer", &self.referrer)
            .field("routing_skill", &self.routing_skill)
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MscError {
    #[error("MSC did not answer in time")]
    Timeout,
    #[error("MSC could not be reached")]
    Transport(#[source] reqwest::Error),
    #[error("MSC refused the message with HTTP {0}")]
    Status(u16),
    /// 429 or 503 past what one request can wait: try again after this many seconds.
    #[error("MSC is busy (rate limit); retry after {retry_after} s")]
    Busy { retry_after: u64 },
}

/// What MSC's `Retry-After` (whole seconds; an HTTP date or nothing reads as none) becomes: at least
/// 1 s, at most [`MAX_RETRY_AFTER_SECS`]. A peer's number never reaches arithmetic unbounded.
pub fn retry_after_secs(asked: Option<u64>) -> u64 {
    asked.unwrap_or(1).clamp(1, MAX_RETRY_AFTER_SECS)
}

/// The longest wait MSC's `Retry-After` is taken for, and the longest one passed on to the channel.
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

/// How long a handover's post may wait in all for its slot and MSC's `Retry-After`: CAIC's end slot
/// and the operator have seconds, not minutes.
pub const HANDOVER_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[async_trait]
pub trait MscMessages: Send + Sync {
    /// Posts one message; `Ok` only when MSC accepted it (HTTP 201).
    async fn post(&self, message: &OutgoingMessage) -> Result<(), MscError>;
}

type PresenceKey = (String, String);

pub struct PresenceHttp {
    http: reqwest::Client,
    settings: PresenceSettings,
    clock: Arc<dyn Clock>,
    /// Per warm Lambda instance: answers (epoch milliseconds, online) by (channel, referrer).
    cache: Mutex<HashMap<PresenceKey, (i64, bool)>>,
    /// When this instance last asked MSC, within the last second.
    asked: Mutex<VecDeque<i64>>,
}

/// A warm instance sees few distinct (channel, referrer) pairs; the bound only guards memory.
const PRESENCE_CACHE_ENTRIES: usize = 1_024;

/// Past the budget, an answer this old is still reused rather than saying offline.
const STALE_ANSWER_MS: i64 = 60_000;

impl PresenceHttp {
    pub fn new(http: reqwest::Client, settings: PresenceSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
            settings,
            clock,
            cache: Default::default(),
            asked: Default::default(),
        }
    }

    fn cached(&self, key: &PresenceKey, max_age_ms: i64, now: i64) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| now.saturating_sub(*at) < max_age_ms)
            .map(|(_, online)| *online)
    }

    fn remember(&self, key: PresenceKey, online: bool, now: i64) {
        if self.settings.cache_for.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PRESENCE_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| now.saturating_sub(*at) < STALE_ANSWER_MS);
            if cache.len() >= PRESENCE_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (now, online));
    }

    /// Whether this instance may ask MSC now: at most `calls_per_second` in any second. Written here
    /// rather than with a rate-limiting crate because it must run on the `Clock` port (tests move
    /// time) and is a window of a few timestamps.
    fn within_budget(&self, now: i64) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        while asked
            .front()
            .is_some_and(|at| now.saturating_sub(*at) >= 1_000)
        {
            asked.pop_front();
        }
        if asked.len() >= self.settings.calls_per_second {
            return false;
        }
        asked.push_back(now);
        true
    }
}

#[async_trait]
impl Presence for PresenceHttp {
    async fn agent_available(&self, channel: &str, referrer: Option<&str>) -> PresenceAnswer {
        let key = (channel.to_owned(), referrer.unwrap_or_default().to_owned());
        let now = self.clock.now_millis();
        let cache_ms = i64::try_from(self.settings.cache_for.as_millis()).unwrap_or(i64::MAX);
        let reused = |online| {
            crate::metrics::count_outcome("Presence", "Result", "cached");
            PresenceAnswer {
                online,
                cached: true,
            }
        };
        if let Some(online) = self.cached(&key, cache_ms, now) {
            return reused(online);
        }
        if !self.within_budget(now) {
            // MSC allows a few requests a second for the whole account, relays included: one caller
            // naming many referrers must not spend them. Rule 2 allows offline.
            if let Some(online) = self.cached(&key, STALE_ANSWER_MS.max(cache_ms), now) {
                return reused(online);
            }
            tracing::warn!("presence budget of this instance spent; agents offline");
            crate::metrics::count_outcome("Presence", "Result", "over_budget");
            return PresenceAnswer {
                online: false,
                cached: false,
            };
        }
        let online = self.ask_msc(channel, referrer).await;
        let result = if online { "online" } else { "offline" };
        crate::metrics::count_outcome("Presence", "Result", result);
        self.remember(key, online, self.clock.now_millis());
        PresenceAnswer {
            online,
            cached: false,
        }
    }
}

impl PresenceHttp {
    async fn ask_msc(&self, channel: &str, referrer: Option<&str>) -> bool {
        let request = self
            .http
            .get(format!("{}/api/v1", self.settings.url))
            .query(&[
                ("apikey", self.settings.api_key.as_str()),
                ("Channel", channel),
                ("referrer", referrer.unwrap_or_default()),
            ])
            .timeout(self.settings.timeout);
        // The whole exchange, body included, must fit in the timeout.
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(Ok((status, body))) => {
                let online =
                    status == reqwest::StatusCode::OK && body.trim().eq_ignore_ascii_case("online");
                tracing::info!(status = status.as_u16(), online, "msc presence answered");
                online
            }
            Ok(Err(err)) => {
                // without_url: the presence URL carries the API key.
                tracing::warn!(error = %err.without_url(), "msc presence failed; agents offline");
                false
            }
            Err(_) => {
                tracing::warn!("msc presence timed out; agents offline");
                false
            }
        }
    }
}

pub struct MscHttp {
    http: reqwest::Client,
    settings: MscApiSettings,
}

impl MscHttp {
    pub fn new(http: reqwest::Client, settings: MscApiSettings) -> Self {
        Self { http, settings }
    }
}

/// The one place that knows the Custom Channel API's field names.
pub fn custom_channel_body(message: &OutgoingMessage, channel_account: &str) -> Value {
    let mut body = json!({
        "ChannelAccountExternalIdentifier": channel_account,
        "ConversationExternalIdentifier": message.conversation_id,
        "MessageExternalIdentifier": message.message_id,
        "RelationExternalIdentifier": message.relation_id,
        "RelationName": message.relation_name,
        "Content": message.content,
        "IsPrivate": message.is_private,
        "SentDateTime": rfc3339(message.sent_at),
    });
    if let Some(referrer) = &message.referrer {
        body["Referrer"] = json!(referrer);
    }
    if let Some(subject) = &message.subject {
        body["Subject"] = json!(subject);
    }
    if let Some(skill) = &message.routing_skill {
        body["RoutingKeywords"] = json!(skill);
    }
    if let Some(guid) = &message.conversation_guid {
        body["ConversationGuid"] = json!(guid);
    }
    if !message.attachments.is_empty() {
        use base64::Engine;
        body["Attachments"] = message
            .attachments
            .iter()
            .map(|file| {
                json!({
                    "FileName": file.name,
                    "Base64Content": base64::engine::general_purpose::STANDARD.encode(&file.bytes),
                })
            })
            .collect();
    }
    body
}

#[async_trait]
impl MscMessages for MscHttp {
    /// One request: a busy MSC is waited for by [`PacedMsc`], which every sender posts through.
    async fn post(&self, message: &OutgoingMessage) -> Result<(), MscError> {
        self.post_once(message).await
    }
}

/// How far apart requests to MSC's API go: `MSC_REQUESTS_PER_SECOND` over any second, with a margin.
/// MSC counts over a sliding second; sends spaced exactly 1/R s apart still land R + 1 in one of its
/// seconds whenever the network delays one a little more than the next. Spacing them
/// `(1 s + margin) / R` apart keeps R + 1 sends at least 1 s + margin apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub interval_ms: i64,
}

/// The jitter between two sends' arrivals at MSC the pace absorbs. It also keeps the hour's count
/// (10,000 allowed) below MSC's limit at 3 a second.
pub const PACE_MARGIN_MS: i64 = 100;

impl Pace {
    pub fn per_second(requests: u32) -> Self {
        let requests = i64::from(requests.max(1));
        Self {
            interval_ms: (1_000 + PACE_MARGIN_MS + requests - 1) / requests,
        }
    }
}

/// Every post to MSC, whoever makes it, takes the next slot of the shared pace ([`PaceStore`]) and
/// waits for it; MSC answering busy (429, 503 with `Retry-After`) holds every sender back as long as
/// it asks. A post that would wait longer than `max_wait` is not made: [`MscError::Busy`].
pub struct PacedMsc {
    inner: Arc<dyn MscMessages>,
    budget: Arc<dyn PaceStore>,
    pace: Pace,
    max_wait: std::time::Duration,
}

impl PacedMsc {
    pub fn new(
        inner: Arc<dyn MscMessages>,
        budget: Arc<dyn PaceStore>,
        pace: Pace,
        max_wait: std::time::Duration,
    ) -> Self {
        Self {
            inner,
            budget,
            pace,
            max_wait,
        }
    }

    async fn hold(&self, millis: i64) {
        let until = SystemClock.now_millis().saturating_add(millis);
        if let Err(err) = self.budget.hold_sends(until).await {
            tracing::warn!(error = %err, "could not hold MSC's pace back");
        }
    }
}

#[async_trait]
impl MscMessages for PacedMsc {
    async fn post(&self, message: &OutgoingMessage) -> Result<(), MscError> {
        // Real time, not the sessions' clock: the pace is about when requests reach MSC.
        let started = std::time::Instant::now();
        // What `max_wait` bounds is the wait for MSC (its slots, its `Retry-After`), not the pace's own
        // round trips to the store: those are taken out.
        let mut in_store = std::time::Duration::ZERO;
        let waited = |in_store: std::time::Duration| started.elapsed().saturating_sub(in_store);
        for _ in 0..PACE_ATTEMPTS {
            let now = SystemClock.now_millis();
            let left = self.max_wait.saturating_sub(waited(in_store));
            let latest = now.saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
            let asked = std::time::Instant::now();
            let reserved = self
                .budget
                .reserve_send(now, self.pace.interval_ms, latest)
                .await;
            in_store += asked.elapsed();
            match reserved {
                Ok(Reserved::At(slot)) => {
                    // From after the reservation: its own round trip must not make the send late.
                    let now = SystemClock.now_millis();
                    let pause = u64::try_from(slot.saturating_sub(now)).unwrap_or(0);
                    if pause > 0 {
                        crate::metrics::milliseconds("MscPaceWait", pause as f64);
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    } else if now.saturating_sub(slot) > PACE_MARGIN_MS / 2 {
                        // The reservation took longer than the margin allows for: this send may come
                        // closer to the one before than the pace says. Counted, not refused.
                        crate::metrics::count("MscPaceLate");
                    }
                }
                Ok(Reserved::NotBefore(next)) => {
                    // `next` was measured against when the reservation began; a slow store makes
                    // it look further off than it is now.
                    let now = SystemClock.now_millis();
                    let left = self.max_wait.saturating_sub(waited(in_store));
                    let left_ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
                    if left_ms > 0 && next <= now.saturating_add(left_ms) {
                        continue;
                    }
                    let secs = u64::try_from(next.saturating_sub(now))
                        .unwrap_or(0)
                        .div_ceil(1_000);
                    return Err(MscError::Busy {
                        retry_after: retry_after_secs(Some(secs)),
                    });
                }
                Err(err) => {
                    // Without the pace a send may be one too many: MSC would refuse it anyway.
                    tracing::warn!(error = %err, "MSC's pace could not be read; not sending now");
                    return Err(MscError::Busy { retry_after: 1 });
                }
            }
            match self.inner.post(message).await {
                Err(MscError::Busy { retry_after }) => {
                    crate::metrics::count("MscBusy");
                    let pause = std::time::Duration::from_secs(retry_after);
                    self.hold(
                        i64::try_from(retry_after)
                            .unwrap_or(60)
                            .saturating_mul(1_000),
                    )
                    .await;
                    if waited(in_store).saturating_add(pause) > self.max_wait {
                        return Err(MscError::Busy { retry_after });
                    }
                    tracing::info!(retry_after, "MSC is busy; waiting as it asks");
                }
                // A 5xx or no answer holds nobody back: one conversation's failure must not cost
                // the handovers their slots. Its message comes round again after its own backoff.
                done => return done,
            }
        }
        // Slots kept slipping away (a store slower than the senders around it).
        Err(MscError::Busy { retry_after: 1 })
    }
}

/// How often one post reserves a slot before it gives up: a slot missed to a slow store, and a
/// `Retry-After` or two.
const PACE_ATTEMPTS: usize = 8;

impl MscError {
    /// Whether trying again later may succeed: no answer, MSC's own failure, busy, a 408, or an
    /// answer that is neither 201 nor a refusal (MSC drops a repeat by its id). A 4xx but 408 and 429
    /// is MSC refusing this message for good.
    pub fn is_transient(&self) -> bool {
        match self {
            MscError::Timeout | MscError::Transport(_) | MscError::Busy { .. } => true,
            MscError::Status(status) => !(400..500).contains(status) || *status == 408,
        }
    }
}

impl MscHttp {
    async fn post_once(&self, message: &OutgoingMessage) -> Result<(), MscError> {
        let response = self
            .http
            .post(format!("{}/messages", self.settings.url))
            .basic_auth(&self.settings.key, Some(&self.settings.secret))
            .json(&custom_channel_body(
                message,
                &self.settings.channel_account,
            ))
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|err| {
                if err.is_timeout() {
                    MscError::Timeout
                } else {
                    MscError::Transport(err.without_url())
                }
            })?;
        match response.status().as_u16() {
            201 => Ok(()),
            429 | 503 => {
                let asked = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Err(MscError::Busy {
                    retry_after: retry_after_secs(asked),
                })
            }
            other => Err(MscError::Status(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_bounded_both_ways() {
        assert_eq!(retry_after_secs(None), 1);
        assert_eq!(retry_after_secs(Some(0)), 1);
        assert_eq!(retry_after_secs(Some(2)), 2);
        assert_eq!(retry_after_secs(Some(u64::MAX)), MAX_RETRY_AFTER_SECS);
    }

    #[test]
    fn maps_the_message_onto_custom_channel_fields() {
        let message = OutgoingMessage {
            conversation_id: "s-1".into(),
            message_id: "s-1-handover-t".into(),
            relation_id: "customer-42".into(),
            relation_name: "Jane".into(),
            content: "hello".into(),
            referrer: Some("NL-shop".into()),
            routing_skill: Some("billing".into()),
            subject: None,
            conversation_guid: None,
            sent_at: 0,
            attachments: vec![OutgoingFile {
                name: "photo.png".into(),
                bytes: vec![0x89, b'P', b'N', b'G'],
            }],
            is_private: false,
        };
        let body = custom_channel_body(&message, "acct");
        assert_eq!(body["ChannelAccountExternalIdentifier"], "acct");
        assert_eq!(body["ConversationExternalIdentifier"], "s-1");
        assert_eq!(body["RelationExternalIdentifier"], "customer-42");
        assert_eq!(body["Referrer"], "NL-shop");
        assert_eq!(body["RoutingKeywords"], "billing");
        assert_eq!(body["IsPrivate"], false);
        assert!(body.get("Subject").is_none());
        assert_eq!(
            body["Attachments"],
            json!([{"FileName": "photo.png", "Base64Content": "iVBORw=="}])
        );
        assert!(!format!("{message:?}").contains("hello"));
    }
}
