//! The HTTP edge: one axum router per function. A Lambda function serves its router through
//! `lambda_http::run`; the local runner serves all of them on one port. Caller keys, the body limit, the
//! request span and the JSON errors for unknown routes and methods are layers, written once here.

mod agent;
mod auth;
mod error;
mod handover;
mod live;
mod messages;
mod presence;
mod request;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;

pub use auth::CallerKey;
pub use error::ApiError;
pub use handover::HandoverDeps;
pub use presence::PresenceDeps;
pub use request::PeerAddress;

use crate::flow::agent::AgentDeps;
use crate::flow::IngestDeps;
use crate::metrics;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// MSC's agent replies, files included: a file of [`crate::domain::files::MAX_FILE_BYTES`] is
/// 5,592,408 bytes of Base64, and a Lambda request payload is at most 6,291,456 bytes, API Gateway's
/// event around the body included; 6,000,000 leaves that event over 290 KB.
pub const MSC_MESSAGE_BODY_BYTES: usize = 6_000_000;

/// Which function serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    AnswerIngest,
    PresenceCheck,
    PrechatComplete,
    OperatorHandover,
    AgentEvents,
    /// Behind the WebSocket API ([`LIVE_ROUTES`]), not the HTTP API.
    LiveConnection,
}

impl Function {
    /// The Lambda binary (and `functions/` package) that serves it.
    pub const fn binary(self) -> &'static str {
        match self {
            Function::AnswerIngest => "answer-ingest",
            Function::PresenceCheck => "presence-check",
            Function::PrechatComplete => "prechat-complete",
            Function::OperatorHandover => "operator-handover",
            Function::AgentEvents => "agent-events",
            Function::LiveConnection => "live-connection",
        }
    }
}

/// Every route of the service, as the template and the OpenAPI document name them (a test holds the
/// three, and the routers below, to one set).
pub const ROUTES: &[(&str, &str, Function)] = &[
    ("POST", "/v1/messages", Function::AnswerIngest),
    ("POST", "/v1/uploads", Function::AnswerIngest),
    ("POST", "/v1/conversations", Function::AnswerIngest),
    ("POST", "/v1/conversations/refresh", Function::AnswerIngest),
    ("POST", "/v1/presence", Function::PresenceCheck),
    ("GET", "/v1/presence", Function::PresenceCheck),
    ("POST", "/v1/prechat/complete", Function::PrechatComplete),
    (
        "POST",
        "/v1/sessions/{sessionId}/handover",
        Function::OperatorHandover,
    ),
    (
        "POST",
        "/v1/sessions/{sessionId}/release",
        Function::OperatorHandover,
    ),
    (
        "GET",
        "/v1/sessions/{sessionId}",
        Function::OperatorHandover,
    ),
    (
        "GET",
        "/v1/sessions/{sessionId}/messages",
        Function::AnswerIngest,
    ),
    ("POST", "/v1/msc/messages", Function::AgentEvents),
    ("POST", "/v1/msc/events", Function::AgentEvents),
];

/// The WebSocket API's routes that reach live-connection (`ping` is answered by API Gateway itself).
pub const LIVE_ROUTES: &[&str] = &["$connect", "resume", "$default"];

/// live-connection's router: every WebSocket event, whatever path lambda_http gives it.
pub fn live_connection(deps: crate::flow::live::LiveDeps) -> Router {
    Router::new()
        .route("/", axum::routing::any(live::websocket_event))
        .route("/{*path}", axum::routing::any(live::websocket_event))
        .with_state(Arc::new(deps))
        .layer(from_fn_with_state(
            Function::LiveConnection.binary(),
            metrics::per_invocation,
        ))
}

/// answer-ingest's routes. The channel key admits every conversation; a conversation token (when
/// `tokens` are on) only its own, and only on the routes a page calls.
pub fn answer_ingest(
    deps: IngestDeps,
    channel_key: CallerKey,
    tokens: Option<crate::token::PageTokens>,
    allowed_origins: &[String],
) -> Router {
    let page_or_channel = from_fn_with_state(
        auth::ChannelOrToken {
            key: channel_key.clone(),
            tokens: tokens.as_ref().map(|pages| pages.keys.clone()),
            clock: deps.clock.clone(),
        },
        auth::require_channel_or_token,
    );
    let for_pages = |route| for_pages(route, allowed_origins);
    let routes = Router::new()
        .route(
            "/v1/messages",
            for_pages(post(messages::send_message).route_layer(page_or_channel.clone())),
        )
        .route(
            "/v1/uploads",
            for_pages(post(messages::new_upload).route_layer(page_or_channel.clone())),
        )
        .route(
            "/v1/sessions/{sessionId}/messages",
            for_pages(get(messages::session_messages).route_layer(page_or_channel.clone())),
        )
        // The channel key or an allowed page's origin, checked by the handler: a page has no key.
        .route(
            "/v1/conversations",
            for_pages(post(messages::new_conversation)),
        )
        .route(
            "/v1/conversations/refresh",
            for_pages(post(messages::refresh_conversation).route_layer(page_or_channel)),
        )
        .with_state(Arc::new(messages::IngestState {
            deps,
            tokens,
            channel_key,
            allowed_origins: allowed_origins.to_vec(),
        }))
        .layer(from_fn_with_state(
            Function::AnswerIngest.binary(),
            metrics::per_invocation,
        ));
    with_cors(routes, allowed_origins)
}

/// A page's preflight carries no key: with CORS on, OPTIONS is a method of the pages' routes, outside
/// their key check, for the CORS layer to answer.
fn for_pages<S: Clone + Send + Sync + 'static>(
    route: axum::routing::MethodRouter<S>,
    allowed_origins: &[String],
) -> axum::routing::MethodRouter<S> {
    if allowed_origins.is_empty() {
        route
    } else {
        route.options(|| async { axum::http::StatusCode::NO_CONTENT })
    }
}

fn with_cors(routes: Router, allowed_origins: &[String]) -> Router {
    match allowed_origins {
        [] => routes,
        origins => routes.layer(pages_may_call(origins)),
    }
}

/// CORS for the pages of `ALLOWED_ORIGINS` (none when it is empty): a preflight is answered here, without
/// a key (browsers send none with it); no credentials, the token rides in `Authorization`. API Gateway's
/// `CorsConfiguration` does the same in a deployment, from the same setting.
fn pages_may_call(allowed_origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    let origins = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok());
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([HeaderName::from_static("idempotent-replayed")])
        .max_age(std::time::Duration::from_secs(600))
}

/// presence-check's routes: CAIC's webhook, and the widgets' query (the channel key, or any valid
/// conversation token: presence names no conversation).
pub fn presence_check(
    deps: PresenceDeps,
    channel_key: CallerKey,
    webhook_key: CallerKey,
    tokens: Option<crate::token::TokenKeys>,
    allowed_origins: &[String],
) -> Router {
    let page_or_channel = from_fn_with_state(
        auth::ChannelOrToken {
            key: channel_key,
            tokens,
            clock: deps.clock.clone(),
        },
        auth::require_channel_or_token,
    );
    let routes = Router::new()
        .route(
            "/v1/presence",
            for_pages(
                get(presence::agent_status_query).route_layer(page_or_channel),
                allowed_origins,
            ),
        )
        .route(
            "/v1/presence",
            post(presence::presence_webhook)
                .route_layer(from_fn_with_state(webhook_key, auth::require_key)),
        )
        .with_state(Arc::new(deps))
        .layer(from_fn_with_state(
            Function::PresenceCheck.binary(),
            metrics::per_invocation,
        ));
    with_cors(routes, allowed_origins)
}

pub fn prechat_complete(deps: Arc<HandoverDeps>, webhook_key: CallerKey) -> Router {
    Router::new()
        .route(
            "/v1/prechat/complete",
            post(handover::prechat_complete)
                .route_layer(from_fn_with_state(webhook_key, auth::require_key)),
        )
        .with_state(deps)
        .layer(from_fn_with_state(
            Function::PrechatComplete.binary(),
            metrics::per_invocation,
        ))
}

pub fn operator_handover(deps: Arc<HandoverDeps>, operator_key: CallerKey) -> Router {
    let operator_only = from_fn_with_state(operator_key, auth::require_key);
    Router::new()
        .route(
            "/v1/sessions/{sessionId}/handover",
            post(handover::operator_handover).route_layer(operator_only.clone()),
        )
        .route(
            "/v1/sessions/{sessionId}/release",
            post(handover::release).route_layer(operator_only.clone()),
        )
        .route(
            "/v1/sessions/{sessionId}",
            get(handover::session_view).route_layer(operator_only),
        )
        .with_state(deps)
        .layer(from_fn_with_state(
            Function::OperatorHandover.binary(),
            metrics::per_invocation,
        ))
}

/// MSC's webhooks: its key in the `Authorization` header, or as `?key=` for setups that take only a
/// URL.
pub fn agent_events(deps: AgentDeps, msc_key: CallerKey) -> Router {
    let msc_only = from_fn_with_state(msc_key, auth::require_key_or_query);
    Router::new()
        .route(
            "/v1/msc/messages",
            post(agent::msc_message)
                .route_layer(msc_only.clone())
                // Agents' files arrive as Base64 in the body: this route alone takes more.
                .layer(DefaultBodyLimit::max(MSC_MESSAGE_BODY_BYTES)),
        )
        .route(
            "/v1/msc/events",
            post(agent::msc_event).route_layer(msc_only),
        )
        .with_state(Arc::new(deps))
        .layer(from_fn_with_state(
            Function::AgentEvents.binary(),
            metrics::per_invocation,
        ))
}

/// One function's routes (or several merged) as a service: JSON errors for unknown routes and
/// methods, the body limit, and a span per request.
pub fn serve(routes: Router) -> Router {
    routes
        .method_not_allowed_fallback(request::method_not_allowed)
        .fallback(request::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(error::log_refusals))
        .layer(from_fn(request::in_request_span))
}
