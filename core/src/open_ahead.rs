//! Opening a peer's connection before its first request.
//!
//! Why: a cold start's first turn fetches the secret, reads the session, and only then asks CAIC or MSC,
//! whose connection (TCP, then TLS: two round trips, 40 ms at 20 ms) was not opened until then. The
//! connection depends on none of that, so a function opens it while it fetches its secret
//! (docs/performance.md has the before and after).
//!
//! How: reqwest has no call that opens a connection without sending a request. So a peer's client
//! carries [`OpenAheadLayer`] around its connector, and [`open_ahead`] starts a request marked by a
//! task-local: for that request the layer opens the connection in the background, keeps it for the
//! client's next request and fails the marked one, so nothing is sent. If the mark were ever not seen
//! (a reqwest that connects on another task), the marked request would go out as a plain `HEAD` of the
//! peer's base URL: harmless, and the benchmark would show the gain gone.
//!
//! The layer cannot tell one host's connection from another's, so a client that carries it talks to one
//! host: a peer's own client, which follows no redirects ([`crate::clients::peer_client`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

tokio::task_local! {
    static OPENING_AHEAD: ();
}

/// A connection opened ahead and not used within this long is dropped rather than handed out: a peer
/// may have closed it meanwhile, and a request on a closed new connection is not retried. (Lambda
/// may initialise a function well before its first invocation.)
const SPARE_LIFETIME: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("connection opened ahead; the request that opened it is not sent")]
struct OpenedAhead;

/// Opens the connection of the client that carries `OpenAheadLayer` to `url`'s host, in the
/// background; the client's next request uses it.
pub fn open_ahead(client: &reqwest::Client, url: &str) {
    let marked = client.head(url).send();
    tokio::spawn(OPENING_AHEAD.scope((), async move {
        let _ = marked.await;
    }));
}

struct Spare<C> {
    opened: Instant,
    connecting: JoinHandle<Result<C, BoxError>>,
}

type SpareSlot<C> = Arc<Mutex<Option<Spare<C>>>>;

/// The connector layer of a peer's client (see the module's documentation). `C` is the connector's
/// connection type, which reqwest does not name; it is inferred.
pub struct OpenAheadLayer<C> {
    spare: SpareSlot<C>,
    lifetime: Duration,
}

impl<C> OpenAheadLayer<C> {
    pub fn new() -> Self {
        Self::keeping_spares_for(SPARE_LIFETIME)
    }

    fn keeping_spares_for(lifetime: Duration) -> Self {
        Self {
            spare: Arc::new(Mutex::new(None)),
            lifetime,
        }
    }
}

impl<C> Default for OpenAheadLayer<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Clone for OpenAheadLayer<C> {
    fn clone(&self) -> Self {
        Self {
            spare: self.spare.clone(),
            lifetime: self.lifetime,
        }
    }
}

impl<S, C> tower::Layer<S> for OpenAheadLayer<C> {
    type Service = OpenAheadService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        OpenAheadService {
            inner,
            spare: self.spare.clone(),
            lifetime: self.lifetime,
        }
    }
}

pub struct OpenAheadService<S, C> {
    inner: S,
    spare: SpareSlot<C>,
    lifetime: Duration,
}

impl<S: Clone, C> Clone for OpenAheadService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            spare: self.spare.clone(),
            lifetime: self.lifetime,
        }
    }
}

impl<S, C> OpenAheadService<S, C> {
    /// The connection opened ahead, if there is one young enough to use.
    fn take_spare(&self) -> Option<JoinHandle<Result<C, BoxError>>> {
        let spare = self.spare.lock().ok()?.take()?;
        if spare.opened.elapsed() < self.lifetime {
            Some(spare.connecting)
        } else {
            spare.connecting.abort();
            None
        }
    }
}

impl<S, R, C> tower::Service<R> for OpenAheadService<S, C>
where
    S: tower::Service<R, Response = C, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    C: Send + 'static,
{
    type Response = C;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, destination: R) -> Self::Future {
        // The service made ready is the one to call; a clone takes its place.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        if OPENING_AHEAD.try_with(|_| ()).is_ok() {
            let connecting = tokio::spawn(ready.call(destination));
            if let Ok(mut slot) = self.spare.lock() {
                if let Some(previous) = slot.replace(Spare {
                    opened: Instant::now(),
                    connecting,
                }) {
                    previous.connecting.abort();
                }
            }
            return Box::pin(async { Err(OpenedAhead.into()) });
        }
        match self.take_spare() {
            Some(connecting) => Box::pin(async move {
                match connecting.await {
                    Ok(Ok(connection)) => Ok(connection),
                    // It failed: connect now, as if nothing had been opened ahead.
                    _ => ready.call(destination).await,
                }
            }),
            None => Box::pin(ready.call(destination)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};

    /// A connector whose connections are numbered from 1; it fails while `failing` is set.
    #[derive(Clone, Default)]
    struct Numbered {
        opened: Arc<AtomicUsize>,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl tower::Service<&'static str> for Numbered {
        type Response = usize;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: &'static str) -> Self::Future {
            let (opened, failing) = (self.opened.clone(), self.failing.load(Ordering::SeqCst));
            Box::pin(async move {
                if failing {
                    return Err("refused".into());
                }
                Ok(opened.fetch_add(1, Ordering::SeqCst) + 1)
            })
        }
    }

    async fn open_ahead_with(service: &OpenAheadService<Numbered, usize>) {
        let marked = OPENING_AHEAD
            .scope((), service.clone().oneshot("peer"))
            .await;
        assert!(marked.is_err(), "the request that opens ahead is not sent");
    }

    #[tokio::test]
    async fn the_next_connect_takes_the_connection_opened_ahead_and_the_one_after_opens_its_own() {
        let connector = Numbered::default();
        let service = OpenAheadLayer::new().layer(connector.clone());
        open_ahead_with(&service).await;
        assert_eq!(service.clone().oneshot("peer").await.unwrap(), 1);
        assert_eq!(service.clone().oneshot("peer").await.unwrap(), 2);
        assert_eq!(connector.opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_opened_ahead_too_long_ago_is_dropped_for_a_new_one() {
        let connector = Numbered::default();
        let service =
            OpenAheadLayer::keeping_spares_for(Duration::from_millis(20)).layer(connector.clone());
        open_ahead_with(&service).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            service.clone().oneshot("peer").await.unwrap(),
            2,
            "a fresh connection, not the old one"
        );
    }

    #[tokio::test]
    async fn when_opening_ahead_failed_the_next_connect_opens_anew() {
        let connector = Numbered::default();
        let service = OpenAheadLayer::new().layer(connector.clone());
        connector.failing.store(true, Ordering::SeqCst);
        open_ahead_with(&service).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        connector.failing.store(false, Ordering::SeqCst);
        assert_eq!(service.clone().oneshot("peer").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn without_opening_ahead_every_connect_is_the_connectors() {
        let connector = Numbered::default();
        let service = OpenAheadLayer::new().layer(connector.clone());
        assert_eq!(service.clone().oneshot("peer").await.unwrap(), 1);
        assert_eq!(service.clone().oneshot("peer").await.unwrap(), 2);
    }
}
