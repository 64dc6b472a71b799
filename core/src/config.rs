//! Every setting of every function, read once at cold start: one `from_env` per function, so what a
//! function reads is one hop away. A missing or malformed value stops the function with a message that
//! names the variable. Adapters take the settings built here, never the environment.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::files::{FileRules, MAX_FILE_BYTES};
use crate::domain::LockPolicy;
use crate::hours::BusinessHours;

/// A PEM file of certificate authorities that outbound TLS trusts besides the compiled-in roots (the AWS
/// SDKs' name for it). Unset in a deployment: CAIC, MSC and AWS present publicly trusted certificates.
/// Set for a private CA, and by the benchmark, whose TLS peers carry certificates of a CA made per run.
pub const CA_BUNDLE_VARIABLE: &str = "AWS_CA_BUNDLE";

/// The process-wide `AWS_CA_BUNDLE`, read before the deployment's secret (the secret is fetched over TLS).
pub fn ca_bundle(env: &Env) -> Option<std::path::PathBuf> {
    env.optional(CA_BUNDLE_VARIABLE).map(Into::into)
}

/// The base URLs of a function's peers, read before the deployment's secret so that their connections
/// can open while it is fetched ([`crate::open_ahead`]). One that is missing or malformed is left out:
/// the function's own configuration reports it.
#[derive(Debug, Clone, Default)]
pub struct PeerUrls {
    pub caic: Option<String>,
    pub msc: Option<String>,
    pub presence: Option<String>,
    pub channel: Option<String>,
    pub live: Option<String>,
}

impl PeerUrls {
    pub fn from_env(env: &Env) -> Self {
        Self {
            caic: env.http_url("CAIC_BASE_URL").ok(),
            msc: env.http_url("MSC_API_URL").ok(),
            presence: env.http_url("MSC_PRESENCE_URL").ok(),
            channel: env.http_url("CHANNEL_WEBHOOK_URL").ok(),
            live: env.http_url("LIVE_CONNECTIONS_URL").ok(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A snapshot of environment variables. Built from the process at start, or from pairs in tests, so
/// configuration parsing is tested without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_owned(), value.into());
    }

    /// Sets `name` unless it already has a non-blank value.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        if self.optional(name).is_none() {
            self.vars.insert(name.to_owned(), value.into());
        }
    }

    /// A set, non-blank value.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or(default).to_owned()
    }

    fn positive<T: std::str::FromStr + PartialOrd + Default>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(value) if value > T::default() => Ok(value),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("expected a whole number above 0, got {raw:?}"),
            }),
        }
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.positive(name, default).map(Duration::from_millis)
    }

    /// A required `http://` or `https://` base URL, without its trailing slash.
    pub fn http_url(&self, name: &'static str) -> Result<String, ConfigError> {
        let raw = self.required(name)?;
        let has_host = raw.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
        });
        if !has_host || raw.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("expected an http:// or https:// URL, got {raw:?}"),
            });
        }
        Ok(raw.trim_end_matches('/').to_owned())
    }

    /// A key or secret shared with callers (see [`crate::http::CallerKey`]), long enough not to be
    /// guessed: `<name>`, and during a rotation also `<name>_NEXT`.
    fn caller_key(&self, name: &'static str) -> Result<Keys, ConfigError> {
        let long_enough = |name: &'static str, key: &str| {
            if key.len() < 16 {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 16 characters".into(),
                });
            }
            Ok(key.to_owned())
        };
        let next_name = NEXT_KEYS
            .iter()
            .find(|(current, _)| *current == name)
            .map(|(_, next)| *next);
        let next = match next_name.and_then(|next| self.optional(next).map(|key| (next, key))) {
            Some((next, key)) => Some(long_enough(next, key)?),
            None => None,
        };
        Ok(Keys {
            current: long_enough(name, self.required(name)?)?,
            next,
        })
    }
}

/// A key or secret and, while it is being rotated, its successor: both are accepted (and a signature
/// is made with both), so callers can move from one to the other without a moment of refusals.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub current: String,
    pub next: Option<String>,
}

impl Keys {
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.next.as_deref())
    }
}

/// Each rotatable key and the variable of its successor.
pub const NEXT_KEYS: &[(&str, &str)] = &[
    ("CHANNEL_API_KEY", "CHANNEL_API_KEY_NEXT"),
    ("CAIC_WEBHOOK_SECRET", "CAIC_WEBHOOK_SECRET_NEXT"),
    ("OPERATOR_API_KEY", "OPERATOR_API_KEY_NEXT"),
    ("MSC_WEBHOOK_SECRET", "MSC_WEBHOOK_SECRET_NEXT"),
    ("CHANNEL_WEBHOOK_SECRET", "CHANNEL_WEBHOOK_SECRET_NEXT"),
    (
        "CONVERSATION_TOKEN_SECRET",
        "CONVERSATION_TOKEN_SECRET_NEXT",
    ),
    ("IDENTITY_SECRET", "IDENTITY_SECRET_NEXT"),
];

/// The channel used when an answer names none.
pub const DEFAULT_CHANNEL: &str = "WebChat";
/// The DynamoDB table when `HANDOVER_TABLE` is unset.
pub const DEFAULT_TABLE: &str = "handover-sessions";

/// The CAIC gateway (`CAIC_*`).
#[derive(Clone)]
pub struct CaicSettings {
    pub base_url: String,
    pub customer_key: String,
    pub project_key: String,
    pub api_key: String,
    /// The culture when the channel sends none.
    pub culture: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for CaicSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaicSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"<secret>")
            .field("culture", &self.culture)
            .finish_non_exhaustive()
    }
}

impl CaicSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: env.http_url("CAIC_BASE_URL")?,
            customer_key: env.required("CAIC_CUSTOMER_KEY")?.to_owned(),
            project_key: env.required("CAIC_PROJECT_KEY")?.to_owned(),
            api_key: env.required("CAIC_API_KEY")?.to_owned(),
            culture: env.string_or("CAIC_CULTURE", "en"),
            timeout: env.millis("CAIC_TIMEOUT_MS", 8_000)?,
        })
    }
}

/// MSC's presence API (`MSC_PRESENCE_*`, `PRESENCE_*`).
#[derive(Clone)]
pub struct PresenceSettings {
    pub url: String,
    pub api_key: String,
    pub timeout: Duration,
    /// How long an answer is reused for the same channel and referrer, so a burst of livechat answers
    /// stays under MSC's rate limit (3/s). Zero turns the cache off.
    pub cache_for: Duration,
    /// `PRESENCE_CALLS_PER_SECOND`: at most this many presence requests per instance in any second;
    /// past it, the cached answer (up to a minute old) or offline.
    pub calls_per_second: usize,
}

impl PresenceSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.http_url("MSC_PRESENCE_URL")?,
            api_key: env.required("MSC_PRESENCE_API_KEY")?.to_owned(),
            timeout: env.millis("PRESENCE_TIMEOUT_MS", 2_000)?,
            cache_for: match env.optional("PRESENCE_CACHE_MS") {
                Some("0") => Duration::ZERO,
                _ => env.millis("PRESENCE_CACHE_MS", 5_000)?,
            },
            calls_per_second: env.positive("PRESENCE_CALLS_PER_SECOND", 2)?,
        })
    }
}

/// MSC's Custom Channel API (`MSC_API_*`, `MSC_CHANNEL_ACCOUNT`, `MSC_TIMEOUT_MS`).
#[derive(Clone)]
pub struct MscApiSettings {
    pub url: String,
    pub key: String,
    pub secret: String,
    pub channel_account: String,
    pub timeout: Duration,
    /// `MSC_REQUESTS_PER_SECOND` (default 3, MSC's limit per account): the pace every post keeps.
    pub requests_per_second: u32,
    /// `MSC_OUTBOUND_QUEUE_URL`: the SQS FIFO queue every message but the handover's is held in.
    /// Unset locally (the runner's queue is in process); required deployed.
    pub outbound_queue: Option<String>,
}

impl MscApiSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.http_url("MSC_API_URL")?,
            key: env.required("MSC_API_KEY")?.to_owned(),
            secret: env.required("MSC_API_SECRET")?.to_owned(),
            channel_account: env.required("MSC_CHANNEL_ACCOUNT")?.to_owned(),
            timeout: env.millis("MSC_TIMEOUT_MS", 4_000)?,
            requests_per_second: {
                let rate: u32 = env.positive("MSC_REQUESTS_PER_SECOND", 3)?;
                if rate > 1_000 {
                    return Err(ConfigError::Invalid {
                        name: "MSC_REQUESTS_PER_SECOND",
                        reason: format!("expected 1 to 1000, got {rate}"),
                    });
                }
                rate
            },
            outbound_queue: match env.optional("MSC_OUTBOUND_QUEUE_URL") {
                None => None,
                Some(_) => Some(env.http_url("MSC_OUTBOUND_QUEUE_URL")?),
            },
        })
    }
}

/// `BUSINESS_HOURS` (see [`crate::hours`] for the format); unset, always open.
fn business_hours(env: &Env) -> Result<BusinessHours, ConfigError> {
    match env.optional("BUSINESS_HOURS") {
        None => Ok(BusinessHours::always_open()),
        Some(text) => BusinessHours::parse(text).map_err(|reason| ConfigError::Invalid {
            name: "BUSINESS_HOURS",
            reason,
        }),
    }
}

/// Where the waits for an agent are scheduled when deployed (`AGENT_WAIT_SCHEDULE_GROUP`,
/// `AGENT_WAIT_FUNCTION_ARN`, `AGENT_WAIT_SCHEDULER_ROLE_ARN`: the stack's schedule group, the
/// agent-wait function, and the role Scheduler assumes to invoke it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    pub group: String,
    pub target_arn: String,
    pub role_arn: String,
}

/// The wait for an agent after a handover (`AGENT_WAIT_SECS`, default 180, `0` off; `AGENT_WAIT_ASKS`,
/// default 3) and, deployed, where its timers are scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentWaitSettings {
    /// `None`: the end user is never told that no agent came.
    pub wait_secs: Option<i64>,
    pub asks: u32,
    /// Unset locally: the runner keeps its own timers.
    pub scheduler: Option<SchedulerSettings>,
}

/// The longest wait for an agent: the session lock's default, past which the handover has ended anyway.
pub const MAX_AGENT_WAIT_SECS: i64 = 86_400;

impl AgentWaitSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let wait_secs = match env.optional("AGENT_WAIT_SECS") {
            None => Some(180),
            Some(raw) => match raw.parse::<i64>() {
                Ok(0) => None,
                Ok(secs) if (1..=MAX_AGENT_WAIT_SECS).contains(&secs) => Some(secs),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "AGENT_WAIT_SECS",
                        reason: format!(
                        "expected whole seconds from 0 (off) to {MAX_AGENT_WAIT_SECS}, got {raw:?}"
                    ),
                    })
                }
            },
        };
        let asks: u32 = env.positive("AGENT_WAIT_ASKS", 3)?;
        if asks > 20 {
            return Err(ConfigError::Invalid {
                name: "AGENT_WAIT_ASKS",
                reason: format!("expected 1 to 20, got {asks}"),
            });
        }
        let scheduler = match env.optional("AGENT_WAIT_SCHEDULE_GROUP") {
            None => None,
            Some(group) => Some(SchedulerSettings {
                group: group.to_owned(),
                target_arn: env.required("AGENT_WAIT_FUNCTION_ARN")?.to_owned(),
                role_arn: env.required("AGENT_WAIT_SCHEDULER_ROLE_ARN")?.to_owned(),
            }),
        };
        Ok(Self {
            wait_secs,
            asks,
            scheduler,
        })
    }
}

/// Where agent replies and the ends of handovers are pushed (`CHANNEL_WEBHOOK_*`), if anywhere:
/// without a URL the channel polls `GET /v1/sessions/{sessionId}/messages`.
#[derive(Clone)]
pub struct ChannelWebhookSettings {
    pub url: String,
    /// Signs every push (HMAC-SHA256).
    pub secret: Keys,
    /// Per attempt.
    pub timeout: Duration,
}

impl ChannelWebhookSettings {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if env.optional("CHANNEL_WEBHOOK_URL").is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            url: env.http_url("CHANNEL_WEBHOOK_URL")?,
            secret: env.caller_key("CHANNEL_WEBHOOK_SECRET")?,
            timeout: env.millis("CHANNEL_WEBHOOK_TIMEOUT_MS", 2_000)?,
        }))
    }
}

/// Where sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// `HANDOVER_STORE=dynamodb` (the default): the table `HANDOVER_TABLE`.
    DynamoDb { table: String },
    /// `HANDOVER_STORE=memory`: the embedded store, for local runs (it forgets everything at exit).
    Memory,
}

/// The sessions: which store, and how long each state lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub store: StoreSettings,
    pub policy: LockPolicy,
}

impl SessionSettings {
    fn from_env(env: &Env, default_store: &str) -> Result<Self, ConfigError> {
        let store = match env.string_or("HANDOVER_STORE", default_store).as_str() {
            "memory" => StoreSettings::Memory,
            "dynamodb" => StoreSettings::DynamoDb {
                table: env.string_or("HANDOVER_TABLE", DEFAULT_TABLE),
            },
            other => {
                return Err(ConfigError::Invalid {
                    name: "HANDOVER_STORE",
                    reason: format!("expected dynamodb or memory, got {other:?}"),
                })
            }
        };
        Ok(Self {
            store,
            policy: lock_policy(env)?,
        })
    }
}

fn lock_policy(env: &Env) -> Result<LockPolicy, ConfigError> {
    let defaults = LockPolicy::default();
    let secs = |name, default: i64| env.positive(name, default);
    let policy = LockPolicy {
        lock_secs: secs("SESSION_LOCK_SECS", defaults.lock_secs)?,
        slide_interval_secs: secs("LOCK_REFRESH_SECS", defaults.slide_interval_secs)?,
        claim_lease_secs: secs("CLAIM_LEASE_SECS", defaults.claim_lease_secs)?,
        prechat_window_secs: secs("PRECHAT_WINDOW_SECS", defaults.prechat_window_secs)?,
    };
    if policy.slide_interval_secs >= policy.lock_secs {
        return Err(ConfigError::Invalid {
            name: "LOCK_REFRESH_SECS",
            reason: format!(
                "must be shorter than SESSION_LOCK_SECS ({}), or the lock could lapse between refreshes",
                policy.lock_secs
            ),
        });
    }
    Ok(policy)
}

/// Conversation tokens for pages (`CONVERSATION_TOKEN_SECRET`, its `_NEXT`, `CONVERSATION_TOKEN_SECS`);
/// none are issued or accepted while the secret is unset.
#[derive(Clone)]
pub struct TokenSettings {
    pub secret: Keys,
    pub lifetime_secs: i64,
    /// `CONVERSATION_MESSAGES_PER_MINUTE`: what one token's holder may send (and refresh) a minute.
    pub messages_per_minute: u32,
    /// `CONVERSATION_MINTS_PER_MINUTE`: tokens a page may mint a minute from one source address.
    pub mints_per_minute: u32,
    /// `IDENTITY_SECRET` (with `_NEXT`): what the site's backend signs its pages' identities with.
    pub identity_secret: Option<Keys>,
}

impl TokenSettings {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if env.optional("CONVERSATION_TOKEN_SECRET").is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            secret: env.caller_key("CONVERSATION_TOKEN_SECRET")?,
            lifetime_secs: env.positive("CONVERSATION_TOKEN_SECS", 86_400)?,
            messages_per_minute: env.positive("CONVERSATION_MESSAGES_PER_MINUTE", 60)?,
            mints_per_minute: env.positive("CONVERSATION_MINTS_PER_MINUTE", 30)?,
            identity_secret: match env.optional("IDENTITY_SECRET") {
                None => None,
                Some(_) => Some(env.caller_key("IDENTITY_SECRET")?),
            },
        }))
    }
}

/// The files of live conversations: where they are kept, and which are carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    /// `FILES_BUCKET`: the stack's bucket. Unset, a deployed function keeps no files (files are off);
    /// the local runner keeps them itself.
    pub bucket: Option<String>,
    /// `FILE_TYPES` (comma-separated types, or `none`) and `FILE_MAX_BYTES`.
    pub rules: FileRules,
}

impl FileSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let types = match env.optional("FILE_TYPES") {
            None => FileRules::default().types,
            Some(raw) if raw.trim().eq_ignore_ascii_case("none") => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    let well_formed = t.split_once('/').is_some_and(|(kind, sub)| {
                        let token = |s: &str| {
                            !s.is_empty()
                                && s.bytes().all(|b| {
                                    b.is_ascii_lowercase()
                                        || b.is_ascii_digit()
                                        || b"+-.".contains(&b)
                                })
                        };
                        token(kind) && token(sub)
                    });
                    well_formed
                        .then(|| t.to_owned())
                        .ok_or_else(|| ConfigError::Invalid {
                            name: "FILE_TYPES",
                            reason: format!(
                                "{t:?} is not a lower-case type like image/png (or say none)"
                            ),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let max_bytes = env.positive("FILE_MAX_BYTES", MAX_FILE_BYTES)?;
        if max_bytes > MAX_FILE_BYTES {
            return Err(ConfigError::Invalid {
                name: "FILE_MAX_BYTES",
                reason: format!(
                    "at most {MAX_FILE_BYTES} (what MSC can post to a function in Base64), got {max_bytes}"
                ),
            });
        }
        Ok(Self {
            bucket: env.optional("FILES_BUCKET").map(str::to_owned),
            rules: FileRules { types, max_bytes },
        })
    }
}

/// answer-ingest: `POST /v1/messages`.
#[derive(Clone)]
pub struct AnswerIngestConfig {
    pub sessions: SessionSettings,
    pub channel_webhook: Option<ChannelWebhookSettings>,
    pub caic: CaicSettings,
    pub presence: PresenceSettings,
    pub msc: MscApiSettings,
    pub default_channel: String,
    pub channel_key: Keys,
    pub tokens: Option<TokenSettings>,
    /// `ALLOWED_ORIGINS`: the pages (`scheme://host[:port]`) that may call the browser's routes (CORS).
    pub allowed_origins: Vec<String>,
    /// `TRANSCRIPT_TURNS`: how many of the channel's earlier turns the handover message shows.
    pub transcript_turns: usize,
    pub business_hours: BusinessHours,
    pub live_connections: Option<String>,
    pub files: FileSettings,
    pub agent_wait: AgentWaitSettings,
}

impl AnswerIngestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let sessions = SessionSettings::from_env(env, "dynamodb")?;
        let caic = CaicSettings::from_env(env)?;
        let msc = MscApiSettings::from_env(env)?;
        timeouts_nest(Some(&caic), &msc, &sessions.policy)?;
        Ok(Self {
            sessions,
            channel_webhook: ChannelWebhookSettings::from_env(env)?,
            caic,
            presence: PresenceSettings::from_env(env)?,
            msc,
            default_channel: env.string_or("MSC_DEFAULT_CHANNEL", DEFAULT_CHANNEL),
            channel_key: env.caller_key("CHANNEL_API_KEY")?,
            tokens: TokenSettings::from_env(env)?,
            allowed_origins: allowed_origins(env)?,
            business_hours: business_hours(env)?,
            live_connections: live_connections_url(env)?,
            files: FileSettings::from_env(env)?,
            agent_wait: AgentWaitSettings::from_env(env)?,
            transcript_turns: match env.optional("TRANSCRIPT_TURNS") {
                None => 10,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|turns| *turns <= 50)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "TRANSCRIPT_TURNS",
                        reason: format!("expected a whole number from 0 to 50, got {raw:?}"),
                    })?,
            },
        })
    }
}

/// `ALLOWED_ORIGINS`, comma-separated: each an origin alone (no path, query or user), as browsers send
/// it in `Origin`.
fn allowed_origins(env: &Env) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = env.optional("ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let parsed = url::Url::parse(origin).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.path() == "/"
                    && !origin.ends_with('/')
                    && url.query().is_none()
                    && url.username().is_empty()
            });
            parsed
                .map(|url| url.origin().ascii_serialization())
                .ok_or_else(|| ConfigError::Invalid {
                    name: "ALLOWED_ORIGINS",
                    reason: format!("{origin:?} is not an origin like https://shop.example"),
                })
        })
        .collect()
}

/// The timeouts must nest: MSC's within the claim's lease (or another caller takes over a handover whose
/// post is still running), and CAIC's above MSC's (CAIC waits for the end-slot webhook, which waits for
/// MSC, before it answers the last intake turn). Checked at start, naming both settings.
fn timeouts_nest(
    caic: Option<&CaicSettings>,
    msc: &MscApiSettings,
    policy: &LockPolicy,
) -> Result<(), ConfigError> {
    let lease = std::time::Duration::from_secs(u64::try_from(policy.claim_lease_secs).unwrap_or(0));
    // The handover's post may first wait for its slot of MSC's pace.
    if msc.timeout + crate::msc::HANDOVER_MAX_WAIT >= lease {
        return Err(ConfigError::Invalid {
            name: "MSC_TIMEOUT_MS",
            reason: format!(
                "plus the handover's wait for MSC's pace (3 s) must be below CLAIM_LEASE_SECS ({} s), got {} ms",
                policy.claim_lease_secs,
                msc.timeout.as_millis()
            ),
        });
    }
    if let Some(caic) = caic {
        if caic.timeout <= msc.timeout {
            return Err(ConfigError::Invalid {
                name: "CAIC_TIMEOUT_MS",
                reason: format!(
                    "must be above MSC_TIMEOUT_MS ({} ms), got {} ms",
                    msc.timeout.as_millis(),
                    caic.timeout.as_millis()
                ),
            });
        }
    }
    Ok(())
}

/// presence-check: `POST /v1/presence` (CAIC) and `GET /v1/presence` (widgets). Keeps no sessions.
#[derive(Clone)]
pub struct PresenceCheckConfig {
    pub presence: PresenceSettings,
    pub business_hours: BusinessHours,
    pub default_channel: String,
    pub channel_key: Keys,
    pub webhook_key: Keys,
    /// A page asks with its conversation token, when tokens are on.
    pub tokens: Option<TokenSettings>,
    pub allowed_origins: Vec<String>,
}

impl PresenceCheckConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            presence: PresenceSettings::from_env(env)?,
            business_hours: business_hours(env)?,
            default_channel: env.string_or("MSC_DEFAULT_CHANNEL", DEFAULT_CHANNEL),
            channel_key: env.caller_key("CHANNEL_API_KEY")?,
            webhook_key: env.caller_key("CAIC_WEBHOOK_SECRET")?,
            tokens: TokenSettings::from_env(env)?,
            allowed_origins: allowed_origins(env)?,
        })
    }
}

/// The two functions that run the handover itself: prechat-complete (CAIC's end-slot webhook, keyed
/// by `CAIC_WEBHOOK_SECRET`) and operator-handover (keyed by `OPERATOR_API_KEY`).
#[derive(Clone)]
pub struct HandoverConfig {
    pub sessions: SessionSettings,
    pub msc: MscApiSettings,
    pub channel_webhook: Option<ChannelWebhookSettings>,
    pub caller_key: Keys,
    pub live_connections: Option<String>,
    pub agent_wait: AgentWaitSettings,
}

impl HandoverConfig {
    pub fn prechat_complete_from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env(env, "CAIC_WEBHOOK_SECRET")
    }

    pub fn operator_handover_from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env(env, "OPERATOR_API_KEY")
    }

    fn from_env(env: &Env, caller_key: &'static str) -> Result<Self, ConfigError> {
        let sessions = SessionSettings::from_env(env, "dynamodb")?;
        let msc = MscApiSettings::from_env(env)?;
        timeouts_nest(None, &msc, &sessions.policy)?;
        Ok(Self {
            sessions,
            msc,
            channel_webhook: ChannelWebhookSettings::from_env(env)?,
            caller_key: env.caller_key(caller_key)?,
            live_connections: live_connections_url(env)?,
            agent_wait: AgentWaitSettings::from_env(env)?,
        })
    }
}

/// agent-events: MSC's agent-reply webhook (`POST /v1/msc/messages`) and its conversation events
/// (`POST /v1/msc/events`), both keyed by `MSC_WEBHOOK_SECRET`.
#[derive(Clone)]
pub struct AgentEventsConfig {
    pub sessions: SessionSettings,
    pub channel_webhook: Option<ChannelWebhookSettings>,
    pub webhook_key: Keys,
    /// `RELEASE_ON_ARCHIVE`: the agent closing the conversation hands it back to the bot at once;
    /// otherwise (the default, the seed's behaviour) it stays locked until 24 hours of inactivity.
    pub release_on_archive: bool,
    pub live_connections: Option<String>,
    pub files: FileSettings,
}

impl AgentEventsConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let release_on_archive = match env.string_or("RELEASE_ON_ARCHIVE", "false").as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ConfigError::Invalid {
                    name: "RELEASE_ON_ARCHIVE",
                    reason: format!("expected true or false, got {other:?}"),
                })
            }
        };
        Ok(Self {
            sessions: SessionSettings::from_env(env, "dynamodb")?,
            channel_webhook: ChannelWebhookSettings::from_env(env)?,
            webhook_key: env.caller_key("MSC_WEBHOOK_SECRET")?,
            release_on_archive,
            live_connections: live_connections_url(env)?,
            files: FileSettings::from_env(env)?,
        })
    }
}

/// agent-wait: the end of a wait for an agent (EventBridge Scheduler's invocation, or the local
/// runner's timer): tells the end user when nobody came, pushed as every message of the outbox is.
#[derive(Clone)]
pub struct AgentWaitConfig {
    pub sessions: SessionSettings,
    pub channel_webhook: Option<ChannelWebhookSettings>,
    pub live_connections: Option<String>,
    /// Outside business hours the message says when they open.
    pub business_hours: BusinessHours,
    pub default_channel: String,
}

impl AgentWaitConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env, "dynamodb")?,
            channel_webhook: ChannelWebhookSettings::from_env(env)?,
            live_connections: live_connections_url(env)?,
            business_hours: business_hours(env)?,
            default_channel: env.string_or("MSC_DEFAULT_CHANNEL", DEFAULT_CHANNEL),
        })
    }
}

/// msc-outbound: the drainer of the outbound queue, which delivers what it holds to MSC and tells the
/// page (the outbox, pushed as every message of it is).
#[derive(Clone)]
pub struct MscOutboundConfig {
    pub sessions: SessionSettings,
    pub msc: MscApiSettings,
    pub channel_webhook: Option<ChannelWebhookSettings>,
    pub live_connections: Option<String>,
    pub files: FileSettings,
}

impl MscOutboundConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env, "dynamodb")?,
            msc: MscApiSettings::from_env(env)?,
            channel_webhook: ChannelWebhookSettings::from_env(env)?,
            live_connections: live_connections_url(env)?,
            files: FileSettings::from_env(env)?,
        })
    }
}

/// `LIVE_CONNECTIONS_URL`: the WebSocket API stage's management endpoint
/// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`), where the functions that store
/// messages in the outbox push them to the pages' live connections. Unset: no live pushes (the local
/// runner pushes to its own sockets).
fn live_connections_url(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.optional("LIVE_CONNECTIONS_URL") {
        None => Ok(None),
        Some(_) => env.http_url("LIVE_CONNECTIONS_URL").map(Some),
    }
}

/// live-connection: the WebSocket API's `$connect` and `resume`. Needs conversation tokens (what a
/// page connects with) and the management endpoint (what it answers through).
#[derive(Clone)]
pub struct LiveConnectionConfig {
    pub sessions: SessionSettings,
    pub tokens: TokenSettings,
    pub live_connections: String,
    pub files: FileSettings,
}

impl LiveConnectionConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env, "dynamodb")?,
            tokens: TokenSettings::from_env(env)?.ok_or(ConfigError::Missing {
                name: "CONVERSATION_TOKEN_SECRET",
            })?,
            live_connections: env.http_url("LIVE_CONNECTIONS_URL")?,
            files: FileSettings::from_env(env)?,
        })
    }
}

/// The local runner (`handover-local`): every function on one port. Sessions default to the embedded
/// store; caller keys to the local ones.
#[derive(Clone)]
pub struct LocalConfig {
    pub answer_ingest: AnswerIngestConfig,
    pub presence_check: PresenceCheckConfig,
    pub prechat_complete: HandoverConfig,
    pub operator_handover: HandoverConfig,
    pub agent_events: AgentEventsConfig,
    pub agent_wait: AgentWaitConfig,
    pub msc_outbound: MscOutboundConfig,
}

impl LocalConfig {
    /// Where it listens unless `HANDOVER_LOCAL_ADDR` says otherwise.
    pub const DEFAULT_ADDR: &'static str = "127.0.0.1:3000";

    /// `env` as the local runner completed it (sandbox peers, local keys, the embedded store).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            answer_ingest: AnswerIngestConfig::from_env(env)?,
            presence_check: PresenceCheckConfig::from_env(env)?,
            prechat_complete: HandoverConfig::prechat_complete_from_env(env)?,
            operator_handover: HandoverConfig::operator_handover_from_env(env)?,
            agent_events: AgentEventsConfig::from_env(env)?,
            msc_outbound: MscOutboundConfig::from_env(env)?,
            agent_wait: AgentWaitConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_apply_when_unset_or_blank() {
        let env = Env::from_pairs([("SESSION_LOCK_SECS", "  ")]);
        assert_eq!(lock_policy(&env), Ok(LockPolicy::default()));
        assert_eq!(LockPolicy::default().lock_secs, 86_400);
    }

    #[test]
    fn timeouts_must_nest_and_the_error_names_both_settings() {
        let handover = |pairs: &[(&'static str, &'static str)]| {
            let mut env = Env::from_pairs([
                ("MSC_API_URL", "http://127.0.0.1:1/api"),
                ("MSC_API_KEY", "k"),
                ("MSC_API_SECRET", "s"),
                ("MSC_CHANNEL_ACCOUNT", "a"),
                ("CAIC_WEBHOOK_SECRET", "webhook-secret-0123456789"),
            ]);
            for (name, value) in pairs {
                env.set(name, *value);
            }
            HandoverConfig::prechat_complete_from_env(&env)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(handover(&[]), "", "the defaults nest");
        // The handover's post may wait 3 s for its slot of MSC's pace before MSC's timeout runs.
        let err = handover(&[("MSC_TIMEOUT_MS", "27000")]);
        assert!(
            err.starts_with("MSC_TIMEOUT_MS is invalid") && err.contains("CLAIM_LEASE_SECS"),
            "{err}"
        );
        assert_eq!(handover(&[("MSC_TIMEOUT_MS", "26999")]), "");
        let caic = CaicSettings {
            timeout: Duration::from_millis(4_000),
            ..CaicSettings::from_env(&Env::from_pairs([
                ("CAIC_BASE_URL", "http://127.0.0.1:1"),
                ("CAIC_CUSTOMER_KEY", "c"),
                ("CAIC_PROJECT_KEY", "p"),
                ("CAIC_API_KEY", "k"),
            ]))
            .unwrap()
        };
        let msc = MscApiSettings::from_env(&Env::from_pairs([
            ("MSC_API_URL", "http://127.0.0.1:1/api"),
            ("MSC_API_KEY", "k"),
            ("MSC_API_SECRET", "s"),
            ("MSC_CHANNEL_ACCOUNT", "a"),
        ]))
        .unwrap();
        let err = timeouts_nest(Some(&caic), &msc, &LockPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CAIC_TIMEOUT_MS is invalid") && err.contains("MSC_TIMEOUT_MS"),
            "{err}"
        );
    }

    #[test]
    fn policy_reads_every_variable() {
        let env = Env::from_pairs([
            ("SESSION_LOCK_SECS", "3600"),
            ("LOCK_REFRESH_SECS", "60"),
            ("CLAIM_LEASE_SECS", "20"),
            ("PRECHAT_WINDOW_SECS", "600"),
        ]);
        assert_eq!(
            lock_policy(&env),
            Ok(LockPolicy {
                lock_secs: 3600,
                slide_interval_secs: 60,
                claim_lease_secs: 20,
                prechat_window_secs: 600,
            })
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for bad in ["abc", "0", "-5", "1.5"] {
            let env = Env::from_pairs([("SESSION_LOCK_SECS", bad)]);
            let err = lock_policy(&env).unwrap_err();
            assert!(
                err.to_string().starts_with("SESSION_LOCK_SECS is invalid"),
                "{err}"
            );
        }
        let env = Env::from_pairs([("SESSION_LOCK_SECS", "100"), ("LOCK_REFRESH_SECS", "100")]);
        let err = lock_policy(&env).unwrap_err();
        assert!(err.to_string().contains("LOCK_REFRESH_SECS"), "{err}");
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let env = Env::from_pairs([
            ("GOOD", "https://caic.example/api/"),
            ("BAD", "caic.example"),
            ("EMPTY_HOST", "http:///x"),
        ]);
        assert_eq!(
            env.http_url("GOOD").as_deref(),
            Ok("https://caic.example/api")
        );
        assert!(matches!(
            env.http_url("BAD"),
            Err(ConfigError::Invalid { name: "BAD", .. })
        ));
        assert!(env.http_url("EMPTY_HOST").is_err());
        assert_eq!(
            env.http_url("MISSING"),
            Err(ConfigError::Missing { name: "MISSING" })
        );
    }

    #[test]
    fn required_values_are_reported_missing_by_name() {
        let env = Env::from_pairs([("CAIC_BASE_URL", "")]);
        assert_eq!(
            env.required("CAIC_BASE_URL"),
            Err(ConfigError::Missing {
                name: "CAIC_BASE_URL"
            })
        );
    }

    #[test]
    fn the_store_is_named_by_handover_store() {
        let memory = Env::from_pairs([("HANDOVER_STORE", "memory")]);
        assert_eq!(
            SessionSettings::from_env(&memory, "dynamodb").map(|s| s.store),
            Ok(StoreSettings::Memory)
        );
        let table = Env::from_pairs([("HANDOVER_TABLE", "t")]);
        assert_eq!(
            SessionSettings::from_env(&table, "dynamodb").map(|s| s.store),
            Ok(StoreSettings::DynamoDb { table: "t".into() })
        );
        let other = Env::from_pairs([("HANDOVER_STORE", "redis")]);
        assert!(SessionSettings::from_env(&other, "dynamodb").is_err());
    }

    #[test]
    fn the_wait_for_an_agent_is_on_by_default_and_zero_turns_it_off() {
        let wait = |pairs: &[(&'static str, &'static str)]| {
            AgentWaitSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        let default = wait(&[]).unwrap();
        assert_eq!((default.wait_secs, default.asks), (Some(180), 3));
        assert_eq!(default.scheduler, None);
        assert_eq!(wait(&[("AGENT_WAIT_SECS", "0")]).unwrap().wait_secs, None);
        for (name, bad) in [
            ("AGENT_WAIT_SECS", "-1"),
            ("AGENT_WAIT_SECS", "86401"),
            ("AGENT_WAIT_SECS", "soon"),
            ("AGENT_WAIT_ASKS", "0"),
            ("AGENT_WAIT_ASKS", "21"),
        ] {
            let refused = wait(&[(name, bad)]).unwrap_err().to_string();
            assert!(refused.starts_with(name), "{refused}");
        }
        let missing = wait(&[("AGENT_WAIT_SCHEDULE_GROUP", "g")]).unwrap_err();
        assert_eq!(
            missing,
            ConfigError::Missing {
                name: "AGENT_WAIT_FUNCTION_ARN"
            }
        );
    }

    #[test]
    fn allowed_origins_are_origins_alone() {
        let origins =
            |raw: &'static str| allowed_origins(&Env::from_pairs([("ALLOWED_ORIGINS", raw)]));
        assert_eq!(
            origins(" https://shop.example, http://localhost:8080 ,"),
            Ok(vec![
                "https://shop.example".to_owned(),
                "http://localhost:8080".to_owned()
            ])
        );
        assert_eq!(origins(""), Ok(Vec::new()));
        for bad in [
            "https://shop.example/",
            "https://shop.example/chat",
            "shop.example",
            "ftp://shop.example",
            "https://user@shop.example",
            "https://shop.example?x=1",
            "*",
        ] {
            let refused = origins(bad);
            assert!(
                matches!(
                    &refused,
                    Err(ConfigError::Invalid {
                        name: "ALLOWED_ORIGINS",
                        ..
                    })
                ),
                "{bad}: {refused:?}"
            );
        }
    }
}
