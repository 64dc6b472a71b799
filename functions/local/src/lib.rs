//! The local runner: one HTTP server that serves all four functions' routes by handing each request
//! to the very handler its Lambda binary uses. Nothing of the flow is re-implemented here; this only
//! converts hyper's request into lambda_http's and back.

pub mod sandbox;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use handover_core::api::{
    answer_ingest, handover, no_route, prechat_complete, presence_check, route_owner, ApiError,
    Function,
};
use handover_core::config::Env;
use handover_core::wiring::{self, StartupError};
use handover_core::SessionStore;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use tokio::net::TcpListener;

pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// Caller keys used when none are configured: the local runner is for one developer's machine.
pub const LOCAL_CHANNEL_KEY: &str = "local-channel-key";
pub const LOCAL_WEBHOOK_SECRET: &str = "local-webhook-secret";
pub const LOCAL_OPERATOR_KEY: &str = "local-operator-key";

/// Bodies above this are refused before a handler sees them (the handlers' own limit is 64 KiB).
const MAX_LOCAL_BODY: usize = 1024 * 1024;

struct App {
    ingest: answer_ingest::Deps,
    presence: presence_check::Deps,
    prechat: prechat_complete::Deps,
    handover: handover::Deps,
    sandbox: Option<sandbox::Sandbox>,
}

pub struct Running {
    pub addr: SocketAddr,
    pub sandbox: bool,
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds everything from `env` (sandbox CAIC and MSC when `CAIC_BASE_URL` is unset; embedded store
/// unless `HANDOVER_STORE=dynamodb`) and serves on `listener` in a background task.
pub async fn start(listener: TcpListener, env: Env) -> Result<Running, StartupError> {
    start_with(listener, env, None).await
}

/// Like [`start`], with the session store given rather than chosen from `env` (tests bring their own).
pub async fn start_with(
    listener: TcpListener,
    mut env: Env,
    store: Option<Arc<dyn SessionStore>>,
) -> Result<Running, StartupError> {
    let addr = listener
        .local_addr()
        .map_err(|e| StartupError::HttpClient(e.to_string()))?;
    let use_sandbox = env.optional("CAIC_BASE_URL").is_none();
    if use_sandbox {
        sandbox::configure(&mut env, addr);
    }
    env.set_default("CHANNEL_API_KEY", LOCAL_CHANNEL_KEY);
    env.set_default("CAIC_WEBHOOK_SECRET", LOCAL_WEBHOOK_SECRET);
    env.set_default("OPERATOR_API_KEY", LOCAL_OPERATOR_KEY);
    env.set_default("HANDOVER_STORE", "memory");

    let clock = wiring::system_clock();
    // Its own client rather than the process's: `start` may run on any of a caller's runtimes.
    let http = wiring::new_http_client()?;
    let store = match store {
        Some(store) => store,
        None => wiring::session_store(&env, clock.clone(), true).await?,
    };
    let app = Arc::new(App {
        ingest: wiring::answer_ingest_deps(&env, store.clone(), clock.clone(), http.clone())?,
        presence: wiring::presence_check_deps(&env, http.clone())?,
        prechat: wiring::prechat_complete_deps(&env, store.clone(), clock.clone(), http.clone())?,
        handover: wiring::handover_deps(&env, store, clock, http.clone())?,
        sandbox: use_sandbox.then(|| sandbox::Sandbox::new(&env, addr, http)),
    });
    let task = tokio::spawn(serve(listener, app));
    Ok(Running {
        addr,
        sandbox: use_sandbox,
        task,
    })
}

async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = service_fn(move |req| dispatch(Arc::clone(&app), req));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "connection ended");
            }
        });
    }
}

async fn dispatch(
    app: Arc<App>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_LOCAL_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(to_hyper(ApiError::TooLarge.into_response())),
    };
    let path = parts.uri.path().to_owned();
    if let (Some(sandbox), true) = (&app.sandbox, path.starts_with("/sandbox/")) {
        return Ok(to_hyper(sandbox.handle(&parts, &bytes).await));
    }
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(not_text) => Body::Binary(not_text.into_bytes()),
        }
    };
    let req = http::Request::from_parts(parts, body);
    // Like a Lambda invocation, a request runs to its end even if the caller hangs up: hyper drops a
    // connection's future when the client goes away, which would cut a handover between its claim
    // and its completion and leave the session claimed until the lease runs out.
    let invocation = tokio::spawn(async move {
        match route_owner(&path) {
            Some((Function::AnswerIngest, _)) => answer_ingest::handle(&app.ingest, req).await,
            Some((Function::PresenceCheck, _)) => presence_check::handle(&app.presence, req).await,
            Some((Function::PrechatComplete, _)) => {
                prechat_complete::handle(&app.prechat, req).await
            }
            Some((Function::Handover, _)) => handover::handle(&app.handover, req).await,
            None => no_route(&req).into_response(),
        }
    });
    let response = match invocation.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "request handler failed");
            handover_core::api::json_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": {"code": "internal", "message": "the request failed"}}),
            )
        }
    };
    Ok(to_hyper(response))
}

fn to_hyper(response: http::Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}
