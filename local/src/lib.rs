//! The local runner: every function's router, as the Lambda binaries build them, merged and served on
//! one port, with a sandbox CAIC and MSC when no CAIC is configured.

pub mod live;
pub mod sandbox;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{from_fn, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use handover_core::clock::{Clock, SystemClock};
use handover_core::config::{Env, LocalConfig};
use handover_core::http as routes;
use handover_core::startup::{self, StartupError};
use handover_core::SessionStore;
use tokio::net::TcpListener;

/// Caller keys used when none are configured: the local runner is for one developer's machine.
pub const LOCAL_CHANNEL_KEY: &str = "local-channel-key";
pub const LOCAL_WEBHOOK_SECRET: &str = "local-webhook-secret";
pub const LOCAL_OPERATOR_KEY: &str = "local-operator-key";
pub const LOCAL_MSC_WEBHOOK_SECRET: &str = "local-msc-webhook-secret";
pub const LOCAL_CONVERSATION_TOKEN_SECRET: &str = "local-conversation-token-secret";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot listen: {0}")]
    Listener(#[from] std::io::Error),
    #[error(transparent)]
    Startup(#[from] StartupError),
}

pub struct Running {
    pub addr: SocketAddr,
    pub sandbox: bool,
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds everything from `env` (sandbox CAIC and MSC when `CAIC_BASE_URL` is unset; embedded store
/// unless `HANDOVER_STORE=dynamodb`) and serves on `listener` in a background task.
pub async fn start(listener: TcpListener, env: Env) -> Result<Running, LocalError> {
    start_with(listener, env, None).await
}

/// Like [`start`], with the session store given rather than chosen from `env` (tests bring their own).
pub async fn start_with(
    listener: TcpListener,
    mut env: Env,
    store: Option<Arc<dyn SessionStore>>,
) -> Result<Running, LocalError> {
    let addr = listener.local_addr()?;
    let use_sandbox = env.optional("CAIC_BASE_URL").is_none();
    if use_sandbox {
        sandbox::configure(&mut env, addr);
    }
    env.set_default("CHANNEL_API_KEY", LOCAL_CHANNEL_KEY);
    env.set_default("CAIC_WEBHOOK_SECRET", LOCAL_WEBHOOK_SECRET);
    env.set_default("OPERATOR_API_KEY", LOCAL_OPERATOR_KEY);
    env.set_default("MSC_WEBHOOK_SECRET", LOCAL_MSC_WEBHOOK_SECRET);
    env.set_default("CONVERSATION_TOKEN_SECRET", LOCAL_CONVERSATION_TOKEN_SECRET);
    env.set_default("HANDOVER_STORE", "memory");
    // The widget on the runner's own pages mints its conversation token as a site's page does.
    env.set_default(
        "ALLOWED_ORIGINS",
        format!("http://{addr},http://localhost:{}", addr.port()),
    );
    // Locally the way back is worth seeing: an agent closing the conversation hands it to the bot.
    env.set_default("RELEASE_ON_ARCHIVE", "true");
    // And so is nobody coming: the end user is asked after half a minute without an agent.
    env.set_default("AGENT_WAIT_SECS", "30");
    let config = LocalConfig::from_env(&env).map_err(StartupError::from)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Its own client rather than the process's: `start` may run on any of a caller's runtimes.
    let client =
        handover_core::clients::new_http_client(handover_core::config::ca_bundle(&env).as_deref())
            .map_err(StartupError::from)?;
    // The functions' peers are called with the very clients a deployment uses (no redirects followed);
    // the pages' live connections are the runner's own sockets.
    let sockets = Arc::new(handover_core::live::InProcess::default());
    let mut peers =
        handover_core::clients::PeerClients::deployed(&env).map_err(StartupError::from)?;
    peers.live = Some(sockets.clone());
    // The conversations' files stay in the runner's memory, behind links it serves itself, unless
    // FILES_BUCKET names a bucket (then S3's presigned links, as deployed).
    let local_files = match config.answer_ingest.files.bucket.as_deref() {
        Some(bucket) => {
            peers = peers
                .with_files(Some(bucket))
                .await
                .map_err(StartupError::from)?;
            None
        }
        None => {
            let files = Arc::new(handover_core::files::local::LocalFiles::new(
                &format!("http://{addr}"),
                clock.clone(),
            ));
            peers.files = Some(files.clone());
            Some(files)
        }
    };
    let store = match store {
        Some(store) => store,
        None => startup::session_store(&config.answer_ingest.sessions, clock.clone(), true).await?,
    };
    // The waits for an agent run out on the runner's own timers, into agent-wait's very check.
    let (timers, waits) = handover_core::waits::LocalTimers::new();
    peers.timers = Some(Arc::new(timers));
    tokio::spawn(run_waits(
        waits,
        startup::agent_wait_deps(
            &config.agent_wait,
            store.clone(),
            clock.clone(),
            peers.clone(),
        ),
    ));
    // What is held for MSC waits in the runner's memory and is drained, at MSC's pace, by msc-outbound's
    // very delivery; with MSC_OUTBOUND_QUEUE_URL, in that SQS queue, polled as Lambda's poller does.
    match config.msc_outbound.msc.outbound_queue.as_deref() {
        Some(url) => {
            let sdk = handover_core::clients::sdk_config()
                .await
                .map_err(StartupError::from)?;
            let queue = Arc::new(handover_core::outbound::SqsOutbound::new(&sdk, url));
            peers.outbound = Some(queue.clone());
            let deps = startup::msc_outbound_deps(
                &config.msc_outbound,
                store.clone(),
                clock.clone(),
                peers.clone(),
            );
            tokio::spawn(poll_outbound(deps, queue));
        }
        None => {
            let (outbound, held) = handover_core::outbound::LocalOutbound::new();
            peers.outbound = Some(Arc::new(outbound));
            let deps = startup::msc_outbound_deps(
                &config.msc_outbound,
                store.clone(),
                clock.clone(),
                peers.clone(),
            );
            tokio::spawn(handover_core::flow::outbound::drain_local(
                Arc::new(deps),
                held,
            ));
        }
    }
    let mut app = Router::new()
        .merge(startup::answer_ingest_routes(
            &config.answer_ingest,
            store.clone(),
            clock.clone(),
            peers.clone(),
        ))
        .merge(startup::presence_check_routes(
            &config.presence_check,
            clock.clone(),
            peers.clone(),
        ))
        .merge(startup::handover_routes(
            &config.prechat_complete,
            store.clone(),
            clock.clone(),
            peers.clone(),
            routes::prechat_complete,
        ))
        .merge(startup::handover_routes(
            &config.operator_handover,
            store.clone(),
            clock.clone(),
            peers.clone(),
            routes::operator_handover,
        ));
    app = app.merge(startup::agent_events_routes(
        &config.agent_events,
        store.clone(),
        clock.clone(),
        peers.clone(),
    ));
    if let Some(tokens) = &config.answer_ingest.tokens {
        let live = live::LocalLive {
            deps: handover_core::flow::live::LiveDeps {
                store,
                post: sockets.clone(),
                tokens: handover_core::token::TokenKeys::from(tokens),
                clock,
                files: handover_core::files::Files::new(
                    peers.files.clone(),
                    &config.answer_ingest.files.rules,
                )
                .store,
            },
            sockets,
        };
        app = app.route("/v1/live", get(live::upgrade).with_state(live));
    }
    if let Some(files) = local_files {
        app = app.merge(
            handover_core::files::local::routes(files)
                .layer(files_cors(&config.answer_ingest.allowed_origins)),
        );
    }
    app = app.route("/widget.js", get(widget));
    if use_sandbox {
        app = app
            .nest("/sandbox", sandbox::routes(&env, addr, client))
            .route("/", get(playground(&config)))
            .route("/site", get(site));
    }
    let app = routes::serve(app)
        .layer(from_fn(run_to_completion))
        .layer(from_fn(peer_address));
    let task = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "local server stopped");
        }
    });
    Ok(Running {
        addr,
        sandbox: use_sandbox,
        task,
    })
}

/// The local stand-in for Lambda's SQS poller: a batch at a time, a pause when the queue is empty.
async fn poll_outbound(
    deps: handover_core::flow::outbound::DrainDeps,
    queue: Arc<handover_core::outbound::SqsOutbound>,
) {
    loop {
        match handover_core::flow::outbound::poll_sqs_once(&deps, &queue, None).await {
            Ok(0) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "the outbound queue could not be polled");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The local stand-in for EventBridge Scheduler: each wait sleeps until its time on a task of its
/// own, then runs as agent-wait runs it.
async fn run_waits(
    mut waits: tokio::sync::mpsc::UnboundedReceiver<handover_core::waits::AgentWait>,
    deps: handover_core::flow::waiting::WaitDeps,
) {
    let deps = Arc::new(deps);
    while let Some(wait) = waits.recv().await {
        let deps = deps.clone();
        tokio::spawn(async move {
            let secs = u64::try_from(wait.at.saturating_sub(deps.clock.now())).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            let event = serde_json::to_value(&wait).unwrap_or_default();
            let request_id = uuid::Uuid::new_v4().to_string();
            if let Err(err) =
                handover_core::flow::waiting::on_event(&deps, &request_id, event).await
            {
                tracing::error!(error = %err, "a wait for an agent could not be checked");
            }
        });
    }
}

/// The playground page: both sides of a handover on one page: the end user is the widget on the site
/// page in a frame; the agent's side and the session view talk to the sandbox and the operator route
/// (the local operator key written into it; the page is served by the local runner only).
fn playground(config: &LocalConfig) -> Html<String> {
    Html(include_str!("playground.html").replace(
        "{{OPERATOR_KEY}}",
        &config.operator_handover.caller_key.current,
    ))
}

/// The chat widget a site loads (`widget/widget.js`, as it is shipped).
async fn widget() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../widget/widget.js"),
    )
        .into_response()
}

/// A site's page with the widget's one script tag, under the strict Content Security Policy the
/// README states: scripts from the page's own origin only, no inline script or style, requests to the
/// service only.
async fn site() -> Response {
    let csp = "default-src 'none'; script-src 'self'; connect-src 'self' ws: wss:; \
               img-src 'self'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";
    (
        [(axum::http::header::CONTENT_SECURITY_POLICY, csp)],
        Html(include_str!("site.html")),
    )
        .into_response()
}

/// A page on one of the runner's names uploads to the links of the other (`localhost` and
/// `127.0.0.1`), as a deployed page uploads to the bucket's origin: the bucket's CORS rule, here.
fn files_cors(allowed_origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::PUT])
        .allow_headers([header::CONTENT_TYPE])
}

/// The connection's peer, where API Gateway's `sourceIp` would be: what a page's quotas count.
async fn peer_address(mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request
            .extensions_mut()
            .insert(routes::PeerAddress(peer.ip()));
    }
    next.run(request).await
}

/// Like a Lambda invocation, a request runs to its end even if the caller hangs up: the server drops
/// a connection's future when the client goes away, which would cut a handover between its claim and
/// its completion and leave the session claimed until the lease runs out.
async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "request handler failed");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!(
                    {"error": {"code": "internal", "message": "the request failed"}}
                )),
            )
                .into_response()
        }
    }
}
