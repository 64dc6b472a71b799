//! Each function's cold start, and the routers it serves: configuration (with the deployment's
//! secret), the clock, the session store and the one HTTP client, assembled once. The Lambda mains
//! call one `start_*`; the local runner and the tests assemble the same routers from their own
//! configuration with the `*_routes` functions.

use std::future::Future;
use std::sync::Arc;

use axum::Router;

use crate::caic::CaicHttp;
use crate::channel::{ChannelPush, ChannelWebhook, NoChannelWebhook};
use crate::clients::{self, HttpClientError, Peer, PeerClients};
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AgentEventsConfig, AgentWaitConfig, AgentWaitSettings, AnswerIngestConfig,
    ChannelWebhookSettings, ConfigError, Env, HandoverConfig, LiveConnectionConfig, PeerUrls,
    PresenceCheckConfig, SessionSettings, StoreSettings,
};
use crate::files::Files;
use crate::flow::agent::AgentDeps;
use crate::flow::live::LiveDeps;
use crate::flow::waiting::WaitDeps;
use crate::flow::IngestDeps;
use crate::http::{self, CallerKey, HandoverDeps, PresenceDeps};
use crate::live::{LivePush, Pushes};
use crate::msc::{MscHttp, PresenceHttp};
use crate::secrets::SecretError;
use crate::store::dynamodb::{ensure_table, DynamoDbStore};
use crate::store::memory::MemoryStore;
use crate::store::{LiveStore, SessionStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    HttpClient(#[from] HttpClientError),
    #[error("session store: {0}")]
    Store(#[from] StoreError),
}

/// The session store the settings name. `create_table`: make the DynamoDB table if it is missing
/// (local runs; deployed tables come from the SAM template).
pub async fn session_store(
    settings: &SessionSettings,
    clock: Arc<dyn Clock>,
    create_table: bool,
) -> Result<Arc<dyn SessionStore>, StartupError> {
    match &settings.store {
        StoreSettings::Memory => Ok(Arc::new(MemoryStore::new(clock, settings.policy))),
        StoreSettings::DynamoDb { table } => {
            let client = aws_sdk_dynamodb::Client::new(&clients::sdk_config().await?);
            if create_table {
                ensure_table(&client, table).await?;
            }
            Ok(Arc::new(DynamoDbStore::new(
                client,
                table.clone(),
                clock,
                settings.policy,
            )))
        }
    }
}

/// Where the messages of the outbox are pushed: the channel's webhook when one is configured, and the
/// pages' live connections when the function has them.
fn channel_push(
    settings: &Option<ChannelWebhookSettings>,
    clients: &PeerClients,
    store: &Arc<dyn SessionStore>,
    clock: &Arc<dyn Clock>,
    files: &Files,
) -> Arc<dyn ChannelPush> {
    let webhook: Option<Arc<dyn ChannelPush>> = settings.as_ref().map(|settings| {
        Arc::new(ChannelWebhook::new(
            clients.channel.clone(),
            settings.clone(),
            clock.clone(),
            files.store.clone(),
        )) as Arc<dyn ChannelPush>
    });
    let live: Option<Arc<dyn ChannelPush>> = clients.live.as_ref().map(|post| {
        let store: Arc<dyn LiveStore> = store.clone();
        Arc::new(LivePush {
            store,
            post: post.clone(),
            files: files.store.clone(),
        }) as Arc<dyn ChannelPush>
    });
    match (webhook, live) {
        (Some(webhook), Some(live)) => Arc::new(Pushes(vec![webhook, live])),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => Arc::new(NoChannelWebhook),
    }
}

/// MSC's Custom Channel API, paced across every instance by the sessions table (see
/// [`crate::msc::PacedMsc`]); a post waits at most `max_wait` for its turn.
fn paced_msc(
    clients: &PeerClients,
    settings: &crate::config::MscApiSettings,
    store: &Arc<dyn SessionStore>,
    max_wait: std::time::Duration,
) -> Arc<dyn crate::msc::MscMessages> {
    let budget: Arc<dyn crate::store::PaceStore> = store.clone();
    Arc::new(crate::msc::PacedMsc::new(
        Arc::new(MscHttp::new(clients.msc.clone(), settings.clone())),
        budget,
        crate::msc::Pace::per_second(settings.requests_per_second),
        max_wait,
    ))
}

/// Where the function holds messages for MSC.
fn outbound(clients: &PeerClients) -> Arc<dyn crate::outbound::Outbound> {
    clients
        .outbound
        .clone()
        .unwrap_or_else(|| Arc::new(crate::outbound::NoOutbound))
}

/// The wait for an agent as the settings ask and the clients can time it: off without timers.
fn waits(settings: &AgentWaitSettings, clients: &PeerClients) -> crate::waits::Waits {
    match (settings.wait_secs, &clients.timers) {
        (Some(wait_secs), Some(timers)) => crate::waits::Waits {
            timers: Some((timers.clone(), wait_secs)),
            asks: settings.asks,
        },
        _ => crate::waits::Waits::off(),
    }
}

pub fn answer_ingest_routes(
    config: &AnswerIngestConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
) -> Router {
    let clients = clients.into();
    let files = Files::new(clients.files.clone(), &config.files.rules);
    let deps = IngestDeps {
        waits: waits(&config.agent_wait, &clients),
        channel: channel_push(&config.channel_webhook, &clients, &store, &clock, &files),
        files,
        caic: Arc::new(CaicHttp::new(clients.caic.clone(), config.caic.clone())),
        presence: Arc::new(PresenceHttp::new(
            clients.presence.clone(),
            config.presence.clone(),
            clock.clone(),
        )),
        msc: paced_msc(&clients, &config.msc, &store, crate::msc::HANDOVER_MAX_WAIT),
        outbound: outbound(&clients),
        store,
        clock,
        default_channel: config.default_channel.clone(),
        default_culture: config.caic.culture.clone(),
        transcript_turns: config.transcript_turns,
        hours: Arc::new(config.business_hours.clone()),
    };
    let tokens = config.tokens.as_ref().map(crate::token::PageTokens::from);
    http::answer_ingest(
        deps,
        CallerKey::from(&config.channel_key),
        tokens,
        &config.allowed_origins,
    )
}

pub fn presence_check_routes(
    config: &PresenceCheckConfig,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
) -> Router {
    let deps = PresenceDeps {
        presence: Arc::new(PresenceHttp::new(
            clients.into().presence,
            config.presence.clone(),
            clock.clone(),
        )),
        hours: Arc::new(config.business_hours.clone()),
        clock,
        default_channel: config.default_channel.clone(),
    };
    http::presence_check(
        deps,
        CallerKey::from(&config.channel_key),
        CallerKey::from(&config.webhook_key),
        config.tokens.as_ref().map(crate::token::TokenKeys::from),
        &config.allowed_origins,
    )
}

/// The routes of prechat-complete or operator-handover: `router` is [`http::prechat_complete`] or
/// [`http::operator_handover`].
pub fn handover_routes(
    config: &HandoverConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
    router: HandoverRouter,
) -> Router {
    let clients = clients.into();
    // The operator's and the intake's messages carry no files.
    let deps = Arc::new(HandoverDeps {
        channel: channel_push(
            &config.channel_webhook,
            &clients,
            &store,
            &clock,
            &Files::off(),
        ),
        waits: waits(&config.agent_wait, &clients),
        msc: paced_msc(&clients, &config.msc, &store, crate::msc::HANDOVER_MAX_WAIT),
        outbound: outbound(&clients),
        store,
        clock,
    });
    router(deps, CallerKey::from(&config.caller_key))
}

pub type HandoverRouter = fn(Arc<HandoverDeps>, CallerKey) -> Router;

pub fn agent_events_routes(
    config: &AgentEventsConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
) -> Router {
    let clients = clients.into();
    let files = Files::new(clients.files.clone(), &config.files.rules);
    let deps = AgentDeps {
        channel: channel_push(&config.channel_webhook, &clients, &store, &clock, &files),
        files,
        store,
        clock,
        release_on_archive: config.release_on_archive,
    };
    http::agent_events(deps, CallerKey::from(&config.webhook_key))
}

/// What agent-wait (and the local runner's timers) check a wait with.
pub fn agent_wait_deps(
    config: &AgentWaitConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
) -> WaitDeps {
    let clients = clients.into();
    WaitDeps {
        // The message that nobody came carries no files.
        channel: channel_push(
            &config.channel_webhook,
            &clients,
            &store,
            &clock,
            &Files::off(),
        ),
        store,
        clock,
        hours: Arc::new(config.business_hours.clone()),
        default_channel: config.default_channel.clone(),
    }
}

/// The longest a queued message waits for its slot of MSC's pace (or MSC's `Retry-After`) within one
/// delivery before it is given back to the queue.
pub const DRAIN_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What msc-outbound (and the local runner's drain) delivers held messages with.
pub fn msc_outbound_deps(
    config: &crate::config::MscOutboundConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    clients: impl Into<PeerClients>,
) -> crate::flow::outbound::DrainDeps {
    let clients = clients.into();
    let files = Files::new(clients.files.clone(), &config.files.rules);
    let per_message = config.msc.timeout + DRAIN_MAX_WAIT + std::time::Duration::from_secs(1);
    crate::flow::outbound::DrainDeps {
        msc: paced_msc(&clients, &config.msc, &store, DRAIN_MAX_WAIT),
        // The receipts are pushed as every message of the outbox is; they carry no files.
        channel: channel_push(
            &config.channel_webhook,
            &clients,
            &store,
            &clock,
            &Files::off(),
        ),
        outbound: outbound(&clients),
        files,
        store,
        per_message_ms: i64::try_from(per_message.as_millis()).unwrap_or(i64::MAX),
    }
}

/// live-connection's routes: the WebSocket API's `$connect` and the page's frames, answered through
/// `clients.live` (the management API; a deployment without it cannot answer).
pub fn live_connection_routes(
    config: &LiveConnectionConfig,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    post: Arc<dyn crate::live::ConnectionPost>,
    files: Option<Arc<dyn crate::files::FileStore>>,
) -> Router {
    http::live_connection(LiveDeps {
        store,
        post,
        tokens: crate::token::TokenKeys::from(&config.tokens),
        clock,
        files: Files::new(files, &config.files.rules).store,
    })
}

/// A function's cold start: the connections to `peers` opening (see [`crate::open_ahead`]) while the
/// deployment's secret is fetched and laid over the process environment (see [`crate::secrets`]), then
/// `build` with the peers' clients; logs why when it fails.
async fn start<Build, Routes>(peers: &[Peer], build: Build) -> Result<Router, StartupError>
where
    Build: FnOnce(Env, PeerClients) -> Routes,
    Routes: Future<Output = Result<Router, StartupError>>,
{
    Ok(http::serve(start_with(peers, build).await?))
}

/// [`start`], for whatever the function serves (a router, or agent-wait's dependencies).
async fn start_with<Build, Built, T>(peers: &[Peer], build: Build) -> Result<T, StartupError>
where
    Build: FnOnce(Env, PeerClients) -> Built,
    Built: Future<Output = Result<T, StartupError>>,
{
    let started = async {
        let mut env = Env::from_process();
        let clients = PeerClients::deployed(&env)?;
        clients.open_ahead(&PeerUrls::from_env(&env), peers);
        crate::secrets::overlay_from_env(&mut env).await?;
        build(env, clients).await
    };
    started
        .await
        .inspect_err(|err| tracing::error!(error = %err, "cannot start"))
}

/// A deployed function that hands over starts its waits on EventBridge Scheduler; a wait that is on
/// without a schedule group to time it is a mistake in the deployment, named at cold start.
async fn with_wait_timers(
    clients: PeerClients,
    settings: &AgentWaitSettings,
) -> Result<PeerClients, StartupError> {
    if settings.wait_secs.is_some() && settings.scheduler.is_none() {
        return Err(ConfigError::Invalid {
            name: "AGENT_WAIT_SCHEDULE_GROUP",
            reason: "required while AGENT_WAIT_SECS is above 0 (0 turns the wait off)".into(),
        }
        .into());
    }
    Ok(clients
        .with_wait_timers(settings.scheduler.as_ref())
        .await?)
}

/// A deployed function that holds messages for MSC needs the queue; without it, it does not start.
async fn with_outbound(
    clients: PeerClients,
    settings: &crate::config::MscApiSettings,
) -> Result<PeerClients, StartupError> {
    let Some(url) = settings.outbound_queue.as_deref() else {
        return Err(ConfigError::Missing {
            name: "MSC_OUTBOUND_QUEUE_URL",
        }
        .into());
    };
    Ok(clients.with_outbound(Some(url)).await?)
}

/// The deployed sessions: the system clock and the DynamoDB table (created by the template).
async fn deployed_sessions(
    settings: &SessionSettings,
) -> Result<(Arc<dyn SessionStore>, Arc<dyn Clock>), StartupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok((session_store(settings, clock.clone(), false).await?, clock))
}

pub async fn start_answer_ingest() -> Result<Router, StartupError> {
    // A first turn asks CAIC (a bot or livechat turn), MSC (a relayed turn) or both, and a livechat
    // turn asks MSC's presence.
    start(
        &[Peer::Caic, Peer::Msc, Peer::Presence],
        |env, clients| async move {
            let config = AnswerIngestConfig::from_env(&env)?;
            let (store, clock) = deployed_sessions(&config.sessions).await?;
            let clients = clients
                .with_live_connections(config.live_connections.as_deref())
                .await?
                .with_files(config.files.bucket.as_deref())
                .await?;
            let clients = with_wait_timers(clients, &config.agent_wait).await?;
            let clients = with_outbound(clients, &config.msc).await?;
            Ok(answer_ingest_routes(&config, store, clock, clients))
        },
    )
    .await
}

pub async fn start_agent_events() -> Result<Router, StartupError> {
    // Every agent reply is pushed to the channel's webhook and to the page's live connections.
    start(&[Peer::Channel, Peer::Live], |env, clients| async move {
        let config = AgentEventsConfig::from_env(&env)?;
        let (store, clock) = deployed_sessions(&config.sessions).await?;
        let clients = clients
            .with_live_connections(config.live_connections.as_deref())
            .await?
            .with_files(config.files.bucket.as_deref())
            .await?;
        Ok(agent_events_routes(&config, store, clock, clients))
    })
    .await
}

pub async fn start_live_connection() -> Result<Router, StartupError> {
    start(&[Peer::Live], |env, clients| async move {
        let config = LiveConnectionConfig::from_env(&env)?;
        let (store, clock) = deployed_sessions(&config.sessions).await?;
        let post = Arc::new(crate::live::ManagementApi::new(
            &clients::sdk_config().await?,
            clients.management.clone(),
            &config.live_connections,
        ));
        let files = clients
            .with_files(config.files.bucket.as_deref())
            .await?
            .files;
        Ok(live_connection_routes(&config, store, clock, post, files))
    })
    .await
}

pub async fn start_presence_check() -> Result<Router, StartupError> {
    start(&[Peer::Presence], |env, clients| async move {
        let config = PresenceCheckConfig::from_env(&env)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(presence_check_routes(&config, clock, clients))
    })
    .await
}

pub async fn start_prechat_complete() -> Result<Router, StartupError> {
    start_handover(
        HandoverConfig::prechat_complete_from_env,
        http::prechat_complete,
    )
    .await
}

pub async fn start_operator_handover() -> Result<Router, StartupError> {
    start_handover(
        HandoverConfig::operator_handover_from_env,
        http::operator_handover,
    )
    .await
}

async fn start_handover(
    read: fn(&Env) -> Result<HandoverConfig, ConfigError>,
    router: HandoverRouter,
) -> Result<Router, StartupError> {
    start(&[Peer::Msc], |env, clients| async move {
        let config = read(&env)?;
        let (store, clock) = deployed_sessions(&config.sessions).await?;
        let clients = clients
            .with_live_connections(config.live_connections.as_deref())
            .await?;
        let clients = with_wait_timers(clients, &config.agent_wait).await?;
        let clients = with_outbound(clients, &config.msc).await?;
        Ok(handover_routes(&config, store, clock, clients, router))
    })
    .await
}

/// agent-wait's cold start: what a wait's end is checked with.
pub async fn start_agent_wait() -> Result<WaitDeps, StartupError> {
    // Telling the end user is pushed to the channel's webhook and the page's live connections.
    start_with(&[Peer::Channel, Peer::Live], |env, clients| async move {
        let config = AgentWaitConfig::from_env(&env)?;
        let (store, clock) = deployed_sessions(&config.sessions).await?;
        let clients = clients
            .with_live_connections(config.live_connections.as_deref())
            .await?;
        Ok(agent_wait_deps(&config, store, clock, clients))
    })
    .await
}

/// msc-outbound's cold start: what held messages are delivered with.
pub async fn start_msc_outbound() -> Result<crate::flow::outbound::DrainDeps, StartupError> {
    // Every delivery posts to MSC, and its receipt is pushed to the channel and the live connections.
    start_with(
        &[Peer::Msc, Peer::Channel, Peer::Live],
        |env, clients| async move {
            let config = crate::config::MscOutboundConfig::from_env(&env)?;
            let (store, clock) = deployed_sessions(&config.sessions).await?;
            let clients = clients
                .with_live_connections(config.live_connections.as_deref())
                .await?
                .with_files(config.files.bucket.as_deref())
                .await?;
            let clients = with_outbound(clients, &config.msc).await?;
            Ok(msc_outbound_deps(&config, store, clock, clients))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deployed function that holds messages for MSC does not start without the queue, and says
    /// which setting is missing; with it, it has its outbound queue.
    #[tokio::test]
    async fn a_deployed_function_that_holds_messages_needs_the_queue() {
        clients::install_crypto_provider();
        let client = clients::new_http_client(None).expect("a client");
        let env = |queue: Option<&str>| {
            let mut pairs = vec![
                ("MSC_API_URL", "https://msc.example/api"),
                ("MSC_API_KEY", "k"),
                ("MSC_API_SECRET", "s"),
                ("MSC_CHANNEL_ACCOUNT", "a"),
                ("AWS_REGION", "eu-west-1"),
            ];
            pairs.extend(queue.map(|url| ("MSC_OUTBOUND_QUEUE_URL", url)));
            Env::from_pairs(pairs)
        };
        let without = crate::config::MscOutboundConfig::from_env(&env(None)).map(|c| c.msc);
        let Ok(settings) = without else {
            panic!("the MSC settings read")
        };
        let refused = with_outbound(PeerClients::from(&client), &settings).await;
        assert!(
            refused
                .err()
                .is_some_and(|err| err.to_string().contains("MSC_OUTBOUND_QUEUE_URL")),
            "names the setting"
        );
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/handover-outbound.fifo";
        let with = crate::config::MscOutboundConfig::from_env(&env(Some(queue))).map(|c| c.msc);
        let Ok(settings) = with else {
            panic!("the MSC settings read")
        };
        assert_eq!(settings.outbound_queue.as_deref(), Some(queue));
        assert_eq!(
            settings.requests_per_second, 3,
            "MSC's own limit by default"
        );
    }
}
